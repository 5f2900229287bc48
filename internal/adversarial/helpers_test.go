package adversarial_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// ioWait bounds every single read or write a test makes, so that a bug
// which makes a peer hang fails the test instead of hanging it. It is a
// safety net, not an assertion about speed.
const ioWait = 10 * time.Second

// knownFailure skips the test with a pointer to SECURITY.md when ok is
// false: the case documents a library bug that is not fixed yet. Every
// assertion before it has run; once the bug is fixed the case passes.
func knownFailure(t *testing.T, ok bool, finding string) {
	t.Helper()
	if !ok {
		t.Skipf("known failure: %s; see SECURITY.md", finding)
	}
}

// pki is a test CA with a leaf for mail.example.com and *.example.org, the
// server config the library builds from it and a client config trusting it.
type pki struct {
	ca     *mailtest.CA
	leaf   *mailtest.Leaf
	res    *sni.Resolver
	server *tls.Config
	client *tls.Config
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := mailtest.GenerateCA("adversarial CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com", "*.example.org")
	require.NoError(t, err)
	res := &sni.Resolver{}
	require.NoError(t, res.AddDefault(&leaf.TLS))
	return &pki{ca: ca, leaf: leaf, res: res, server: res.TLSConfig(sni.Policy{}),
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"}}
}

// script is a fake backend's behaviour: mailtest.Script, as a local type
// so that the case tables can list its fields unkeyed.
type script struct {
	Greeting  string
	Answers   map[string]string
	TLSConfig *tls.Config
}

// Serve runs the script on c (mailtest.Script.Serve).
func (s script) Serve(c net.Conn) { mailtest.Script(s).Serve(c) }

// newFake runs handle for each connection to a loopback server that lives
// as long as the test (mailtest.NewFake), with the ioWait safety net as the
// connection's deadline.
func newFake(t *testing.T, handle func(c net.Conn)) *mailtest.Fake {
	t.Helper()
	return mailtest.NewFake(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(ioWait))
		handle(c)
	})
}

// conv is the client end of a line-based dialogue.
type conv struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialConv(t *testing.T, addr string) *conv {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &conv{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes s in one write.
func (c *conv) send(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(ioWait))
	_, err := io.WriteString(c.c, s)
	require.NoError(c.t, err)
}

// line reads one line, terminator included; "" and the error at EOF.
func (c *conv) line() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(ioWait))
	return c.r.ReadString('\n')
}

// must reads one line and fails the test if there is none.
func (c *conv) must() string {
	c.t.Helper()
	l, err := c.line()
	require.NoError(c.t, err, "got %q so far", l)
	return l
}

// until reads lines up to and including the first that starts with prefix.
func (c *conv) until(prefix string) []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.must()
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}

// rest reads everything up to EOF (or the safety deadline) and returns it.
func (c *conv) rest() string {
	c.c.SetReadDeadline(time.Now().Add(ioWait))
	b, _ := io.ReadAll(c.r)
	return string(b)
}

// upgrade switches c to TLS with cfg.
func (c *conv) upgrade(cfg *tls.Config) {
	c.t.Helper()
	require.Zero(c.t, c.r.Buffered(), "bytes after the go-ahead")
	tc := tls.Client(c.c, cfg)
	tc.SetDeadline(time.Now().Add(ioWait))
	require.NoError(c.t, tc.Handshake())
	c.c, c.r = tc, bufio.NewReader(tc)
}

// serveResult is what one Serve call returned.
type serveResult struct {
	sess *starttls.Session
	err  error
}

// serveStartTLS runs srv.Serve (or ServeTLS when implicit) for every
// connection to the returned address and reports each result. A Session's
// conn is closed once reported; on error the conn is closed, as the caller
// of Serve must do.
func serveStartTLS(t *testing.T, srv *starttls.Server, implicit bool) (string, <-chan serveResult) {
	t.Helper()
	results := make(chan serveResult, 16)
	f := newFake(t, func(c net.Conn) {
		c.SetDeadline(time.Time{})
		serve := srv.Serve
		if implicit {
			serve = srv.ServeTLS
		}
		sess, err := serve(context.Background(), c)
		if sess != nil {
			defer sess.Conn.Close()
		}
		results <- serveResult{sess, err}
	})
	return f.Addr(), results
}

// result waits for the next Serve result.
func result(t *testing.T, ch <-chan serveResult) serveResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(2 * ioWait):
		require.FailNow(t, "Serve did not return")
		return serveResult{}
	}
}

// serveProxy runs p on a loopback listener until the test ends.
func serveProxy(t *testing.T, p *mailedge.Proxy) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveProxyOn(t, p, l)
}

func serveProxyOn(t *testing.T, p *mailedge.Proxy, l net.Listener) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()
	t.Cleanup(func() {
		l.Close()
		cancel()
		assert.NoError(t, <-done)
	})
	return l.Addr().String()
}

// startDemo runs the in-process demo mail system; with cfg set its plain
// listeners offer STARTTLS/STLS, as a backend that was not told it sits
// behind a TLS proxy does.
func startDemo(t *testing.T, cfg *tls.Config) mailtest.Addrs {
	t.Helper()
	_, addrs := startDemoSys(t, cfg)
	return addrs
}

// startDemoSys is startDemo that also returns the System, to read mailboxes.
func startDemoSys(t *testing.T, cfg *tls.Config) (*mailtest.System, mailtest.Addrs) {
	t.Helper()
	sys, err := mailtest.New(mailtest.Options{TLSConfig: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	return sys, addrs
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// clientHello returns the first TLS record a crypto/tls client sends with
// cfg, captured over net.Pipe: real bytes, not hand-written ones.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, cfg).Handshake() // fails when b closes
	}()
	hdr := make([]byte, 5)
	_, err := io.ReadFull(b, hdr)
	require.NoError(t, err)
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	_, err = io.ReadFull(b, body)
	require.NoError(t, err)
	b.Close()
	<-done
	return append(hdr, body...)
}
