//go:build unix

package integration_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logWait bounds waits for a server's log line about a session that has
// already ended.
const logWait = 10 * time.Second

func (d *dovecot) logFile() string { return filepath.Join(d.Dir, "dovecot.log") }

// TestDovecotIMAPSOffloadProxyV2 logs in over the gateway's IMAPS listener,
// which offloads TLS to Dovecot's haproxy port with PROXY v2: Dovecot must
// log the real client address and accept LOGIN only because the SSL TLV
// says TLS was done upstream (disable_plaintext_auth = yes).
func TestDovecotIMAPSOffloadProxyV2(t *testing.T) {
	e := need(t)
	w := dialWire(t, e.gw.addr["imaps"], sniNames[0])
	greeting := w.line()
	require.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
	w.send("a CAPABILITY")
	caps := strings.Join(w.until("a "), "\n")
	assert.Contains(t, caps, "a OK")
	assert.NotContains(t, caps, "LOGINDISABLED")
	assert.NotContains(t, caps, "STARTTLS")
	w.send("b LOGIN " + user + " " + pass)
	require.Contains(t, last(w.until("b ")), "b OK")
	w.send("c SELECT INBOX")
	require.Contains(t, last(w.until("c ")), "c OK")
	w.send("d LOGOUT")
	w.until("d ")
	w.close()

	line := waitLogLine(t, e.dovecot.logFile(), logWait, "imap-login: Info: Login: user=<"+user+">", "rip="+clientIP, "lip="+gatewayIP)
	// Dovecot says "secured" (not "TLS") when the TLS was the proxy's.
	assert.Contains(t, line, "secured", "Dovecot should count the session as secured (PROXY v2 SSL TLV)")
	e.gw.log.wait(t, 0, logWait, re(`msg=session`), re(`listener=imaps `), re(`client=`+clientIP), re(`outcome=ok`))
}

// TestDovecotPlainProxyV2IsNotSecured is the control of the test above: a
// plain session through the same PROXY v2 backend (the "imapplain"
// listener allows clients that decline STARTTLS) carries no SSL TLV, so
// Dovecot must refuse plaintext LOGIN. Without this, the acceptance above
// could come from Dovecot's loopback trust rather than the TLV.
func TestDovecotPlainProxyV2IsNotSecured(t *testing.T) {
	e := need(t)
	const src = "127.0.0.4" // its own source: Dovecot's auth penalty is per address
	w := dialWire(t, e.gw.addr["imapplain"], "", src)
	require.True(t, strings.HasPrefix(w.line(), "* OK"))
	w.send("a CAPABILITY")
	w.until("a ")
	w.send("b LOGIN " + user + " " + pass)
	reply := strings.Join(w.until("b "), "\n")
	assert.Contains(t, reply, "b NO [PRIVACYREQUIRED]")
	w.send("c LOGOUT")
	w.until("c ")
	waitLogLine(t, e.dovecot.logFile(), logWait, "imap-login", "Plaintext authentication disabled", "rip="+src, "lip="+gatewayIP)
}

// TestDovecotPOP3SOffloadProxyV2 is the POP3 twin of the IMAPS test.
func TestDovecotPOP3SOffloadProxyV2(t *testing.T) {
	e := need(t)
	w := dialWire(t, e.gw.addr["pop3s"], sniNames[1])
	require.True(t, strings.HasPrefix(w.line(), "+OK"))
	w.send("CAPA")
	capa := strings.Join(w.until("."), "\n")
	assert.NotContains(t, capa, "STLS")
	w.send("USER " + user)
	require.True(t, strings.HasPrefix(w.line(), "+OK"))
	w.send("PASS " + pass)
	require.True(t, strings.HasPrefix(w.line(), "+OK"))
	w.send("STAT")
	assert.Regexp(t, `^\+OK \d+ \d+`, w.line())
	w.send("QUIT")
	w.line()
	line := waitLogLine(t, e.dovecot.logFile(), logWait, "pop3-login: Info: Login: user=<"+user+">", "rip="+clientIP, "lip="+gatewayIP)
	assert.Contains(t, line, "secured")
}

// TestDovecotSTARTTLSBackend goes through the "imap" listener (STARTTLS
// required toward the client) to a pool whose member is Dovecot's plain
// port reached with STARTTLS by the library's starttls.Client; Dovecot's
// log must show the session as TLS. The member's IMAP probe (login and
// LIST) must have marked it up.
func TestDovecotSTARTTLSBackend(t *testing.T) {
	e := need(t)
	e.gw.log.wait(t, 0, logWait, re(`msg="backend up"`), re(`pool=imapst `))
	mark := countLines(e.dovecot.logFile(), "imap-login: Info: Login: user=<"+user+">", "TLS")

	w := dialWire(t, e.gw.addr["imap"], "")
	require.True(t, strings.HasPrefix(w.line(), "* OK"))
	w.send("a LOGIN " + user + " " + pass)
	assert.Contains(t, last(w.until("a ")), "a NO", "LOGIN before STARTTLS must be refused")
	w.send("b STARTTLS")
	require.Contains(t, last(w.until("b ")), "b OK")
	w.startTLS(sniNames[2])
	w.send("c LOGIN " + user + " " + pass)
	require.Contains(t, last(w.until("c ")), "c OK")
	w.send("d LIST \"\" \"*\"")
	list := strings.Join(w.until("d "), "\n")
	assert.Contains(t, list, "INBOX")
	w.send("e LOGOUT")
	w.until("e ")

	deadline := time.Now().Add(logWait)
	for countLines(e.dovecot.logFile(), "imap-login: Info: Login: user=<"+user+">", "TLS") <= mark {
		require.True(t, time.Now().Before(deadline), "no new TLS login in Dovecot's log%s", tail(e.dovecot.logFile(), 10))
		time.Sleep(100 * time.Millisecond)
	}
}

func last(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// countLines counts the lines of the file at path containing every part.
func countLines(path string, parts ...string) int {
	n := 0
	for _, l := range strings.Split(readFile(path), "\n") {
		if containsAll(l, parts) {
			n++
		}
	}
	return n
}

// TestProbesBehindPROXY: members reached on PROXY-only ports (Dovecot
// haproxy = yes, Postfix smtpd_upstream_proxy_protocol) are health-checked
// through the same port, the probe opening with a PROXY LOCAL header.
func TestProbesBehindPROXY(t *testing.T) {
	e := need(t)
	for _, pool := range []string{"imap", "pop3", "smtps", "mx"} {
		e.gw.log.wait(t, 0, 15*time.Second, re(`msg="backend up"`), re(`pool=`+pool+` `))
	}
}
