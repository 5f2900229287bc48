package monitor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/starttls"
)

// SMTP probes an SMTP server (RFC 5321) with go-smtp's client: greeting
// 220, EHLO (HELO if EHLO is not understood), optionally STARTTLS (RFC 3207)
// and AUTH (RFC 4954) with PLAIN or LOGIN, then QUIT: the "SMTP AUTH test"
// that validates SMTPS bridged to Postfix on a NetScaler; with no
// credentials it is HAProxy's smtpchk.
type SMTP struct {
	// Security is starttls.Plain (port 25), TLS (465) or STARTTLS (587).
	// If zero, Plain.
	Security starttls.Security
	// TLSConfig is used for TLS and STARTTLS. If nil, TLS 1.2 or later
	// with the system roots and the host of the address as server name.
	TLSConfig *tls.Config
	// Hostname is the name given in EHLO. If empty, "localhost".
	Hostname string
	// Username and Password, when Username is not empty, authenticate with
	// Mechanism.
	Username, Password string
	// Mechanism is "PLAIN" or "LOGIN". If empty, PLAIN.
	Mechanism string
	// SASL, if not nil, returns a fresh SASL client for each probe and
	// replaces Username, Password and Mechanism.
	SASL func() sasl.Client
	// Dial, if not nil, opens the probe's TCP connection instead of a
	// plain dial: for a member that accepts only a balancer's connections,
	// it can write a PROXY header (LOCAL) first. If nil, net.Dialer.
	Dial DialFunc
}

func (p SMTP) hostname() string {
	if p.Hostname == "" {
		return "localhost"
	}
	return p.Hostname
}

// auth returns the SASL client for this probe, nil for none.
func (p SMTP) auth() (sasl.Client, error) {
	switch {
	case p.SASL != nil:
		return p.SASL(), nil
	case p.Username == "":
		return nil, nil
	case p.Mechanism == "" || strings.EqualFold(p.Mechanism, sasl.Plain):
		return sasl.NewPlainClient("", p.Username, p.Password), nil
	case strings.EqualFold(p.Mechanism, sasl.Login):
		return sasl.NewLoginClient(p.Username, p.Password), nil
	}
	return nil, fmt.Errorf("monitor: unsupported SASL mechanism %q", p.Mechanism)
}

// Probe runs the SMTP dialogue against addr.
func (p SMTP) Probe(ctx context.Context, addr string) Result {
	s := begin(ctx)
	s.dialFn = p.Dial
	return s.end(p.run(s, addr))
}

func (p SMTP) run(s *session, addr string) *Error {
	a, err := p.auth()
	if err != nil {
		return fail(ErrAuth, err, "AUTH")
	}
	c, e := p.open(s, addr)
	if e != nil {
		return e
	}
	if err := c.Hello(p.hostname()); err != nil {
		return smtpFail(s, ErrHello, "EHLO", err)
	}
	if a != nil {
		if ok, _ := c.Extension("AUTH"); !ok {
			return &Error{Kind: ErrAuth, Reason: "AUTH not offered"}
		}
		if err := c.Auth(a); err != nil {
			return smtpFail(s, ErrAuth, "AUTH", err)
		}
	}
	// The verdict is in; a server that fumbles QUIT is still serving.
	_ = c.Quit()
	return nil
}

// open connects, reads the greeting, does STARTTLS if asked, and returns a
// go-smtp client that gets the greeting replayed.
func (p SMTP) open(s *session, addr string) (*smtp.Client, *Error) {
	br, greeting, e := s.greeted(addr, p.Security, p.TLSConfig, starttls.SMTP)
	if e != nil {
		return nil, e
	}
	r := io.MultiReader(strings.NewReader(greeting), br)
	if p.Security == starttls.STARTTLS {
		if e := s.smtpStartTLS(br, p.hostname()); e != nil {
			return nil, e
		}
		if e := s.handshake(s.tlsConfig(p.TLSConfig, addr, starttls.SMTP)); e != nil {
			return nil, e
		}
		// There is no second greeting after STARTTLS; go-smtp expects one.
		r = io.MultiReader(strings.NewReader(greeting), s.conn)
	}
	return smtp.NewClient(replayConn{Conn: s.conn, r: r}), nil
}

// smtpFail describes a failed go-smtp step: a reply from the server is
// quoted ("AUTH failed: 535 5.7.8 Authentication failed").
func smtpFail(s *session, kind error, step string, err error) *Error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		verb := "failed"
		if kind == ErrHello {
			verb = "refused"
		}
		return &Error{Kind: kind, Reason: fmt.Sprintf("%s %s: %s", step, verb, smtpText(se)), Err: err}
	}
	return s.ioFail(kind, step, err)
}

// smtpText renders a reply as the server sent it: "535 5.7.8 text".
func smtpText(se *smtp.SMTPError) string {
	t := fmt.Sprintf("%d", se.Code)
	if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
		t += fmt.Sprintf(" %d.%d.%d", ec[0], ec[1], ec[2])
	}
	if se.Message != "" {
		t += " " + se.Message
	}
	return t
}
