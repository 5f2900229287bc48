package starttls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Scripted backends of the fake-mail-server kind (issue 9 section B): each
// one must make Upgrade fail closed with the named error, close the conn,
// and never hand back a plain-text session.

var (
	smtpEHLO  = []step{send("220 mail.test ESMTP\r\n"), expect("EHLO localhost")}
	smtpOffer = append(smtpEHLO[:2:2], send("250-mail.test\r\n250 STARTTLS\r\n"), expect("STARTTLS"))
	imapOffer = []step{send("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"), expect("A2 STARTTLS")}
	pop3Offer = []step{send("+OK hi\r\n"), expect("CAPA"), send("+OK\r\nSTLS\r\n.\r\n"), expect("STLS")}
)

func then(base []step, more ...step) []step {
	return append(append([]step(nil), base...), more...)
}

func TestClientAdversarial(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	tests := []struct {
		name  string
		proto Protocol
		steps []step
		want  error
	}{
		// Response injection after the go-ahead, in one write and in two.
		{"smtp/response injection", SMTP, then(smtpOffer, send("220 Ready\r\n250-x\r\n250 AUTH LOGIN\r\n"), startTLS), ErrInjection},
		{"smtp/response injection late", SMTP, then(smtpOffer, send("220 Ready\r\n"), send("250 AUTH LOGIN\r\n"), startTLS), ErrInjection},
		{"imap/response injection", IMAP, then(imapOffer, send("A2 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"), startTLS), ErrInjection},
		{"pop3/response injection", POP3, then(pop3Offer, send("+OK go\r\n+OK injected\r\n"), startTLS), ErrInjection},
		// Unsolicited bytes before TLS put the dialogue out of step.
		{"smtp/reply before EHLO", SMTP, []step{send("220 hi\r\n250 STARTTLS\r\n")}, ErrInjection},
		// STARTTLS hidden.
		{"smtp/STARTTLS hidden", SMTP, then(smtpEHLO, send("250-mail.test\r\n250 AUTH PLAIN\r\n")), ErrNoStartTLS},
		{"smtp/EHLO refused", SMTP, then(smtpEHLO, send("502 no\r\n")), ErrRefused},
		{"imap/STARTTLS hidden in code", IMAP, []step{send("* OK [CAPABILITY IMAP4rev1] hi\r\n")}, ErrNoStartTLS},
		{"imap/STARTTLS hidden", IMAP, []step{send("* OK hi\r\n"), expect("A1 CAPABILITY"), send("* CAPABILITY IMAP4rev1\r\nA1 OK\r\n")}, ErrNoStartTLS},
		{"pop3/STLS hidden", POP3, []step{send("+OK hi\r\n"), expect("CAPA"), send("+OK\r\nUSER\r\n.\r\n")}, ErrNoStartTLS},
		{"pop3/CAPA refused", POP3, []step{send("+OK hi\r\n"), expect("CAPA"), send("-ERR what\r\n")}, ErrNoStartTLS},
		// STARTTLS answered with a refusal.
		{"smtp/STARTTLS 454", SMTP, then(smtpOffer, send("454 4.7.0 TLS not available\r\n")), ErrRefused},
		{"smtp/STARTTLS 502", SMTP, then(smtpOffer, send("502 5.5.1 no\r\n")), ErrRefused},
		{"smtp/STARTTLS 554", SMTP, then(smtpOffer, send("554 5.7.0 no\r\n")), ErrRefused},
		{"smtp/STARTTLS garbage", SMTP, then(smtpOffer, send("OK go\r\n")), ErrBadResponse},
		{"imap/STARTTLS BAD", IMAP, then(imapOffer, send("A2 BAD no\r\n")), ErrRefused},
		{"imap/STARTTLS NO", IMAP, then(imapOffer, send("A2 NO no\r\n")), ErrRefused},
		{"imap/STARTTLS continue", IMAP, then(imapOffer, send("+ continue\r\n")), ErrBadResponse},
		{"imap/STARTTLS wrong tag", IMAP, then(imapOffer, send("A1 OK go\r\n")), ErrBadResponse},
		{"pop3/STLS -ERR", POP3, then(pop3Offer, send("-ERR no\r\n")), ErrRefused},
		// Untagged responses before the greeting or the STARTTLS answer.
		{"imap/untagged before greeting", IMAP, []step{send("* CAPABILITY IMAP4rev1 STARTTLS\r\n* OK hi\r\n")}, ErrBadResponse},
		{"imap/untagged OK before STARTTLS answer", IMAP, then(imapOffer, send("* OK still here\r\nA2 OK go\r\n")), ErrBadResponse},
		{"imap/untagged EXISTS before STARTTLS answer", IMAP, then(imapOffer, send("* 3 EXISTS\r\nA2 OK go\r\n")), ErrBadResponse},
		{"imap/BYE before STARTTLS answer", IMAP, then(imapOffer, send("* BYE going\r\n")), ErrRefused},
		// Texts for the user before TLS: never accepted, never replayed.
		{"imap/ALERT in greeting", IMAP, []step{send("* OK [ALERT] call 555-EVIL\r\n")}, ErrBadResponse},
		{"imap/REFERRAL in greeting", IMAP, []step{send("* OK [REFERRAL imap://evil/] go\r\n")}, ErrBadResponse},
		{"imap/ALERT before STARTTLS answer", IMAP, then(imapOffer, send("* OK [ALERT] hi\r\nA2 OK go\r\n")), ErrBadResponse},
		{"imap/REFERRAL in STARTTLS answer", IMAP, then(imapOffer, send("A2 OK [REFERRAL imap://evil/] go\r\n")), ErrBadResponse},
		// PREAUTH: never STARTTLS into an authenticated plain session.
		{"imap/PREAUTH", IMAP, []step{send("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")}, ErrPreAuth},
		// Malformed greetings.
		{"imap/tagged greeting", IMAP, []step{send("A1 OK hi\r\n")}, ErrBadResponse},
		{"imap/BYE greeting", IMAP, []step{send("* BYE busy\r\n")}, ErrRefused},
		{"imap/garbage greeting", IMAP, []step{send("hello\r\n")}, ErrBadResponse},
		{"smtp/421 greeting", SMTP, []step{send("421 4.3.2 busy\r\n")}, ErrRefused},
		{"smtp/554 greeting", SMTP, []step{send("554 5.7.1 go away\r\n")}, ErrRefused},
		{"smtp/221 greeting", SMTP, []step{send("221 bye\r\n")}, ErrRefused},
		{"smtp/tagged greeting", SMTP, []step{send("A1 OK hi\r\n")}, ErrBadResponse},
		{"smtp/mixed codes", SMTP, []step{send("220-a\r\n250 b\r\n")}, ErrBadResponse},
		{"smtp/long line", SMTP, []step{send("220 " + string(make([]byte, 9000)) + "\r\n")}, ErrLineTooLong},
		{"pop3/-ERR greeting", POP3, []step{send("-ERR busy\r\n")}, ErrRefused},
		{"pop3/garbage greeting", POP3, []step{send("* OK imap\r\n")}, ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := scripted(t, pki.server, tt.steps...)
			conn := dial(t, addr)
			c := &Client{Protocol: tt.proto, TLSConfig: pki.client, Timeout: time.Minute}
			up, err := c.Upgrade(context.Background(), conn)
			assert.Nil(t, up)
			assert.ErrorIs(t, err, tt.want)
			_, werr := conn.Write([]byte("x"))
			assert.ErrorIs(t, werr, net.ErrClosed, "got %v; want the conn closed on error", werr)
		})
	}
}

