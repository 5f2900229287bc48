package sni

import (
	"crypto/tls"
	"errors"
)

// The ALPN protocol ids of the mail protocols, the ones TLSConfig accepts by
// default. Mail servers that check ALPN against cross-protocol attacks
// (ALPACA) use these ids.
const (
	ALPNIMAP = "imap"
	ALPNPOP3 = "pop3"
	ALPNSMTP = "smtp"
)

// Policy is the TLS policy TLSConfig applies. The zero value is the
// library's policy: TLS 1.2 or newer, and ALPN limited to the mail ids.
type Policy struct {
	// Protocol is the ALPN id of the protocol served on the listener
	// (ALPNIMAP, ALPNPOP3 or ALPNSMTP). A client that offers ALPN must offer
	// it, so a connection meant for another protocol is refused (ALPACA).
	// If empty, any of the three mail ids is accepted.
	Protocol string
	// ExtraProtocols are further ALPN ids to accept, after Protocol.
	// If empty, none.
	ExtraProtocols []string
	// AnyALPN turns the ALPN check off: the config offers no protocols and
	// crypto/tls ignores whatever the client offers. If false, the check
	// is on.
	AnyALPN bool
	// MinVersion is the lowest TLS version accepted. If zero,
	// tls.VersionTLS12.
	MinVersion uint16
	// ClientAuth asks for client certificates (mutual TLS). If zero, none
	// are asked for.
	ClientAuth ClientAuth
	// ClientCAs verifies client certificates for OptionalClientCert and
	// RequireClientCert, which fail every handshake without it. Each
	// handshake uses the pool loaded last, so CAPool.Reload reaches new
	// handshakes. Then the config TLSConfig returns hands each handshake a
	// copy of itself made when it was built: change the config through the
	// Policy, not afterwards (SetSessionTicketKeys on it still works).
	ClientCAs *CAPool
}

func (p Policy) minVersion() uint16 {
	if p.MinVersion == 0 {
		return tls.VersionTLS12
	}
	return p.MinVersion
}

func (p Policy) nextProtos() []string {
	if p.AnyALPN {
		return nil
	}
	var ids []string
	if p.Protocol != "" {
		ids = append(ids, p.Protocol)
	} else {
		ids = append(ids, ALPNIMAP, ALPNPOP3, ALPNSMTP)
	}
	return append(ids, p.ExtraProtocols...)
}

// TLSConfig returns a server *tls.Config that takes its certificates from r
// and applies p:
//
//   - MinVersion is p's minimum, TLS 1.2 by default (RFC 8996 retired 1.0
//     and 1.1).
//
//   - NextProtos lists the accepted ALPN ids. crypto/tls then accepts a
//     ClientHello without ALPN, or one that offers an accepted id, and
//     refuses one that offers only other ids (such as "http/1.1" or "h2")
//     with a no_application_protocol alert (RFC 7301 §3.2).
//
//   - GetCertificate is r's, except that a name r refuses (Strict, or no
//     default) is answered with an unrecognized_name alert (RFC 6066 §3)
//     rather than internal_error. The server-side handshake error is then
//     crypto/tls's "no certificates configured".
//
//   - ClientAuth and ClientCAs ask for client certificates as nginx's
//     ssl_verify_client and ssl_client_certificate do; a client refused
//     gets crypto/tls's alert (certificate_required, bad_certificate,
//     unknown_certificate_authority), and a verified certificate is in
//     the connection state's VerifiedChains.
//
// The caller may change the returned config before use, as with any
// *tls.Config; Clone it to make variants.
func (r *Resolver) TLSConfig(p Policy) *tls.Config {
	return p.config(r.GetCertificate)
}

// config builds the *tls.Config of p around get, a GetCertificate that
// reports a refused name with ErrNoCertificate.
func (p Policy) config(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	cfg := &tls.Config{
		MinVersion: p.minVersion(),
		NextProtos: p.nextProtos(),
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := get(hello)
			if errors.Is(err, ErrNoCertificate) {
				// With Certificates empty, crypto/tls turns (nil, nil) into its
				// own "no certificates" error and the unrecognized_name alert.
				return nil, nil
			}
			return c, err
		},
	}
	if p.ClientAuth != NoClientCert {
		p.clientAuthConfig(cfg)
	}
	return cfg
}
