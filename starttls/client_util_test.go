package starttls

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/require"
)

// testPKI is a CA with a backend certificate for "mail.test" and a client
// configuration that trusts it.
type testPKI struct {
	ca     *mailtest.CA
	server *tls.Config
	client *tls.Config
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := mailtest.GenerateCA("mailedge test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.test")
	require.NoError(t, err)
	return &testPKI{
		ca:     ca,
		server: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.test"},
	}
}

// step is one move of a scripted peer: send bytes, expect a line, switch
// to TLS, or wait for the other side to close.
type step struct {
	send   string
	expect string // a line without terminator
	tls    bool
	hold   bool // read and discard until the peer closes
}

func send(s string) step   { return step{send: s} }
func expect(s string) step { return step{expect: s} }

var (
	startTLS = step{tls: true}
	hold     = step{hold: true}
)

// transcript collects the lines a scripted peer received.
type transcript struct {
	mu    sync.Mutex
	lines []string
}

func (tr *transcript) add(l string) {
	tr.mu.Lock()
	tr.lines = append(tr.lines, l)
	tr.mu.Unlock()
}

func (tr *transcript) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.lines...)
}

// runScript plays steps on conn. It stops quietly when the other side
// closes or a line differs from the expectation (the test then checks the
// error the code under test returned). After the script it answers
// "tls ok\r\n" to anything read over TLS and waits for the peer to close.
func runScript(conn net.Conn, steps []step, cfg *tls.Config, tr *transcript) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var rw io.ReadWriter = conn
	for _, s := range steps {
		switch {
		case s.tls:
			tc := tls.Server(conn, cfg)
			if tc.Handshake() != nil {
				return
			}
			rw, br = tc, bufio.NewReader(tc)
		case s.hold:
			io.Copy(io.Discard, br)
			return
		case s.send != "":
			if _, err := io.WriteString(rw, s.send); err != nil {
				return
			}
		default:
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			l = strings.TrimRight(l, "\r\n")
			if tr != nil {
				tr.add(l)
			}
			if l != s.expect {
				return
			}
		}
	}
	for {
		if _, err := br.ReadString('\n'); err != nil {
			return
		}
		if _, err := io.WriteString(rw, "tls ok\r\n"); err != nil {
			return
		}
	}
}

// scripted starts a loopback listener whose single connection plays steps.
// It returns the address; the goroutine is waited for at cleanup.
func scripted(t *testing.T, cfg *tls.Config, steps ...step) (string, *transcript) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tr := new(transcript)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		runScript(conn, steps, cfg, tr)
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), tr
}

// dial connects to addr and closes the conn at cleanup.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// tcpPair returns two ends of a loopback TCP connection, closed at cleanup.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() {
		a.Close()
		r.c.Close()
	})
	return a, r.c
}