func TestClientBadCertificates(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	wrong, err := pki.ca.Issue(mailtest.CertOptions{}, "other.test")
	require.NoError(t, err)
	expired, err := pki.ca.Expired(mailtest.ECDSA, "mail.test")
	require.NoError(t, err)
	otherCA, err := mailtest.GenerateCA("self-signed")
	require.NoError(t, err)
	untrusted, err := otherCA.Issue(mailtest.CertOptions{Key: mailtest.RSA}, "mail.test")
	require.NoError(t, err)
	tests := []struct {
		name string
		leaf *mailtest.Leaf
		is   func(error) bool
	}{
		{"wrong name", wrong, func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }},
		{"expired", expired, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		{"self-signed", untrusted, func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &tls.Config{Certificates: []tls.Certificate{tt.leaf.TLS}}
			addr, _ := scripted(t, srv, then(pop3Offer, send("+OK go\r\n"), startTLS)...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := (&Client{Protocol: POP3, TLSConfig: pki.client}).Upgrade(ctx, dial(t, addr))
			require.Error(t, err)
			var cve *tls.CertificateVerificationError
			assert.ErrorAs(t, err, &cve)
			assert.True(t, tt.is(err), "got %v; want a %s verification error", err, tt.name)
			assert.NoError(t, ctx.Err(), "got %v; want a verdict before the deadline", ctx.Err())
		})
	}
}
