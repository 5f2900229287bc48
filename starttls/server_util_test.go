package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// srvPKI is a CA, a server certificate for "mail.example.test", "localhost"
// and 127.0.0.1, and a client configuration that trusts it.
type srvPKI struct {
	ca     *mailtest.CA
	server *tls.Config
	client *tls.Config
}

func newSrvPKI(t testing.TB) *srvPKI {
	t.Helper()
	ca, err := mailtest.GenerateCA("mailedge server test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, "mail.example.test", "localhost")
	require.NoError(t, err)
	return &srvPKI{
		ca:     ca,
		server: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12},
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.test", MinVersion: tls.VersionTLS12},
	}
}

// srvSafety is the Timeout tests use so that a broken test fails instead of
// hanging; it is never what a test asserts on.
const srvSafety = 20 * time.Second

// pipeResult is what runPipe saw: the server's whole output, the Session and
// error Serve returned, and how many Write calls the server made.
type pipeResult struct {
	out    string
	sess   *Session
	err    error
	writes int
}

// runPipe runs s.Serve on one end of a net.Pipe while the other end writes
// input in one Write and reads everything until the server end is closed
// after Serve returns. A plain session's conn is closed too.
func runPipe(t *testing.T, s *Server, input string) pipeResult {
	t.Helper()
	return runPipeCtx(t, context.Background(), s, input)
}

// runPipeCtx is runPipe with a context for Serve.
func runPipeCtx(t *testing.T, ctx context.Context, s *Server, input string) pipeResult {
	t.Helper()
	if s.Timeout == 0 {
		s.Timeout = srvSafety
	}
	client, server := net.Pipe()
	counted := &countingConn{Conn: server}
	var wg sync.WaitGroup
	var out []byte
	wg.Add(2)
	go func() { // the client's writer
		defer wg.Done()
		_, _ = client.Write([]byte(input))
	}()
	go func() { // the client's reader
		defer wg.Done()
		out, _ = io.ReadAll(client)
	}()
	sess, err := s.Serve(ctx, counted)
	server.Close()
	wg.Wait()
	client.Close()
	return pipeResult{out: string(out), sess: sess, err: err, writes: int(counted.writes.Load())}
}

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// crlf joins lines with CRLF and ends with one.
func crlf(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n"
}

// serveResult is the outcome of one Serve call in a goroutine.
type serveResult struct {
	sess *Session
	err  error
}

// serveLoopback accepts one loopback TCP connection and runs s.Serve on
// it (ServeTLS when implicit). It returns the client end and the result,
// delivered once. Both ends are closed at cleanup.
func serveLoopback(t *testing.T, s *Server, implicit bool) (net.Conn, <-chan serveResult) {
	t.Helper()
	if s.Timeout == 0 {
		s.Timeout = srvSafety
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	res := make(chan serveResult, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			res <- serveResult{err: err}
			return
		}
		serve := s.Serve
		if implicit {
			serve = s.ServeTLS
		}
		sess, err := serve(context.Background(), conn)
		res <- serveResult{sess: sess, err: err}
		if err != nil {
			conn.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return c, res
}

// lineConn reads CRLF lines from a conn and writes strings to it.
type lineConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newLineConn(t *testing.T, c net.Conn) *lineConn {
	return &lineConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (l *lineConn) send(s string) {
	l.t.Helper()
	_, err := io.WriteString(l.c, s)
	require.NoError(l.t, err)
}

// line reads one line and returns it without CRLF.
func (l *lineConn) line() string {
	l.t.Helper()
	s, err := l.br.ReadString('\n')
	require.NoError(l.t, err, "reading a line, got %q so far", s)
	return strings.TrimRight(s, "\r\n")
}

// until reads lines up to and including the first one with prefix and
// returns them all.
func (l *lineConn) until(prefix string) []string {
	l.t.Helper()
	var lines []string
	for {
		s := l.line()
		lines = append(lines, s)
		if strings.HasPrefix(s, prefix) {
			return lines
		}
	}
}

// closeWhenDone closes a session's conn at cleanup.
func closeWhenDone(t *testing.T, sess *Session) {
	if sess != nil && sess.Conn != nil {
		t.Cleanup(func() { sess.Conn.Close() })
	}
}

// dialogueCase is one scripted pre-TLS dialogue that ends without a
// session: the client's input, the server's whole output, and the error.
type dialogueCase struct {
	name    string
	mode    Mode
	srv     func(*Server) // adjusts the Server, if not nil
	input   string
	want    string
	wantErr error
}

// runDialogues plays each case against a Server for p greeting as host.
func runDialogues(t *testing.T, p Protocol, host string, tests []dialogueCase) {
	t.Helper()
	pki := newSrvPKI(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Protocol: p, Mode: tt.mode, TLSConfig: pki.server, Hostname: host}
			if tt.srv != nil {
				tt.srv(s)
			}
			res := runPipe(t, s, tt.input)
			assert.ErrorIs(t, res.err, tt.wantErr)
			assert.Nil(t, res.sess)
			assert.Equal(t, tt.want, res.out)
		})
	}
}
