package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

// alpnIMAPS serves implicit TLS that insists on the ALPN id "imap", as a
// server defending against ALPACA does, and greets like IMAP.
func alpnIMAPS(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"imap"}}
	return testnet.Serve(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			io.WriteString(tc, "* OK ready\r\n")
		}
	})
}

// probe=tls checks the member's certificate the way the member is reached:
// after STARTTLS for security=starttls, with the ALPN id of the listener's
// protocol, and without verification for insecure.
func TestProbeTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := mailtest.GenerateCA("probe test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "backend.mail.internal")
	require.NoError(t, err)
	caFile, err := ca.WriteCA(dir, "ca.pem")
	require.NoError(t, err)
	certFile, keyFile, err := leaf.WriteFiles(dir, "backend")
	require.NoError(t, err)
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	trusted := ",servername=backend.mail.internal,ca=" + caFile

	for _, tt := range []struct {
		name, proto, addr, opts string
		ok                      bool
	}{
		{"imap starttls", "imap", addrs.IMAP, "security=starttls" + trusted, true},
		{"smtp starttls", "smtp", addrs.Submission, "security=starttls" + trusted, true},
		{"pop3 stls", "pop3", addrs.POP3, "security=starttls" + trusted, true},
		{"smtps", "smtp", addrs.Submissions, "security=tls" + trusted, true},
		{"imaps requiring ALPN imap", "imap", alpnIMAPS(t, leaf.TLS), "security=tls" + trusted, true},
		{"insecure, no CA", "smtp", addrs.Submissions, "security=tls,servername=backend.mail.internal,insecure", true},
		{"no CA, not insecure", "smtp", addrs.Submissions, "security=tls,servername=backend.mail.internal", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags([]string{"-cert", certFile + "," + keyFile,
				"-listen", "x=127.0.0.1:0,proto=" + tt.proto + ",pool=x",
				"-backend", "x=" + tt.addr + "," + tt.opts + ",probe=tls"}, io.Discard)
			require.NoError(t, err)
			g, err := build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			require.Len(t, g.checkers, 1)
			c := g.checkers[0].c
			res := c.Probe.Probe(context.Background(), c.Addr)
			assert.Equal(t, tt.ok, res.OK, "%v", res.Err)
			if tt.ok {
				assert.False(t, res.Expires.IsZero(), "the certificate was seen")
			}
		})
	}
}
