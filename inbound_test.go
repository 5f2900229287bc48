package mailedge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/starttls"
)

// headerWait is the header timeout of these tests: far beyond the test
// binary's own timeout, so a greeting held back until the header timeout
// fires would fail the run instead of passing late.
const headerWait = time.Hour

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// From a source outside the trusted balancers, Accept returns the socket
// itself: nothing can wait for a header, the greeting goes out at once,
// and a header such a client sends is just a bad command, never honoured.
func TestProxyListenerUntrustedSource(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := mailedge.ProxyListener(raw, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, headerWait)
	c, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	accepted, err := l.Accept()
	require.NoError(t, err)
	assert.IsType(t, (*net.TCPConn)(nil), accepted, "an untrusted source's conn is not wrapped")
	accepted.Close()
	l.Close()

	f := newFixture(t)
	raw, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sessions := make(chan mailedge.SessionInfo, 1)
	serve(t, &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg, Hostname: "mx.example.com"},
		Backend:   &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
		OnSession: func(in mailedge.SessionInfo) { sessions <- in },
	}, mailedge.ProxyListener(raw, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, headerWait))

	spoof, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer spoof.Close()
	r := bufio.NewReader(spoof)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "220 "), "greeted before sending anything: %q", line)
	h := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP("203.0.113.1"), Port: 1}, spoof.RemoteAddr())
	_, err = h.WriteTo(spoof)
	require.NoError(t, err)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "5"), "the header is a bad command: %q", line)
	_, err = spoof.Write([]byte("QUIT\r\n"))
	require.NoError(t, err)
	in := <-sessions
	assert.True(t, strings.HasPrefix(in.Client.String(), "127.0.0.1:"), "got %v; want the socket's address", in.Client)
}

// headerConn writes a PROXY header in the same write as its first bytes,
// as a balancer that has the client's first segment already does: the
// proxy must not read past the header.
type headerConn struct {
	net.Conn
	once   sync.Once
	header []byte
}

func (c *headerConn) Write(p []byte) (int, error) {
	var err error
	sent := false
	c.once.Do(func() {
		_, err = c.Conn.Write(append(c.header, p...))
		sent = true
	})
	if sent {
		return len(p), err
	}
	return c.Conn.Write(p)
}

func (c *headerConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// dialBehind connects as a balancer would for a client at src: with a
// PROXY header of version v, sent with the first bytes of the session.
func dialBehind(t *testing.T, addr string, v byte, src string) *headerConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	h := proxyproto.HeaderProxyFromAddrs(v, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 995})
	b, err := h.Format()
	require.NoError(t, err)
	return &headerConn{Conn: c, header: b}
}

// Behind a trusted balancer the session runs on the socket itself: the
// header is read exactly (the ClientHello sent in the same segment is
// intact), the session reports the header's address, it parks while idle
// (the bridge can wait for readiness on the socket), and a client's
// half-close reaches the backend as end of file at once (the socket can be
// half-closed), for an implicit-TLS and a plain session.
func TestProxyListenerTrustedSessionRunsOnSocket(t *testing.T) {
	for _, tt := range []struct {
		name     string
		version  byte
		implicit bool
	}{
		{"implicit TLS, v2", 2, true},
		{"implicit TLS, v1", 1, true},
		{"plain, v2", 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			f := newFixture(t)
			got := make(chan string, 1)
			be := testnet.Serve(t, func(c net.Conn) {
				io.WriteString(c, "+OK fake ready\r\n")
				r := bufio.NewReader(c)
				if line, err := r.ReadString('\n'); err != nil || line != "USER demo\r\n" {
					return
				}
				io.WriteString(c, "+OK send PASS\r\n")
				b, err := io.ReadAll(r) // returns at the half-close
				if err == nil {
					got <- string(b)
				}
				io.WriteString(c, "+OK bye\r\n")
			})
			poller := &bridge.Poller{ParkAfter: 5 * time.Millisecond}
			t.Cleanup(func() { poller.Close() })
			sessions := make(chan mailedge.SessionInfo, 1)
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := serve(t, &mailedge.Proxy{
				Server:    &starttls.Server{Protocol: starttls.POP3, Mode: starttls.Disallow, TLSConfig: f.cfg},
				Implicit:  tt.implicit,
				Backend:   &backend.Dialer{Addr: be, Protocol: starttls.POP3},
				Bridge:    bridge.Options{Poller: poller},
				OnSession: func(in mailedge.SessionInfo) { sessions <- in },
			}, mailedge.ProxyListener(raw, loopback, headerWait))

			hc := dialBehind(t, addr, tt.version, "192.0.2.9")
			var c net.Conn = hc
			closeWrite := hc.CloseWrite
			if tt.implicit {
				tc := tls.Client(hc, f.roots) // the header goes with the ClientHello
				c, closeWrite = tc, tc.CloseWrite
			} else {
				_, err := hc.Write(nil) // the header alone: the server speaks first
				require.NoError(t, err)
			}
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(line, "+OK"), line)
			_, err = io.WriteString(c, "USER demo\r\n")
			require.NoError(t, err)
			line, err = r.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "+OK send PASS\r\n", line, "the copy runs")
			waitPumping(t, 0) // parked: no goroutine copies
			_, err = io.WriteString(c, "PASS x\r\n")
			require.NoError(t, err)
			require.NoError(t, closeWrite())
			assert.Equal(t, "PASS x\r\n", <-got, "the backend saw the half-close")
			rest, err := io.ReadAll(r)
			assert.NoError(t, err)
			assert.Equal(t, "+OK bye\r\n", string(rest))
			in := <-sessions
			assert.Equal(t, mailedge.OutcomeOK, in.Outcome, "%v", in.Err)
			assert.Equal(t, "192.0.2.9:40000", in.Client.String())
		})
	}
}

// A trusted source that sends no header is closed unanswered and the
// session says why; ending the context stops the wait for the header.
func TestProxyListenerTrustedWithoutHeader(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		cancel  bool
	}{
		{"header timeout", 50 * time.Millisecond, false},
		{"context ends", headerWait, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			p := &mailedge.Proxy{
				Server:    &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg},
				Backend:   &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
				OnSession: func(in mailedge.SessionInfo) { sessions <- in },
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			accepted := make(chan struct{}, 1)
			l := &signalListener{Listener: mailedge.ProxyListener(raw, loopback, tt.timeout), accepted: accepted}
			done := make(chan error, 1)
			go func() { done <- p.Serve(ctx, l) }()
			c, err := net.Dial("tcp", raw.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			<-accepted
			if tt.cancel {
				cancel()
			}
			b, err := io.ReadAll(c)
			assert.NoError(t, err)
			assert.Empty(t, string(b), "nothing said without a header")
			in := <-sessions
			assert.Equal(t, mailedge.OutcomeClientError, in.Outcome)
			if !tt.cancel {
				assert.ErrorIs(t, in.Err, mailedge.ErrProxyHeader)
			} else {
				assert.True(t, errors.Is(in.Err, context.Canceled) || errors.Is(in.Err, mailedge.ErrProxyHeader), "%v", in.Err)
			}
			cancel()
			assert.NoError(t, <-done)
		})
	}
}

// signalListener tells when it has accepted a connection.
type signalListener struct {
	net.Listener
	accepted chan<- struct{}
}

func (l *signalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted <- struct{}{}
	}
	return c, err
}
