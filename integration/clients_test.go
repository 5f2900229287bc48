//go:build unix

package integration_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// curlBase returns curl's common arguments for a gateway listener reached
// as name: the name resolves to the listener, the client binds clientIP and
// trusts only the suite's CA.
func curlBase(e *env, listener, name string) (args []string, port string) {
	_, port = hostPort(e.gw.addr[listener])
	return []string{"-sS", "--max-time", "20", "--cacert", e.caFile, "--interface", clientIP,
		"--resolve", name + ":" + port + ":" + gatewayIP, "-u", user + ":" + pass}, port
}

// writeMessage writes a message file for tok and returns its path.
func writeMessage(t *testing.T, tok string) string {
	p := filepath.Join(t.TempDir(), "msg.eml")
	require.NoError(t, os.WriteFile(p, []byte(message(user, user, tok)), 0o644))
	return p
}

// imapSeqOf searches INBOX over the given curl base for tok and returns the
// message's sequence number.
func curlSearch(t *testing.T, base []string, url, tok string) string {
	out := mustRun(t, "curl", append(base, url+"/INBOX?SUBJECT%20"+tok)...)
	m := regexp.MustCompile(`\* SEARCH (\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "curl search for %s: %q", tok, out)
	return m[1]
}

// TestCurl sends with curl over SMTPS (implicit TLS) and submission
// (STARTTLS, --ssl-reqd), then reads both messages back with curl over
// IMAPS, IMAP STARTTLS, POP3S and POP3 STARTTLS.
func TestCurl(t *testing.T) {
	e := need(t)
	name := sniNames[0]
	sent := map[string]string{}
	for _, tt := range []struct{ listener, scheme string }{
		{"smtps", "smtps"},
		{"submission", "smtp"},
	} {
		tok := token("curl-" + tt.listener)
		base, port := curlBase(e, tt.listener, name)
		args := append(base, "--ssl-reqd", "--mail-from", user, "--mail-rcpt", user,
			"--upload-file", writeMessage(t, tok), tt.scheme+"://"+name+":"+port)
		mustRun(t, "curl", args...)
		assertDelivered(t, e, tok, clientDot)
		sent[tt.listener] = tok
	}
	tok := sent["smtps"]
	for _, tt := range []struct{ listener, scheme string }{
		{"imaps", "imaps"},
		{"imap", "imap"},
	} {
		t.Run(tt.listener, func(t *testing.T) {
			base, port := curlBase(e, tt.listener, name)
			base = append(base, "--ssl-reqd")
			url := tt.scheme + "://" + name + ":" + port
			seq := curlSearch(t, base, url, tok)
			msg := mustRun(t, "curl", append(base, url+"/INBOX;MAILINDEX="+seq)...)
			assert.Contains(t, msg, "Subject: "+tok)
			assert.Contains(t, msg, "body line for "+tok)
		})
	}
	for _, tt := range []struct{ listener, scheme string }{
		{"pop3s", "pop3s"},
		{"pop3", "pop3"},
	} {
		t.Run(tt.listener, func(t *testing.T) {
			base, port := curlBase(e, tt.listener, name)
			base = append(base, "--ssl-reqd")
			url := tt.scheme + "://" + name + ":" + port
			list := mustRun(t, "curl", append(base, url+"/")...)
			n := len(strings.Fields(strings.TrimSpace(list))) / 2
			require.Positive(t, n, "LIST: %q", list)
			found := false
			for i := n; i >= 1 && !found; i-- {
				msg := mustRun(t, "curl", append(base, url+"/"+strconv.Itoa(i))...)
				found = strings.Contains(msg, "Subject: "+tok) && strings.Contains(msg, "body line for "+tok)
			}
			assert.True(t, found, "no POP3 message carries %s", tok)
		})
	}
	// The STARTTLS sessions were TLS sessions, as --ssl-reqd demands.
	e.gw.log.wait(t, 0, logWait, re(`listener=pop3 `), re(`client=`+clientIP), re(`tls="TLS 1\.[23]"`))
	e.gw.log.wait(t, 0, logWait, re(`listener=submission `), re(`client=`+clientIP), re(`tls="TLS 1\.[23]"`))
}

// TestSwaks submits with swaks: STARTTLS on the submission listener, AUTH
// PLAIN, a message with a unique Subject, which must be delivered.
func TestSwaks(t *testing.T) {
	e := need(t)
	host, port := hostPort(e.gw.addr["submission"])
	tok := token("swaks")
	out := mustRun(t, "swaks", "--server", host, "--port", port, "--local-interface", clientIP,
		"--tls", "--tls-sni", sniNames[1], "--tls-ca-path", e.caFile,
		"--auth", "PLAIN", "--auth-user", user, "--auth-password", pass,
		"--from", user, "--to", user, "--header", "Subject: "+tok, "--body", "body line for "+tok+"\n.. a dot-stuffed line")
	assert.Contains(t, out, "235 2.7.0 Authentication successful")
	assert.Contains(t, out, `TLS peer DN="/CN=`+sniNames[1]+`"`)
	assert.Regexp(t, `250 2\.0\.0 Ok: queued as`, out)
	assertDelivered(t, e, tok, clientDot)
	e.gw.log.wait(t, 0, logWait, re(`listener=submission `), re(`sni=`+regexp.QuoteMeta(sniNames[1])))
}

// TestPythonClients runs testdata/clients.py: smtplib sends over the
// submission listener (STARTTLS, login), imaplib reads it over IMAP
// STARTTLS and IMAPS, poplib over POP3S and POP3 STLS.
func TestPythonClients(t *testing.T) {
	e := need(t)
	tok := token("python")
	args := []string{"testdata/clients.py", e.caFile, gatewayIP, user, pass, tok,
		e.gw.addr["submission"], e.gw.addr["imap"], e.gw.addr["imaps"], e.gw.addr["pop3s"], e.gw.addr["pop3"]}
	// clients.py waits for the delivery itself, reading through IMAP.
	out := mustRun(t, "python3", args...)
	for _, step := range []string{"smtplib sent", "imaplib starttls found", "imaplib ssl found", "poplib ssl found", "poplib stls found"} {
		assert.Contains(t, out, step+" "+tok, out)
	}
	assertDelivered(t, e, tok, ". a dot line")
}
