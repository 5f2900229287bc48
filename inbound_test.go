package mailedge_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// From a source outside the trusted balancers a connection is served as it
// is, and one that opens with a PROXY header (claiming another address) is
// refused.
func TestProxyListenerUntrustedSource(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := mailedge.ProxyListener(raw, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, time.Second)
	sessions := make(chan mailedge.SessionInfo, 2)
	p := &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg, Hostname: "mx.example.com"},
		Backend:   &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
		OnSession: func(in mailedge.SessionInfo) { sessions <- in },
	}
	done := make(chan struct{})
	go func() { p.Serve(t.Context(), l); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })

	plain, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer plain.Close()
	plain.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(plain).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "220 "), line)
	plain.Write([]byte("QUIT\r\n"))
	in := <-sessions
	assert.True(t, strings.HasPrefix(in.Client.String(), "127.0.0.1:"), in.Client.String())

	spoof, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer spoof.Close()
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.1"), Port: 1}, spoof.RemoteAddr())
	_, err = h.WriteTo(spoof)
	require.NoError(t, err)
	spoof.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ = bufio.NewReader(spoof).ReadString('\n')
	assert.Empty(t, line, "a header from an untrusted source is refused, not honoured")
	in = <-sessions
	assert.NotEqual(t, "203.0.113.1:1", in.Client.String())
}
