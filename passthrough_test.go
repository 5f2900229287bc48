package mailedge_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

const tenantGreeting = "* OK [CAPABILITY IMAP4rev1] tenant ready\r\n"

// tenant is an IMAPS server of a tenant that keeps its own keys: behind a
// PROXY v2 header, it terminates TLS with a certificate of its own CA.
type tenant struct {
	addr    string
	roots   *tls.Config // client side, trusting only the tenant's CA
	headers chan *proxyproto.Header
}

func newTenant(t *testing.T) *tenant {
	t.Helper()
	ca, err := mailtest.GenerateCA("tenant CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "tenant.example.com", "*.tenant.example.net")
	require.NoError(t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	tn := &tenant{roots: &tls.Config{RootCAs: ca.Pool(), ServerName: "tenant.example.com"}, headers: make(chan *proxyproto.Header, 4)}
	tn.addr = testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			return
		}
		tn.headers <- h
		tc := tls.Server(readerConn{c, br}, cfg)
		if tc.Handshake() != nil {
			return
		}
		io.WriteString(tc, tenantGreeting)
		tr := bufio.NewReader(tc)
		for {
			line, err := tr.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(line, " ")
			io.WriteString(tc, "* BYE tenant\r\n"+tag+" OK LOGOUT completed\r\n")
			tc.CloseWrite()
		}
	})
	return tn
}

// readerConn reads through a bufio.Reader that may hold bytes already read.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// passthroughProxy is f's implicit-TLS IMAP proxy (mail.example.com
// terminated, to the demo) with tenant.example.com and
// *.tenant.example.net passed through to tn.
func passthroughProxy(f *fixture, tn *tenant, onSession func(mailedge.SessionInfo)) *mailedge.Proxy {
	p := f.imaps(bridge.Options{}, onSession)
	pool, _ := backend.NewPool(backend.RoundRobin, backend.Member{Name: "tenant", Dialer: &backend.Dialer{
		Addr: tn.addr, Protocol: starttls.IMAP, Proxy: backend.ProxyV2, Passthrough: true}})
	p.Passthrough = mailedge.PassthroughNames(map[string]mailedge.Backend{"tenant.example.com": pool, "*.tenant.example.net": pool})
	return p
}

// logout reads the greeting on c, logs out and returns the greeting.
func logout(t *testing.T, c net.Conn) string {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	_, err = io.WriteString(c, "a1 LOGOUT\r\n")
	require.NoError(t, err)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "a1 ") {
			break
		}
	}
	return greeting
}

// TestPassthroughSharedPort: on one implicit-TLS port, the tenant's name
// reaches the tenant's own TLS server (its certificate, its greeting, a
// PROXY v2 header with the client's address and the SNI name) while
// mail.example.com is terminated by the proxy with its certificate.
func TestPassthroughSharedPort(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	tn := newTenant(t)
	sessions := make(chan mailedge.SessionInfo, 4)
	addr := serve(t, passthroughProxy(f, tn, func(in mailedge.SessionInfo) { sessions <- in }))

	for _, name := range []string{"tenant.example.com", "imap.tenant.example.net", "TENANT.Example.com"} {
		t.Run(name, func(t *testing.T) {
			cfg := tn.roots.Clone()
			cfg.ServerName = name
			c, err := tls.Dial("tcp", addr, cfg)
			require.NoError(t, err, "the client verifies the tenant's certificate against the tenant's CA")
			assert.Equal(t, "tenant.example.com", c.ConnectionState().PeerCertificates[0].Subject.CommonName)
			assert.Equal(t, tenantGreeting, logout(t, c))
			local := c.LocalAddr().String()
			c.Close()
			h := <-tn.headers
			assert.Equal(t, local, h.SourceAddr.String(), "the PROXY header carries the client's address")
			assert.Equal(t, addr, h.DestinationAddr.String())
			tlvs, err := h.TLVs()
			require.NoError(t, err)
			require.NotEmpty(t, tlvs)
			assert.Equal(t, proxyproto.PP2_TYPE_AUTHORITY, tlvs[0].Type)
			assert.Equal(t, strings.ToLower(name), string(tlvs[0].Value))
			in := <-sessions
			assert.Contains(t, []mailedge.Outcome{mailedge.OutcomeOK, mailedge.OutcomeReset}, in.Outcome, "%v", in.Err)
			assert.True(t, in.Passthrough)
			assert.Equal(t, strings.ToLower(name), in.ServerName)
			assert.Equal(t, "tenant", in.Member)
			assert.Nil(t, in.TLS, "the TLS is the tenant's")
			assert.Nil(t, in.Session)
			assert.Greater(t, in.Stats.ClientToServer, int64(200), "the ClientHello and the encrypted LOGOUT")
			assert.Greater(t, in.Stats.ServerToClient, int64(len(tenantGreeting)))
			assert.Contains(t, in.String(), `passthrough=true`)
		})
	}
	t.Run("terminated", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, f.roots)
		require.NoError(t, err, "the proxy's own certificate for mail.example.com")
		greeting := logout(t, c)
		c.Close()
		assert.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
		assert.NotEqual(t, tenantGreeting, greeting)
		in := <-sessions
		assert.False(t, in.Passthrough)
		require.NotNil(t, in.TLS)
		assert.Equal(t, "mail.example.com", in.TLS.ServerName)
		assert.Equal(t, f.addrs.IMAP, in.Member)
	})
	assert.Empty(t, tn.headers, "only passed-through sessions reach the tenant")
}

