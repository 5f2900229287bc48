package starttls

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/mailwire"
)

// startTLSCase is one protocol's way to STARTTLS: what to send before it
// (in one write, so it is pipelined) and the last line of each answer.
type startTLSCase struct {
	name     string
	proto    Protocol
	greeting string // prefix of the greeting's last line
	pre      string
	preEnds  []string // prefix of the last line of each answer to pre
	start    string
	goAhead  string
	helo     string
}

var startTLSCases = []startTLSCase{
	{name: "smtp", proto: SMTP, greeting: "220 ", pre: crlf("EHLO client.test", "NOOP"), preEnds: []string{"250 ", "250 "}, start: "STARTTLS\r\n", goAhead: "220 2.0.0 Ready to start TLS", helo: "client.test"},
	{name: "smtp before ehlo", proto: SMTP, greeting: "220 ", start: "STARTTLS\r\n", goAhead: "220 2.0.0 Ready to start TLS"},
	{name: "imap", proto: IMAP, greeting: "* OK ", pre: crlf("a CAPABILITY", "b NOOP"), preEnds: []string{"a OK", "b OK"}, start: "c STARTTLS\r\n", goAhead: "c OK Begin TLS negotiation now"},
	{name: "pop3", proto: POP3, greeting: "+OK ", pre: crlf("CAPA"), preEnds: []string{"."}, start: "STLS\r\n", goAhead: "+OK Begin TLS negotiation"},
}

// runStartTLS drives tc up to the go-ahead on a loopback conn and returns the
// client end and Serve's result channel.
func runStartTLS(t *testing.T, s *Server, tc startTLSCase) (*lineConn, <-chan serveResult) {
	t.Helper()
	s.Protocol = tc.proto
	c, res := serveLoopback(t, s, false)
	lc := newLineConn(t, c)
	lc.until(tc.greeting)
	lc.send(tc.pre + tc.start)
	for _, end := range tc.preEnds {
		lc.until(end)
	}
	assert.Equal(t, tc.goAhead, lc.line())
	require.Zero(t, lc.br.Buffered(), "bytes after the go-ahead")
	return lc, res
}

func TestServeStartTLS(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	for _, tc := range startTLSCases {
		t.Run(tc.name, func(t *testing.T) {
			lc, res := runStartTLS(t, &Server{TLSConfig: pki.server}, tc)
			client := tls.Client(lc.c, pki.client)
			require.NoError(t, client.Handshake())
			r := <-res
			require.NoError(t, r.err)
			closeWhenDone(t, r.sess)
			assert.True(t, r.sess.TLS)
			assert.False(t, r.sess.Implicit)
			assert.Equal(t, tc.proto, r.sess.Protocol)
			assert.Equal(t, "mail.example.test", r.sess.ServerName)
			assert.Equal(t, tc.helo, r.sess.Helo)
			assert.Empty(t, r.sess.Pending)
			assert.GreaterOrEqual(t, r.sess.State.Version, uint16(tls.VersionTLS12))
			require.IsType(t, (*tls.Conn)(nil), r.sess.Conn)

			// The session's conn carries the encrypted stream both ways.
			_, err := client.Write([]byte("after tls\r\n"))
			require.NoError(t, err)
			got := make([]byte, len("after tls\r\n"))
			_, err = io.ReadFull(r.sess.Conn, got)
			require.NoError(t, err)
			assert.Equal(t, "after tls\r\n", string(got))
		})
	}
}

func TestServeTLSImplicit(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	c, res := serveLoopback(t, &Server{Protocol: IMAP, TLSConfig: pki.server}, true)
	cfg := pki.client.Clone()
	cfg.NextProtos = []string{"imap"}
	client := tls.Client(c, cfg)
	require.NoError(t, client.Handshake())
	r := <-res
	require.NoError(t, r.err)
	closeWhenDone(t, r.sess)
	assert.True(t, r.sess.Implicit)
	assert.True(t, r.sess.TLS)
	assert.Equal(t, "mail.example.test", r.sess.ServerName)
	assert.Equal(t, IMAP, r.sess.Protocol)
}

// TestServeLateInjection sends plaintext after the go-ahead instead of a
// ClientHello: it reaches the TLS layer, which fails, and is never answered.
func TestServeLateInjection(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	inject := map[Protocol]string{SMTP: "RSET\r\n", IMAP: "d NOOP\r\n", POP3: "NOOP\r\n"}
	for _, tc := range startTLSCases {
		t.Run(tc.name, func(t *testing.T) {
			lc, res := runStartTLS(t, &Server{TLSConfig: pki.server}, tc)
			lc.send(inject[tc.proto])
			r := <-res
			require.Error(t, r.err)
			assert.Nil(t, r.sess)
			assert.Contains(t, r.err.Error(), "TLS handshake")
			rest, _ := io.ReadAll(lc.br)
			for _, ok := range []string{"250", "OK", "+OK"} {
				assert.NotContains(t, string(rest), ok, "the injected command was answered")
			}
		})
	}
}

func TestServeHandshakeTimeout(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	for _, tc := range startTLSCases {
		t.Run(tc.name, func(t *testing.T) {
			_, res := runStartTLS(t, &Server{TLSConfig: pki.server, HandshakeTimeout: 50 * time.Millisecond}, tc)
			r := <-res
			assert.ErrorIs(t, r.err, os.ErrDeadlineExceeded)
		})
	}
}

