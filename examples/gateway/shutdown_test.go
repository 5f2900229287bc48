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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Shutdown stops accepting at once, lets a session in progress run for the
// grace period, then cuts it, and returns with every goroutine done.
func TestShutdownGrace(t *testing.T) {
	mx, cert := demoMX(t)
	o, err := parseFlags([]string{"-cert", cert, "-listen", "smtp=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,pool=mx",
		"-backend", "mx=" + mx + ",probe=none"}, io.Discard)
	require.NoError(t, err)
	g, err := build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, g.start(ctx, make(chan os.Signal)))
	addr := g.listeners[0].Addr().String()

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "220 "), line)

	done := make(chan struct{})
	start := time.Now()
	go func() { g.shutdown(300 * time.Millisecond); close(done) }()

	// New connections are refused once the listener is closed.
	require.Eventually(t, func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)

	// The open session still works during the grace period.
	_, err = c.Write([]byte("NOOP\r\n"))
	require.NoError(t, err)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "250"), line)

	// After the grace period it is cut and shutdown returns.
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return")
	}
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the session had its grace period")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = r.ReadString('\n')
	assert.Error(t, err, "the session was closed")
}
