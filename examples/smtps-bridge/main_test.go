package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// The backend speaks implicit TLS with a certificate from its own CA; the
// example verifies it by name and CA, and bridges the client's session.
func TestSMTPSBridge(t *testing.T) {
	ca, err := mailtest.GenerateCA("backend CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mx.internal")
	require.NoError(t, err)
	caFile, err := ca.WriteCA(t.TempDir(), "ca.pem")
	require.NoError(t, err)
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	defer sys.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-backend", addrs.Submissions,
			"-backend-name", "mx.internal", "-backend-ca", caFile}, ready)
	}()
	addr := <-ready
	defer func() { cancel(); <-done }()

	tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // throwaway certificate
	require.NoError(t, err)
	c := smtp.NewClient(tc)
	require.NoError(t, c.Hello("client.example"))
	require.NoError(t, c.Auth(sasl.NewPlainClient("", "demo@example.com", "demo")))
	require.NoError(t, c.SendMail("demo@example.com", []string{"demo@example.com"},
		strings.NewReader("Subject: via-smtps-bridge\r\n\r\nhello\r\n")))
	require.NoError(t, c.Quit())
	msgs, err := sys.Messages(context.Background(), "demo@example.com")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Subject: via-smtps-bridge")
}
