package backend

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// pki holds a CA and a backend certificate valid for 127.0.0.1, so a
// Dialer whose TLSConfig only sets RootCAs verifies it through the
// ServerName taken from Addr.
type pki struct {
	roots  *x509.CertPool
	server *tls.Config
}

func newPKI(t testing.TB) pki {
	t.Helper()
	ca, err := mailtest.GenerateCA("backend test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{Key: mailtest.ECDSA, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, "backend.test")
	require.NoError(t, err)
	return pki{roots: ca.Pool(), server: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}}
}

// fakeConn is the backend side of one test connection.
type fakeConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// bufConn reads through a bufio.Reader that may hold bytes already read.
type bufConn struct {
	net.Conn
	br *bufio.Reader
}

func (b bufConn) Read(p []byte) (int, error) { return b.br.Read(p) }

// line reads one line; "" on error (the assertion is then the caller's).
func (f *fakeConn) line() string {
	s, err := f.br.ReadString('\n')
	if err != nil {
		return ""
	}
	return s
}

func (f *fakeConn) send(s string) {
	_, err := f.conn.Write([]byte(s))
	assert.NoError(f.t, err)
}

// proxy reads a PROXY header.
func (f *fakeConn) proxy() *proxyproto.Header {
	h, err := proxyproto.Read(f.br)
	assert.NoError(f.t, err)
	return h
}

// startTLS runs the server side of a TLS handshake on the connection.
func (f *fakeConn) startTLS(cfg *tls.Config) bool {
	tc := tls.Server(bufConn{f.conn, f.br}, cfg)
	if !assert.NoError(f.t, tc.Handshake()) {
		return false
	}
	f.conn, f.br = tc, bufio.NewReader(tc)
	return true
}

// expect reads a line and asserts it.
func (f *fakeConn) expect(want string) bool {
	return assert.Equal(f.t, want, f.line())
}

// fake is a loopback backend running handle on every connection. Close
// (also a test cleanup) stops it and waits for every handler.
type fake struct {
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

func newFake(t testing.TB, handle func(f *fakeConn)) *fake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &fake{ln: ln}
	s.wg.Add(1)
	go s.accept(t, handle)
	t.Cleanup(s.Close)
	return s
}

func (s *fake) Addr() string { return s.ln.Addr().String() }

func (s *fake) accept(t testing.TB, handle func(f *fakeConn)) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			handle(&fakeConn{t: t, conn: c, br: bufio.NewReader(c)})
		}()
	}
}

// Close stops accepting and waits for the handlers, which end when their
// client closes.
func (s *fake) Close() {
	s.once.Do(func() { s.ln.Close() })
	s.wg.Wait()
}

// greeter answers with greeting, then "221" to QUIT, until the client
// hangs up.
func greeter(greeting string) func(f *fakeConn) {
	return func(f *fakeConn) {
		f.send(greeting)
		for {
			line := f.line()
			if line == "" {
				return
			}
			if strings.HasPrefix(line, "QUIT") {
				f.send("221 bye\r\n")
				return
			}
		}
	}
}

// deadAddr returns an address that refuses connections.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// quit sends QUIT on c and checks the 221, proving c is in protocol state.
func quit(t testing.TB, c net.Conn) {
	t.Helper()
	_, err := c.Write([]byte("QUIT\r\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "221 bye\r\n", line)
}
