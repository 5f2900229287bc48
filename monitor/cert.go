package monitor

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/mailedge/mailedge/starttls"
)

// DefaultWarnWithin is the expiry threshold of a [Certificate] probe whose
// WarnWithin is zero.
const DefaultWarnWithin = 14 * 24 * time.Hour

// Certificate probes a server's TLS certificate, the certificate check that
// validates a move of TLS to a NetScaler or any other balancer: it handshakes
// with a server name (implicitly, or after the protocol's STARTTLS), verifies
// the chain and that the leaf matches the name, and fails when the earliest
// expiry in the chain is nearer than WarnWithin. A success reports the days
// left in Result.Detail and the date in Result.Expires.
type Certificate struct {
	// ServerName is sent as SNI and must match the leaf. If empty, the host
	// of the probed address.
	ServerName string
	// Roots are the trusted roots. If nil, the system roots.
	Roots *x509.CertPool
	// InsecureSkipVerify skips the verification of the chain and the name,
	// for a member whose certificate cannot be verified (self-signed, a
	// private CA not at hand): the probe then checks that the handshake
	// succeeds and the leaf's expiry.
	InsecureSkipVerify bool
	// WarnWithin is how close expiry may come before the probe fails. If
	// zero, DefaultWarnWithin (14 days). If negative, expiry is only
	// checked by verification (an expired certificate still fails).
	WarnWithin time.Duration
	// StartTLS selects the protocol's upgrade dialogue before the
	// handshake. If false, the handshake starts at the first byte
	// (ports 465, 993, 995).
	StartTLS bool
	// Protocol is the protocol spoken for StartTLS and named in ALPN. If
	// zero, SMTP.
	Protocol starttls.Protocol
	// Hostname is the EHLO name for SMTP STARTTLS. If empty, "localhost".
	Hostname string
	// Dial, if not nil, opens the probe's TCP connection instead of a
	// plain dial: for a member that accepts only a balancer's connections,
	// it can write a PROXY header (LOCAL) first. If nil, net.Dialer.
	Dial DialFunc
}

func (p Certificate) warnWithin() time.Duration {
	if p.WarnWithin == 0 {
		return DefaultWarnWithin
	}
	return p.WarnWithin
}

// Probe checks the certificate served at addr.
func (p Certificate) Probe(ctx context.Context, addr string) Result {
	s := begin(ctx)
	s.dialFn = p.Dial
	return s.end(p.run(s, addr))
}

func (p Certificate) run(s *session, addr string) *Error {
	cfg := s.tlsConfig(&tls.Config{ServerName: p.ServerName, RootCAs: p.Roots, InsecureSkipVerify: p.InsecureSkipVerify,
		MinVersion: tls.VersionTLS12}, addr, p.Protocol)
	if p.StartTLS && p.Protocol == starttls.POP3 {
		if _, e := s.openPOP3(addr, starttls.STARTTLS, cfg); e != nil {
			return e
		}
	} else {
		if e := s.dial(addr); e != nil {
			return e
		}
		if p.StartTLS {
			if e := p.upgrade(s); e != nil {
				return e
			}
		}
		if e := s.handshake(cfg); e != nil {
			return e
		}
	}
	return p.checkExpiry(s, cfg.ServerName)
}

// upgrade runs the SMTP or IMAP dialogue up to the handshake.
func (p Certificate) upgrade(s *session) *Error {
	br := bufio.NewReaderSize(s.conn, maxLine)
	if _, e := s.greet(br, p.Protocol); e != nil {
		return e
	}
	if p.Protocol == starttls.IMAP {
		return s.imapStartTLS(br)
	}
	host := p.Hostname
	if host == "" {
		host = "localhost"
	}
	return s.smtpStartTLS(br, host)
}

func (p Certificate) checkExpiry(s *session, name string) *Error {
	warn := p.warnWithin()
	if warn < 0 || s.expires.IsZero() {
		return nil
	}
	now := time.Now()
	if left := s.expires.Sub(now); left < warn {
		return &Error{Kind: ErrCertExpiring, Reason: fmt.Sprintf(
			"certificate for %s expires in %d days (%s), under the %d-day threshold",
			name, daysLeft(s.expires, now), s.expires.UTC().Format(time.DateOnly), int(warn/(24*time.Hour)))}
	}
	return nil
}
