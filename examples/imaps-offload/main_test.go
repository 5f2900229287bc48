package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// The backend requires a PROXY header from loopback, as a Dovecot listener
// with haproxy = yes does; the example sends PROXY v2.
func TestIMAPSOffload(t *testing.T) {
	sys, err := mailtest.New(mailtest.Options{AcceptProxy: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	defer sys.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-backend", addrs.IMAP}, ready) }()
	addr := <-ready
	defer func() { cancel(); <-done }()

	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	_, err = c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.NoError(t, c.Logout().Wait())
}
