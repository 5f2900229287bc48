package monitor_test

import (
	"context"
	"net"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/monitor"
)

// A member that accepts only a balancer's connections (Dovecot haproxy = yes)
// is probed through a Dial hook that writes a PROXY v2 LOCAL header first.
func TestProbeDialHookWritesProxyHeader(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := &proxyproto.Listener{Listener: raw, ReadHeaderTimeout: 2 * time.Second} // REQUIRE by default
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if _, err := c.Write([]byte("220 mx.example.com ESMTP\r\n")); err == nil {
				buf := make([]byte, 64)
				c.Read(buf) // QUIT
				c.Write([]byte("221 bye\r\n"))
			}
			c.Close()
		}
	}()
	defer func() { l.Close(); <-done }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	plain := monitor.Greeting{}.Probe(ctx, raw.Addr().String())
	assert.False(t, plain.OK, "without the header the member never greets")

	withHeader := monitor.Greeting{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}
	r := withHeader.Probe(ctx, raw.Addr().String())
	assert.True(t, r.OK, "%v", r.Err)
}
