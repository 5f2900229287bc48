package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni/acme/acmetest"
)

// TestACMEGateway: -acme-domains with pebble: the certificates are
// obtained before the gateway serves, an implicit-TLS IMAP listener serves
// them by SNI with the imap ALPN id, and a renewal reloads the Store with
// one log line.
func TestACMEGateway(t *testing.T) {
	pb := acmetest.Start(t, acmetest.Options{})
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })

	o, err := parseFlags([]string{
		"-acme-domains", "mail.example.com,mail.example.net", "-acme-email", "postmaster@example.com",
		"-acme-ca", pb.Directory, "-acme-ca-root", pb.CAFile,
		"-acme-http", "127.0.0.1:" + strconv.Itoa(pb.HTTPPort), "-acme-dir", t.TempDir(),
		"-listen", "imaps=127.0.0.1:0,proto=imap,tls=implicit,pool=imap",
		"-backend", "imap=" + addrs.IMAP + ",probe=none", "-watch", "0",
	}, io.Discard)
	require.NoError(t, err)
	logs := &syncBuffer{}
	g, err := build(o, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err, "logs:\n%s", logs)
	require.NotNil(t, g.acme)
	// Renew at once and check often, so that Run renews both names.
	g.acme.RenewBefore = 365 * 24 * time.Hour
	g.acme.CheckInterval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, g.start(ctx, make(chan os.Signal)))
	t.Cleanup(func() { cancel(); g.shutdown(5 * time.Second) })
	addr := g.listeners[0].Addr().String()

	roots := pb.IssuerRoots(t)
	for _, name := range []string{"mail.example.com", "mail.example.net"} {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"imap"}})
		require.NoError(t, err, name)
		st := c.ConnectionState()
		assert.Equal(t, "imap", st.NegotiatedProtocol, name)
		assert.Equal(t, []string{name}, st.PeerCertificates[0].DNSNames)
		greeting, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(greeting, "* OK"), "greeting %q", greeting)
		c.Close()
	}
	deadline := time.Now().Add(time.Minute)
	for strings.Count(logs.String(), `msg="acme certificate renewed"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := logs.String()
	assert.Equal(t, 2, strings.Count(out, `msg="acme certificate renewed"`), "renewal lines in:\n%s", out)
	assert.Contains(t, out, `msg="acme certificate renewed" domain=mail.example.com`)
	assert.Contains(t, out, "certificates reloaded")
}

func TestACMEFlags(t *testing.T) {
	base := []string{"-listen", "imaps=127.0.0.1:0,proto=imap,tls=implicit,pool=imap", "-backend", "imap=127.0.0.1:1,probe=none"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no -acme-http", []string{"-acme-domains", "mail.example.com", "-acme-email", "a@example.com"}, "-acme-domains needs -acme-http"},
		{"no -acme-email", []string{"-acme-domains", "mail.example.com", "-acme-http", "127.0.0.1:0"}, "-acme-domains needs -acme-email"},
		{"-acme-http alone", []string{"-acme-http", "127.0.0.1:0"}, "need -acme-domains"},
		{"bad root file", []string{"-acme-domains", "mail.example.com", "-acme-email", "a@example.com", "-acme-http", "127.0.0.1:0", "-acme-ca-root", "/nonexistent.pem"}, "-acme-ca-root"},
		{"wildcard over HTTP-01", []string{"-acme-domains", "*.example.com", "-acme-email", "a@example.com", "-acme-http", "127.0.0.1:0"}, "needs DNS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append(tc.args, base...), io.Discard)
			require.NoError(t, err)
			_, err = build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