// TestPassthroughParks: on a passthrough listener, an idle session holds
// no copier goroutine, whether it was terminated here (its *tls.Conn is
// made over the replayed ClientHello, fed through the socket wrapper the
// bridge reads without blocking) or passed through (two plain sockets);
// each command wakes it, and it parks again.
func TestPassthroughParks(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	tn := newTenant(t)
	poller := &bridge.Poller{ParkAfter: 5 * time.Millisecond}
	t.Cleanup(func() { poller.Close() })
	p := passthroughProxy(f, tn, nil)
	p.Bridge.Poller = poller
	addr := serve(t, p)

	c, err := tls.Dial("tcp", addr, f.roots)
	require.NoError(t, err, "mail.example.com is terminated here")
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
	waitPumping(t, 0)
	for _, cmd := range []string{"a LOGIN demo@example.com demo", "b NOOP"} {
		_, err := io.WriteString(c, cmd+"\r\n")
		require.NoError(t, err)
		tag, _, _ := strings.Cut(cmd, " ")
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			if strings.HasPrefix(line, tag+" ") {
				assert.True(t, strings.HasPrefix(line, tag+" OK"), line)
				break
			}
		}
		waitPumping(t, 0)
	}

	cfg := tn.roots.Clone()
	pc, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err, "tenant.example.com is passed through")
	defer pc.Close()
	require.NoError(t, pc.SetDeadline(time.Now().Add(10*time.Second)))
	pr := bufio.NewReader(pc)
	greeting, err = pr.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, tenantGreeting, greeting)
	<-tn.headers
	waitPumping(t, 0)
}

// TestPassthroughTerminatesOthers: a ClientHello without SNI, or with a
// name that is not passed through, is terminated by the proxy over the
// replayed bytes (the default certificate answers).
func TestPassthroughTerminatesOthers(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	tn := newTenant(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	addr := serve(t, passthroughProxy(f, tn, func(in mailedge.SessionInfo) { sessions <- in }))
	for _, tt := range []struct{ name, sni string }{
		{"no sni", ""},
		{"unknown name", "other.example.org"},
		{"wildcard is one label", "a.b.tenant.example.net"},
		{"parent of wildcard", "tenant.example.net"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.roots.Clone()
			cfg.ServerName, cfg.InsecureSkipVerify = tt.sni, true
			c, err := tls.Dial("tcp", addr, cfg)
			require.NoError(t, err)
			assert.Equal(t, "mail.example.com", c.ConnectionState().PeerCertificates[0].Subject.CommonName)
			greeting := logout(t, c)
			c.Close()
			assert.NotEqual(t, tenantGreeting, greeting)
			in := <-sessions
			assert.False(t, in.Passthrough)
			assert.Equal(t, f.addrs.IMAP, in.Member)
		})
	}
	assert.Empty(t, tn.headers)
}

// clientHello returns the first bytes a crypto/tls client with cfg sends.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, cfg).Handshake()
	}()
	require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 64<<10)
	var out []byte
	hdr := make([]byte, 5)
	_, err := io.ReadFull(b, hdr)
	require.NoError(t, err)
	n := int(hdr[3])<<8 | int(hdr[4])
	_, err = io.ReadFull(b, buf[:n])
	require.NoError(t, err)
	out = append(append(out, hdr...), buf[:n]...)
	a.Close()
	b.Close()
	<-done
	return out
}

