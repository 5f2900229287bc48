package monitor

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mailedge/mailedge/starttls"
)

// tlsConfig returns a copy of cfg for one handshake with addr: ServerName
// defaults to the host of addr, MinVersion to TLS 1.2 (sni's policy) when
// cfg is nil, ALPN to the protocol's id, and VerifyConnection records the
// connection state on s (after cfg's own VerifyConnection, if any, passes).
func (s *session) tlsConfig(cfg *tls.Config, addr string, p starttls.Protocol) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	if cfg.NextProtos == nil {
		cfg.NextProtos = []string{p.String()}
	}
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			if err := verify(cs); err != nil {
				return err
			}
		}
		s.tls = &cs
		s.expires = earliestExpiry(cs)
		return nil
	}
	return cfg
}

// handshake switches s.conn to TLS with cfg (already from tlsConfig).
func (s *session) handshake(cfg *tls.Config) *Error {
	tc := tls.Client(s.conn, cfg)
	if err := tc.HandshakeContext(s.ctx); err != nil {
		return s.tlsFail(err)
	}
	s.conn = tc
	return nil
}

// tlsFail describes a failed handshake: a verification failure names the
// x509 reason (wrong name, expired, unknown authority).
func (s *session) tlsFail(err error) *Error {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return fail(ErrTLS, verr.Err, "TLS verify failed")
	}
	if s.ctx.Err() != nil || isTimeout(err) {
		return s.ioFail(ErrTLS, "TLS handshake", err)
	}
	return fail(ErrTLS, err, "TLS handshake failed")
}

// earliestExpiry returns the first NotAfter in the verified chain (an
// intermediate can expire before the leaf), or the leaf's when the chain
// was not verified (InsecureSkipVerify).
func earliestExpiry(cs tls.ConnectionState) time.Time {
	var certs []*x509.Certificate
	if len(cs.VerifiedChains) > 0 {
		certs = cs.VerifiedChains[0]
	} else if len(cs.PeerCertificates) > 0 {
		certs = cs.PeerCertificates[:1]
	}
	var t time.Time
	for _, c := range certs {
		if t.IsZero() || c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// daysLeft is the whole days from now until t, rounded down.
func daysLeft(t, now time.Time) int {
	return int(t.Sub(now) / (24 * time.Hour))
}

// tlsDetail reads "TLS1.3, certificate expires in 89 days".
func tlsDetail(cs *tls.ConnectionState, expires, now time.Time) string {
	d := tls.VersionName(cs.Version)
	if !expires.IsZero() {
		d += fmt.Sprintf(", certificate expires in %d days", daysLeft(expires, now))
	}
	return d
}
