package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

func TestSMTPStartTLSRequire(t *testing.T) {
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	defer sys.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-backend", addrs.MX}, ready) }()
	addr := <-ready
	defer func() { cancel(); <-done }()

	// Before TLS, MAIL is refused in Require mode.
	plain, err := smtp.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, plain.Hello("client.example"))
	var se *smtp.SMTPError
	require.ErrorAs(t, plain.Mail("a@example.org", nil), &se)
	assert.Equal(t, 530, se.Code)
	plain.Close()

	// After STARTTLS, a message for a local domain reaches the backend.
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true}) // throwaway certificate
	require.NoError(t, err)
	require.NoError(t, c.SendMail("someone@example.org", []string{"demo@example.com"},
		strings.NewReader("Subject: via-smtp-starttls\r\n\r\nhello\r\n")))
	require.NoError(t, c.Quit())
	msgs, err := sys.Messages(context.Background(), "demo@example.com")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Subject: via-smtp-starttls")
}
