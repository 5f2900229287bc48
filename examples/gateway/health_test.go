package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// probe GETs path on the -metrics address and returns the status and body.
func probe(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// /healthz and /readyz answer 200 "ok" as soon as the -metrics server
// answers at all (it starts after every listener is open and its accept
// loop started), as plain text that is not cached. When an accept loop
// ends while the gateway is not stopping (an accept error the proxy does
// not retry closes the listener; here the test closes it), both turn 503
// and name that listener only.
func TestHealthAndReadiness(t *testing.T) {
	metricsAddr := testnet.FreeAddr(t)
	d := startDemoGateway(t, io.Discard, true, "-metrics", metricsAddr)

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + metricsAddr + path)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Equal(t, "ok\n", string(b), path)
		assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"), path)
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), path)
	}
	// The probes are for GET (and HEAD); /metrics is still there.
	resp, err := http.Post("http://"+metricsAddr+"/readyz", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, err = http.Head("http://" + metricsAddr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	code, body := probe(t, metricsAddr, "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "mailedge_certificate_expiry_timestamp_seconds")

	i := -1
	for j, ls := range d.g.specs {
		if ls.Name == "imaps" {
			i = j
		}
	}
	require.GreaterOrEqual(t, i, 0, "the demo has an imaps listener")
	require.NoError(t, d.g.listeners[i].Close())
	for _, path := range []string{"/readyz", "/healthz"} {
		code, body := probe(t, metricsAddr, path)
		assert.Equal(t, http.StatusServiceUnavailable, code, path)
		assert.Equal(t, "listener imaps: not accepting\n", body, path)
	}
	// The other listeners still serve.
	c, err := net.Dial("tcp", d.addrs["imap"])
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "* OK"), line)
}

// From the moment shutdown begins, /readyz answers 503 "shutting down"
// while /healthz stays 200 and the open session keeps working for the
// grace period; the probes stop with the gateway.
func TestReadinessDuringShutdown(t *testing.T) {
	mx, cert := demoMX(t)
	metricsAddr := testnet.FreeAddr(t)
	o, err := parseFlags([]string{"-cert", cert, "-metrics", metricsAddr,
		"-listen", "smtp=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,pool=mx",
		"-backend", "mx=" + mx + ",probe=none"}, io.Discard)
	require.NoError(t, err)
	g, err := build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, g.start(ctx, make(chan os.Signal)))
	addr := g.listeners[0].Addr().String()
	code, body := probe(t, metricsAddr, "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "220 "), line)

	done := make(chan struct{})
	go func() { g.shutdown(20 * time.Second); close(done) }()
	require.Eventually(t, func() bool {
		code, _ := probe(t, metricsAddr, "/readyz")
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 5*time.Millisecond)
	code, body = probe(t, metricsAddr, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "shutting down\n", body)
	code, body = probe(t, metricsAddr, "/healthz")
	assert.Equal(t, http.StatusOK, code, "draining is alive")
	assert.Equal(t, "ok\n", body)

	// Still within the grace period: the session answers.
	_, err = c.Write([]byte("NOOP\r\n"))
	require.NoError(t, err)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "250"), line)
	select {
	case <-done:
		t.Fatal("shutdown returned with a session open")
	default:
	}

	// The session ends: shutdown returns well before its grace, and the
	// probes are gone with the gateway.
	_, err = c.Write([]byte("QUIT\r\n"))
	require.NoError(t, err)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown did not return after the last session ended")
	}
	_, err = http.Get("http://" + metricsAddr + "/readyz")
	assert.Error(t, err, "the -metrics server stopped")
}
