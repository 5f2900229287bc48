package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// TestSIGHUPReload renews the certificate on disk and signals a reload: the
// new certificate is served afterwards; a broken file keeps the old one.
func TestSIGHUPReload(t *testing.T) {
	mx, _ := demoMX(t)
	ca, err := mailtest.GenerateCA("reload CA")
	require.NoError(t, err)
	dir := t.TempDir()
	first, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	certFile, keyFile, err := first.WriteFiles(dir, "mail")
	require.NoError(t, err)

	o, err := parseFlags([]string{"-cert", certFile + "," + keyFile, "-watch", "0",
		"-listen", "smtps=127.0.0.1:0,proto=smtp,tls=implicit,pool=mx", "-backend", "mx=" + mx + ",probe=none"}, io.Discard)
	require.NoError(t, err)
	g, err := build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	hup := make(chan os.Signal) // unbuffered: a send returns once the loop took it
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, g.start(ctx, hup))
	t.Cleanup(func() { cancel(); g.shutdown(5 * time.Second) })
	addr := g.listeners[0].Addr().String()

	serial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	waitFor := func(want string) {
		deadline := time.Now().Add(10 * time.Second)
		for serial() != want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		assert.Equal(t, want, serial())
	}
	require.Equal(t, first.Cert.SerialNumber.String(), serial())

	renewed, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	_, _, err = renewed.WriteFiles(dir, "mail")
	require.NoError(t, err)
	hup <- syscall.SIGHUP
	waitFor(renewed.Cert.SerialNumber.String())

	// A garbled renewal is refused and the renewed certificate stays.
	require.NoError(t, os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o600))
	hup <- syscall.SIGHUP
	hup <- syscall.SIGHUP // the second send returns once the first was taken
	assert.Equal(t, renewed.Cert.SerialNumber.String(), serial())
}
