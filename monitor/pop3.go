package monitor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/internal/pop3client"
	"github.com/mailedge/mailedge/starttls"
)

// POP3 probes a POP3 server (RFC 1939): greeting "+OK", CAPA (RFC 2449),
// optionally STLS (RFC 2595), and with credentials USER/PASS and STAT, then
// QUIT. No maintained Go POP3 client exists, so it uses mailedge's small
// internal one.
type POP3 struct {
	// Security is starttls.Plain (port 110), TLS (995) or STARTTLS (STLS
	// on 110). If zero, Plain.
	Security starttls.Security
	// TLSConfig is used for TLS and STARTTLS. If nil, TLS 1.2 or later
	// with the system roots and the host of the address as server name.
	TLSConfig *tls.Config
	// Username and Password, when Username is not empty, log in with
	// USER/PASS and check the maildrop with STAT.
	Username, Password string
	// Dial, if not nil, opens the probe's TCP connection instead of a
	// plain dial: for a member that accepts only a balancer's connections,
	// it can write a PROXY header (LOCAL) first. If nil, net.Dialer.
	Dial DialFunc
}

// Probe runs the POP3 dialogue against addr.
func (p POP3) Probe(ctx context.Context, addr string) Result {
	s := begin(ctx)
	s.dialFn = p.Dial
	return s.end(p.run(s, addr))
}

func (p POP3) run(s *session, addr string) *Error {
	c, e := s.openPOP3(addr, p.Security, p.TLSConfig)
	if e != nil {
		return e
	}
	if p.Username != "" {
		if err := c.User(s.ctx, p.Username); err != nil {
			return pop3Fail(s, ErrAuth, "USER", err)
		}
		if err := c.Pass(s.ctx, p.Password); err != nil {
			return pop3Fail(s, ErrAuth, "login", err)
		}
		if _, _, err := c.Stat(s.ctx); err != nil {
			return pop3Fail(s, ErrMailbox, "STAT", err)
		}
	}
	// The verdict is in; a server that fumbles QUIT is still serving.
	_ = c.Quit(s.ctx)
	return nil
}

// openPOP3 connects, reads the greeting, asks CAPA and does STLS if asked.
// The Certificate probe shares it.
func (s *session) openPOP3(addr string, sec starttls.Security, cfg *tls.Config) (*pop3client.Client, *Error) {
	if e := s.dial(addr); e != nil {
		return nil, e
	}
	if sec == starttls.TLS {
		if e := s.handshake(s.tlsConfig(cfg, addr, starttls.POP3)); e != nil {
			return nil, e
		}
	}
	c := pop3client.NewClient(s.conn)
	if _, err := c.Greeting(s.ctx); err != nil {
		return nil, pop3GreetFail(s, err)
	}
	caps, err := c.Capa(s.ctx)
	var perr *pop3client.Error
	switch {
	case errors.As(err, &perr):
		caps = nil // CAPA is optional (RFC 2449); an old server may refuse it
	case err != nil:
		return nil, pop3Fail(s, ErrProtocol, "CAPA", err)
	}
	if sec != starttls.STARTTLS {
		return c, nil
	}
	if !mailwire.HasKeyword(caps, "STLS") {
		return nil, &Error{Kind: ErrStartTLS, Reason: "STARTTLS not offered (no STLS in CAPA)"}
	}
	if err := c.StartTLS(s.ctx, s.tlsConfig(cfg, addr, starttls.POP3)); err != nil {
		return nil, pop3Fail(s, ErrStartTLS, "STLS", err)
	}
	return c, nil
}

func pop3GreetFail(s *session, err error) *Error {
	var perr *pop3client.Error
	switch {
	case errors.As(err, &perr):
		return &Error{Kind: ErrGreeting, Reason: "wrong greeting: -ERR " + perr.Text, Err: err}
	case errors.Is(err, pop3client.ErrMalformed), errors.Is(err, pop3client.ErrLineTooLong):
		return fail(ErrGreeting, err, "wrong greeting: not POP3")
	}
	return s.greetFail(err)
}

// pop3Fail describes a failed step: a -ERR is quoted ("login failed: -ERR
// [AUTH] invalid password"), a TLS failure named as such.
func pop3Fail(s *session, kind error, step string, err error) *Error {
	var perr *pop3client.Error
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &perr):
		return &Error{Kind: kind, Reason: fmt.Sprintf("%s failed: -ERR %s", step, perr.Text), Err: err}
	case errors.As(err, &verr):
		return s.tlsFail(err)
	case errors.Is(err, pop3client.ErrInjection):
		return fail(kind, err, step)
	case errors.Is(err, pop3client.ErrMalformed), errors.Is(err, pop3client.ErrLineTooLong):
		return fail(kind, err, step+" failed")
	}
	return s.ioFail(kind, step, err)
}
