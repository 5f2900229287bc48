package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a log destination safe for the gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// loggedDemoGateway is demoGateway with its log kept.
func loggedDemoGateway(t *testing.T) (map[string]string, *x509.CertPool, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	addrs, pool := demoGatewayLog(t, logs)
	return addrs, pool, logs
}

// sessionLine waits for the session log line of listener that matches re
// and returns its submatches.
func sessionLine(t *testing.T, logs *syncBuffer, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	require.Eventually(t, func() bool {
		m = re.FindStringSubmatch(logs.String())
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "no line matching %v in:\n%s", re, logs)
	return m
}

// The session log line of an implicit-TLS listener counts in bytes_out the
// backend greeting the gateway relayed: it is what the client received.
// The demo's listeners take the login at the edge and greet themselves, so
// the test adds listeners without auth in front of the demo's pools.
func TestSessionBytesOutOnImplicitTLS(t *testing.T) {
	logs := &syncBuffer{}
	addrs, roots := demoGatewayLog(t, logs,
		"-listen", "raw-imaps=127.0.0.1:0,proto=imap,tls=implicit,pool=a/imap",
		"-listen", "raw-smtps=127.0.0.1:0,proto=smtp,tls=implicit,pool=a/smtps",
		"-listen", "raw-pop3s=127.0.0.1:0,proto=pop3,tls=implicit,pool=a/pop3")
	for _, tt := range []struct{ listener, bye string }{
		{"raw-imaps", "a LOGOUT\r\n"},
		{"raw-smtps", "QUIT\r\n"},
		{"raw-pop3s", "QUIT\r\n"},
	} {
		t.Run(tt.listener, func(t *testing.T) {
			c, err := tls.Dial("tcp", addrs[tt.listener], clientTLS(roots, "mail.example.com"))
			require.NoError(t, err)
			defer c.Close()
			r := bufio.NewReader(c)
			greeting, err := r.ReadString('\n')
			require.NoError(t, err)
			_, err = io.WriteString(c, tt.bye)
			require.NoError(t, err)
			rest, err := io.ReadAll(r)
			require.NoError(t, err)
			c.Close()
			m := sessionLine(t, logs, regexp.MustCompile(`msg=session listener=`+tt.listener+` .* bytes_in=(\d+) bytes_out=(\d+)`))
			assert.Equal(t, strconv.Itoa(len(tt.bye)), m[1], "bytes_in")
			assert.Equal(t, strconv.Itoa(len(greeting)+len(rest)), m[2], "bytes_out: what the client received")
		})
	}
}

// A failed handshake on an implicit-TLS listener is logged as a TLS
// handshake failure, not as a STARTTLS one.
func TestSessionImplicitHandshakeError(t *testing.T) {
	addrs, _, logs := loggedDemoGateway(t)
	for _, listener := range []string{"imaps", "smtps", "pop3s"} {
		c, err := net.Dial("tcp", addrs[listener])
		require.NoError(t, err)
		io.WriteString(c, "not a ClientHello\r\n")
		io.ReadAll(c)
		c.Close()
		m := sessionLine(t, logs, regexp.MustCompile(`msg=session listener=`+listener+` .*outcome=client_error.* err="([^"]*)"`))
		assert.Regexp(t, `^tls handshake: `, m[1], listener)
		assert.NotContains(t, m[1], "starttls", listener)
	}
}

// The session line says what an operator matches and counts: the ALPN, the
// gateway's own address toward the backend (the client in the backend's
// log), on an inspected SMTP listener the recipients delivered and
// refused; and a client that resets right after QUIT's answer, as swaks
// and Outlook do, ended cleanly.
func TestSessionLineFields(t *testing.T) {
	logs := &syncBuffer{}
	addrs, roots := demoGatewayLog(t, logs,
		"-listen", "raw-imaps=127.0.0.1:0,proto=imap,tls=implicit,pool=a/imap",
		"-listen", "raw-mx=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,pool=a/mx,inspect")

	cfg := clientTLS(roots, "mail.example.com")
	cfg.NextProtos = []string{"imap"}
	c, err := tls.Dial("tcp", addrs["raw-imaps"], cfg)
	require.NoError(t, err)
	r := bufio.NewReader(c)
	_, err = r.ReadString('\n')
	require.NoError(t, err)
	local := c.LocalAddr().String()
	c.Close()
	m := sessionLine(t, logs, regexp.MustCompile(`msg=session listener=raw-imaps client=`+regexp.QuoteMeta(local)+` .* alpn=(\S*) backend=(\S+) user=\S* .* via=(\S+)`))
	assert.Equal(t, "imap", m[1])
	assert.NotEqual(t, m[2], m[3], "via is the gateway's end")
	assert.Regexp(t, `^127\.0\.0\.1:\d+$`, m[3])

	mx, err := net.Dial("tcp", addrs["raw-mx"])
	require.NoError(t, err)
	local = mx.LocalAddr().String()
	converse(t, mx,
		step{want: "220 "},
		step{send: "EHLO client.example", skip: "250-", want: "250 "},
		step{send: "MAIL FROM:<sender@example.org>", want: "250"},
		step{send: "RCPT TO:<demo@example.com>", want: "250"},
		step{send: "RCPT TO:<someone@elsewhere.example>", want: "5"},
		step{send: "QUIT", want: "221"})
	mx.(*net.TCPConn).SetLinger(0) // a reset, as swaks sends after 221
	mx.Close()
	m = sessionLine(t, logs, regexp.MustCompile(`msg=session listener=raw-mx client=`+regexp.QuoteMeta(local)+` outcome=(\S+) .* messages=(\d+) rcpts=(\d+) rcpts_refused=(\d+) refused=(\d+)`))
	assert.Equal(t, []string{"ok", "0", "1", "1", "0"}, m[1:], "outcome, messages, rcpts, rcpts_refused, refused")
}

// Clients that check the host name and connect to an address send no SNI
// (mbsync, fetchmail, neomutt): the demo's default certificate names
// 127.0.0.1, so they verify it with the demo CA.
func TestDemoCertificateNamesLoopback(t *testing.T) {
	d := startDemoGateway(t, io.Discard, true)
	c, err := tls.Dial("tcp", d.addrs["imaps"], &tls.Config{RootCAs: d.roots, ServerName: "127.0.0.1"})
	require.NoError(t, err, "verified as 127.0.0.1")
	defer c.Close()
	assert.Empty(t, c.ConnectionState().ServerName, "no SNI for an address")
	assert.Equal(t, "mail.example.com", c.ConnectionState().PeerCertificates[0].Subject.CommonName)
}
