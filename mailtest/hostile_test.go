package mailtest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

var protocols = []struct {
	name  string
	proto mailtest.Protocol
	st    starttls.Protocol
}{
	{"IMAP", mailtest.IMAP, starttls.IMAP},
	{"POP3", mailtest.POP3, starttls.POP3},
	{"SMTP", mailtest.Submission, starttls.SMTP},
}

// upgrade runs mailedge's STARTTLS client against h.
func upgrade(t *testing.T, h *mailtest.Hostile, p starttls.Protocol) error {
	t.Helper()
	conn, err := net.Dial("tcp", h.Addr())
	require.NoError(t, err)
	c := &starttls.Client{Protocol: p, TLSConfig: h.ClientTLSConfig(), Timeout: ioWait}
	up, err := c.Upgrade(context.Background(), conn)
	if up != nil {
		up.Conn.Close()
	} else {
		conn.Close()
	}
	return err
}

// TestHostileControl: the valid-certificate kinds that misbehave only
// elsewhere let a correct STARTTLS client through, so the fault a kind
// names is the only one it has.
func TestHostileControl(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, p := range protocols {
		h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.ResetMidMessage, Protocol: p.proto})
		assert.NoError(t, upgrade(t, h, p.st), p.name)
	}
}

func TestHostileStartTLSInjection(t *testing.T) {
	leaktest.Check(t)
	for _, p := range protocols {
		h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.StartTLSInjection, Protocol: p.proto})
		err := upgrade(t, h, p.st)
		assert.ErrorIs(t, err, starttls.ErrInjection, p.name)
	}
}

func TestHostilePreAuth(t *testing.T) {
	leaktest.Check(t)
	h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.PreAuth, Protocol: mailtest.IMAP})
	assert.ErrorIs(t, upgrade(t, h, starttls.IMAP), starttls.ErrPreAuth)
	c := dialLines(t, h.Addr())
	assert.True(t, strings.HasPrefix(c.line(t), "* PREAUTH "))
}

func TestHostileLongLines(t *testing.T) {
	leaktest.Check(t)
	for _, p := range protocols {
		h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.LongLines, Protocol: p.proto, LineLength: 20000})
		c := dialLines(t, h.Addr())
		assert.Len(t, c.line(t), 20000+2, p.name)
		assert.Error(t, upgrade(t, h, p.st), "%s: a 20000-octet greeting was taken", p.name)
	}
}

func TestHostileMute(t *testing.T) {
	leaktest.Check(t)
	h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.Mute, Protocol: mailtest.Submission})
	c, err := net.Dial("tcp", h.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("EHLO client.example\r\n"))
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := c.Read(make([]byte, 1))
	assert.Zero(t, n)
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "got %v; want a timeout", err)
}

// TestHostileSlow: the greeting comes in pieces (a byte per write, a
// pause before each), and is still complete and correct.
func TestHostileSlow(t *testing.T) {
	leaktest.Check(t)
	h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.Slow, Protocol: mailtest.POP3})
	c, err := net.Dial("tcp", h.Addr())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioWait))
	var greeting []byte
	reads := 0
	for !strings.HasSuffix(string(greeting), "\r\n") {
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		require.NoError(t, err)
		greeting = append(greeting, buf[:n]...)
		reads++
	}
	assert.Equal(t, "+OK hostile POP3 ready\r\n", string(greeting))
	assert.Greater(t, reads, 1, "the greeting came in one piece")
}

// TestHostileResetMidMessage: the client sees part of a message, then a
// connection reset (not a clean close) in each protocol.
func TestHostileResetMidMessage(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, tc := range []struct {
		name  string
		proto mailtest.Protocol
		cmds  []string
		head  string
	}{
		{"IMAP FETCH", mailtest.IMAP, []string{"a LOGIN u p\r\n", "b SELECT INBOX\r\n", "c FETCH 1 BODY[]\r\n"}, "* 1 FETCH"},
		{"POP3 RETR", mailtest.POP3, []string{"USER u\r\n", "PASS p\r\n", "RETR 1\r\n"}, "+OK"},
		{"SMTP DATA", mailtest.MX, []string{"EHLO c\r\n", "MAIL FROM:<a@example.com>\r\n", "RCPT TO:<b@example.com>\r\n", "DATA\r\n", "Subject: x\r\n"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.ResetMidMessage, Protocol: tc.proto})
			c, err := net.Dial("tcp", h.Addr())
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(ioWait))
			for _, cmd := range tc.cmds {
				_, err := c.Write([]byte(cmd))
				require.NoError(t, err)
			}
			got, err := io.ReadAll(c)
			assert.True(t, errors.Is(err, syscall.ECONNRESET), "got %v; want a reset", err)
			if tc.head != "" {
				assert.Contains(t, string(got), tc.head)
				assert.Contains(t, string(got), "Subject: hostile", "part of the message came first")
			}
		})
	}
}

func TestHostileWrongCertificate(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, p := range protocols {
		h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.WrongCertificate, Protocol: p.proto})
		var hostErr x509.HostnameError
		assert.ErrorAs(t, upgrade(t, h, p.st), &hostErr, "%s STARTTLS", p.name)

		hi := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.WrongCertificate, Protocol: p.proto, ImplicitTLS: true})
		_, err := tls.Dial("tcp", hi.Addr(), hi.ClientTLSConfig())
		assert.ErrorAs(t, err, &hostErr, "%s implicit TLS", p.name)
		cfg := hi.ClientTLSConfig()
		cfg.ServerName = "wrong.example.invalid"
		tc, err := tls.Dial("tcp", hi.Addr(), cfg)
		if assert.NoError(t, err, "the certificate is the CA's, for the wrong name") {
			tc.Close()
		}
	}
}

func TestNewHostileRefusesBadOptions(t *testing.T) {
	for _, opt := range []mailtest.HostileOptions{
		{Kind: mailtest.PreAuth, Protocol: mailtest.POP3},
		{Kind: 0},
		{Kind: mailtest.WrongCertificate + 1},
	} {
		ft := &fatalT{TB: t}
		func() {
			defer func() { recover() }()
			mailtest.NewHostile(ft, opt)
		}()
		assert.True(t, ft.failed, "%v accepted", opt)
	}
}

// fatalT records Fatalf and stops the caller, as testing.T does, with a
// panic recovered by the test.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.failed = true
	panic(fmt.Sprintf(format, args...))
}

// lines is the client end of a line-based dialogue.
type lines struct {
	c net.Conn
	r *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lines {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioWait))
	return &lines{c: c, r: bufio.NewReaderSize(c, 1<<17)}
}

func (l *lines) line(t *testing.T) string {
	t.Helper()
	s, err := l.r.ReadString('\n')
	require.NoError(t, err)
	return s
}