// TestPassthroughBadInput: what is not a complete, acceptable ClientHello
// ends the session as a client error (or, for bytes that are not TLS at
// all, in the handshake as without Passthrough), within the handshake
// timeout, without a panic, a leak, or a byte sent to the tenant.
func TestPassthroughBadInput(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	tn := newTenant(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	p := passthroughProxy(f, tn, func(in mailedge.SessionInfo) { sessions <- in })
	p.Server.HandshakeTimeout = 200 * time.Millisecond
	addr := serve(t, p)
	hello := clientHello(t, &tls.Config{ServerName: "tenant.example.com"})
	big := clientHello(t, &tls.Config{ServerName: "tenant.example.com", NextProtos: manyProtos(100)})
	require.Greater(t, len(big), sni.DefaultMaxHello)
	tests := []struct {
		name string
		send []byte
		want error  // errors.Is on SessionInfo.Err
		text string // in SessionInfo.Err otherwise
	}{
		{name: "partial hello", send: hello[:len(hello)/2], want: os.ErrDeadlineExceeded},
		{name: "nothing", want: os.ErrDeadlineExceeded},
		{name: "oversize hello", send: big, want: sni.ErrHelloTooLarge},
		{name: "plain imap", send: []byte("a1 CAPABILITY\r\n"), text: "does not look like a TLS handshake"},
		{name: "http", send: []byte("GET / HTTP/1.1\r\nHost: tenant.example.com\r\n\r\n"), text: "does not look like a TLS handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			if len(tt.send) > 0 {
				go c.Write(tt.send) // an oversize hello is not read to its end
			}
			in := <-sessions
			assert.Equal(t, mailedge.OutcomeClientError, in.Outcome)
			if tt.want != nil {
				assert.ErrorIs(t, in.Err, tt.want)
			} else {
				require.Error(t, in.Err)
				assert.Contains(t, in.Err.Error(), tt.text)
			}
			assert.Contains(t, in.Err.Error(), "tls handshake")
			assert.False(t, in.Passthrough)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
			got, _ := io.ReadAll(c)
			assert.NotContains(t, string(got), "* OK", "no greeting")
		})
	}
	assert.Empty(t, tn.headers, "nothing reached the tenant")
}

func manyProtos(n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = strings.Repeat(string(rune('a'+i%26)), 200)
	}
	return p
}

// TestPassthroughLimitsAndNoBackend: a passed-through session is admitted
// and counted in flight like any other, and a tenant that cannot be
// reached closes the client's connection with OutcomeNoBackend.
func TestPassthroughLimitsAndNoBackend(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	tn := newTenant(t)
	sessions := make(chan mailedge.SessionInfo, 2)
	p := passthroughProxy(f, tn, func(in mailedge.SessionInfo) { sessions <- in })
	p.Limiter = &ratelimit.Limiter{Limits: ratelimit.Limits{InFlight: 1}}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	dead.Close()
	tenantNames := p.Passthrough
	p.Passthrough = func(hello *tls.ClientHelloInfo) mailedge.Backend {
		if hello.ServerName == "gone.example.com" {
			return &backend.Dialer{Addr: deadAddr, Protocol: starttls.IMAP, Passthrough: true}
		}
		return tenantNames(hello)
	}
	addr := serve(t, p)

	first, err := tls.Dial("tcp", addr, tn.roots)
	require.NoError(t, err)
	defer first.Close()
	r := bufio.NewReader(first)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, tenantGreeting, greeting)

	// The first session is in flight: a second one from the same source
	// is refused before anything is read.
	_, err = tls.Dial("tcp", addr, tn.roots)
	require.Error(t, err)
	in := <-sessions
	assert.Equal(t, mailedge.OutcomeLimited, in.Outcome)
	first.Close()
	in = <-sessions
	assert.True(t, in.Passthrough)

	cfg := tn.roots.Clone()
	cfg.ServerName = "gone.example.com"
	_, err = tls.Dial("tcp", addr, cfg)
	require.Error(t, err, "closed without a ServerHello")
	in = <-sessions
	assert.Equal(t, mailedge.OutcomeNoBackend, in.Outcome)
	assert.True(t, in.Passthrough)
	assert.Equal(t, "gone.example.com", in.ServerName)
}

// TestPassthroughGreetingBackend: a backend that greets is not a
// passthrough member; the session fails instead of sending its greeting
// to a client that waits for a ServerHello.
func TestPassthroughGreetingBackend(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	p := f.imaps(bridge.Options{}, func(in mailedge.SessionInfo) { sessions <- in })
	p.Passthrough = func(*tls.ClientHelloInfo) mailedge.Backend {
		return &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP}
	}
	addr := serve(t, p)
	_, err := tls.Dial("tcp", addr, f.roots)
	require.Error(t, err)
	in := <-sessions
	assert.Equal(t, mailedge.OutcomeNoBackend, in.Outcome)
	assert.ErrorIs(t, in.Err, mailedge.ErrPassthroughGreeting)
}

func TestPassthroughNames(t *testing.T) {
	a, b := &backend.Dialer{Addr: "a:1"}, &backend.Dialer{Addr: "b:1"}
	route := mailedge.PassthroughNames(map[string]mailedge.Backend{
		"Tenant.Example.com.": a, "*.example.net": b, "exact.example.net": a,
	})
	for _, tt := range []struct {
		name string
		want mailedge.Backend
	}{
		{"tenant.example.com", a},
		{"TENANT.EXAMPLE.COM", a},
		{"tenant.example.com.", a},
		{"x.example.net", b},
		{"exact.example.net", a},
		{"a.x.example.net", nil},
		{"example.net", nil},
		{"", nil},
		{"other.example.com", nil},
	} {
		got := route(&tls.ClientHelloInfo{ServerName: tt.name})
		if tt.want == nil {
			assert.Nil(t, got, tt.name)
		} else {
			assert.Same(t, tt.want, got, tt.name)
		}
	}
}