func TestServeTimeout(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	c, res := serveLoopback(t, &Server{Protocol: SMTP, TLSConfig: newSrvPKI(t).server, Timeout: 50 * time.Millisecond}, false)
	lc := newLineConn(t, c)
	assert.Equal(t, "220 localhost ESMTP ready", lc.line())
	r := <-res
	assert.ErrorIs(t, r.err, os.ErrDeadlineExceeded)
	rest, _ := io.ReadAll(lc.br)
	assert.Empty(t, rest, "nothing is written on a timeout")
}

// TestServeNoLineEnd sends far more than any limit without a line feed: Serve
// must give up with a bounded read and say why.
func TestServeNoLineEnd(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	tests := []struct {
		proto Protocol
		bye   string
	}{
		{SMTP, "421 4.7.0 localhost Line too long, closing connection"},
		{IMAP, "* BYE Line too long"},
		{POP3, "-ERR Line too long"},
	}
	for _, tt := range tests {
		t.Run(tt.proto.String(), func(t *testing.T) {
			res := runPipe(t, &Server{Protocol: tt.proto, TLSConfig: newSrvPKI(t).server}, strings.Repeat("x", 1<<20))
			assert.ErrorIs(t, res.err, ErrLineTooLong)
			assert.False(t, mailwire.Resynced(res.err))
			lines := strings.Split(strings.TrimSuffix(res.out, "\r\n"), "\r\n")
			assert.Equal(t, tt.bye, lines[len(lines)-1])
		})
	}
}

func TestServeContextCancel(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, tc := range []struct {
		name    string
		stopped func(*testing.T, *lineConn)
	}{
		{name: "waiting for a command", stopped: func(t *testing.T, lc *lineConn) {}},
		{name: "waiting for the handshake", stopped: func(t *testing.T, lc *lineConn) {
			lc.send("STARTTLS\r\n")
			assert.Equal(t, "220 2.0.0 Ready to start TLS", lc.line())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := make(chan serveResult, 1)
			go func() {
				sess, err := (&Server{TLSConfig: newSrvPKI(t).server}).Serve(ctx, server)
				res <- serveResult{sess, err}
			}()
			lc := newLineConn(t, client)
			assert.Equal(t, "220 localhost ESMTP ready", lc.line())
			tc.stopped(t, lc)
			cancel()
			r := <-res
			assert.ErrorIs(t, r.err, context.Canceled)
			assert.Nil(t, r.sess)
		})
	}
}

func TestServeCancelledBeforeStart(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := runPipeCtx(t, ctx, &Server{TLSConfig: newSrvPKI(t).server}, "EHLO x\r\n")
	assert.ErrorIs(t, res.err, context.Canceled)
	assert.Empty(t, res.out)
}

func TestServerValidate(t *testing.T) {
	cfg := &tls.Config{}
	tests := []struct {
		name string
		s    Server
		ok   bool
	}{
		{name: "zero value needs TLSConfig", s: Server{}},
		{name: "disallow needs no TLSConfig", s: Server{Mode: Disallow}, ok: true},
		{name: "require with config", s: Server{TLSConfig: cfg}, ok: true},
		{name: "bad protocol", s: Server{Protocol: 7, TLSConfig: cfg}},
		{name: "hostname with space", s: Server{TLSConfig: cfg, Hostname: "a b"}},
		{name: "greeting with CRLF", s: Server{TLSConfig: cfg, Greeting: "hi\r\n250 x"}},
		{name: "empty extension", s: Server{TLSConfig: cfg, SMTPExtensions: []string{""}}},
		{name: "imap capability with space", s: Server{TLSConfig: cfg, IMAPCapabilities: []string{"AUTH=PLAIN X"}}},
		{name: "pop3 capability with CR", s: Server{TLSConfig: cfg, POP3Capabilities: []string{"SASL\rX"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.validate()
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			assert.Error(t, err)
		})
	}
}

// TestServeBadConfigWritesNothing checks that a misconfigured Server fails
// before touching the conn.
func TestServeBadConfigWritesNothing(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	res := runPipe(t, &Server{Protocol: POP3}, "CAPA\r\n")
	require.Error(t, res.err)
	assert.Empty(t, res.out)
	_, err := (&Server{Mode: Disallow}).ServeTLS(context.Background(), nil)
	assert.Error(t, err)
}

func TestServerDefaults(t *testing.T) {
	var s Server
	assert.Equal(t, 5*time.Minute, s.timeout())
	assert.Equal(t, 15*time.Second, s.handshakeTimeout())
	assert.Equal(t, "localhost", s.hostname())
	assert.Equal(t, 512, s.maxLineLength())
	assert.Equal(t, 255, (&Server{Protocol: POP3}).maxLineLength())
	assert.Equal(t, 8192, (&Server{Protocol: IMAP}).maxLineLength())
	assert.Equal(t, 5, limit(s.MaxErrors, defaultMaxErrors))
	assert.Equal(t, 100, limit(s.MaxCommands, defaultMaxCommands))
	assert.Equal(t, 0, limit(-1, defaultMaxCommands))
}
