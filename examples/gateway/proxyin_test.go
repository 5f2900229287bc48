package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// startGateway runs the gateway in-process with args and returns listener
// addresses by name.
func startGateway(t *testing.T, args ...string) map[string]string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o, err := parseFlags(args, io.Discard)
	require.NoError(t, err)
	g, err := build(o, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, g.start(ctx, make(chan os.Signal)))
	t.Cleanup(func() { cancel(); g.shutdown(5 * time.Second) })
	addrs := make(map[string]string)
	for i, l := range g.listeners {
		addrs[g.specs[i].Name] = l.Addr().String()
	}
	return addrs
}

func demoMX(t *testing.T) (mx, certArg string) {
	t.Helper()
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	ca, err := mailtest.GenerateCA("gw test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mx.example.com")
	require.NoError(t, err)
	c, k, err := leaf.WriteFiles(t.TempDir(), "mx")
	require.NoError(t, err)
	return addrs.MX, c + "," + k
}

// dialAs connects and sends a PROXY v2 header claiming src.
func dialAs(t *testing.T, addr, src string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, c.RemoteAddr())
	_, err = h.WriteTo(c)
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func TestInboundProxyLimitsKeyOnRealAddress(t *testing.T) {
	mx, cert := demoMX(t)
	addrs := startGateway(t, "-cert", cert, "-hostname", "mx.example.com",
		"-listen", "smtp=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,pool=mx,limit,proxy",
		"-backend", "mx="+mx+",probe=none", "-limits", "inflight=1", "-proxy-from", "127.0.0.0/8")

	_, r1 := dialAs(t, addrs["smtp"], "203.0.113.9")
	line, err := r1.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "220 "), line)

	// Another real client behind the same balancer is admitted.
	_, r2 := dialAs(t, addrs["smtp"], "198.51.100.7")
	line, err = r2.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "220 "), line)

	// A second connection from the first real address is over its in-flight limit.
	_, r3 := dialAs(t, addrs["smtp"], "203.0.113.9")
	line, err = r3.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "421 4.7.0 mx.example.com Error: too many connections from 203.0.113.9\r\n", line)
}

func TestInboundProxyWithoutHeaderIsRefused(t *testing.T) {
	mx, cert := demoMX(t)
	addrs := startGateway(t, "-cert", cert,
		"-listen", "smtp=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,pool=mx,proxy",
		"-backend", "mx="+mx+",probe=none", "-proxy-from", "127.0.0.0/8")
	c, err := net.Dial("tcp", addrs["smtp"])
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	// No header within the gateway's header timeout: closed, no greeting.
	b, err := io.ReadAll(c)
	assert.NoError(t, err)
	assert.Empty(t, string(b))
}

func TestInboundProxyNeedsProxyFrom(t *testing.T) {
	mx, cert := demoMX(t)
	o, err := parseFlags([]string{"-cert", cert, "-listen", "smtp=127.0.0.1:0,proto=smtp,tls=starttls,pool=mx,proxy",
		"-backend", "mx=" + mx + ",probe=none"}, io.Discard)
	require.NoError(t, err)
	_, err = build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorContains(t, err, "-proxy-from")
}
