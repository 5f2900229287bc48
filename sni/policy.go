package sni

import (
	"crypto/tls"
	"errors"
	"slices"
	"time"
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
// library's policy: TLS 1.2 or newer, TLS 1.2 with AEAD suites only
// (Mozilla's "intermediate" profile), and ALPN limited to the mail ids.
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
	// CipherSuites are the TLS 1.2 cipher suites accepted, as crypto/tls
	// ids; crypto/tls chooses their order. If nil, the list of
	// IntermediateCipherSuites, or crypto/tls's default list with
	// Compatibility. TLS 1.3 suites are not configurable in crypto/tls:
	// its three (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305) are always
	// on, and the field does not touch them.
	CipherSuites []uint16
	// Compatibility, with CipherSuites nil, accepts crypto/tls's default
	// TLS 1.2 list for old clients: the AEAD suites plus ECDHE with
	// AES-CBC-SHA, which scanners flag (LUCKY13). RSA key exchange and 3DES
	// stay off unless the program's GODEBUG turns them on (tlsrsakex=1,
	// tls3des=1). If false, AEAD suites only.
	Compatibility bool
	// TicketLifetime is the age past which a session is not resumed: the
	// client gets a full handshake. In TLS 1.2 the age is counted from the
	// full handshake that created the master secret, across resumptions;
	// in TLS 1.3 each resumption makes a new secret (with a new ECDHE
	// exchange) and a new ticket whose age starts then. crypto/tls caps it
	// at 7 days, and the lifetime it announces in TLS 1.3 tickets stays 7
	// days whatever this says (TLS 1.2 tickets announce none). The time is
	// the returned config's Time, or time.Now. If zero, crypto/tls's 7
	// days. If negative, session tickets are disabled.
	//
	// With a lifetime, the config's WrapSession and UnwrapSession encrypt
	// tickets with the session-ticket keys of the config TLSConfig
	// returned (its own automatic keys, or those set on it later with
	// SetSessionTicketKeys, as package sni/ticketkeys does), also for the
	// handshakes that run on the per-CA-pool config of ClientCAs. A Clone
	// of it keeps encrypting with the original's keys: set keys on the
	// original, or make a new config from the Policy.
	TicketLifetime time.Duration
}

// IntermediateCipherSuites returns the TLS 1.2 cipher suites of Mozilla's
// "intermediate" server profile that crypto/tls implements, the default of
// Policy.CipherSuites: ECDHE key exchange with ECDSA or RSA certificates,
// and AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305. No CBC mode, no RSA key
// exchange. The slice is new on each call.
func IntermediateCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// cipherSuites returns the config's list: a copy of p's, none (crypto/tls's
// default) with Compatibility, or the intermediate list.
func (p Policy) cipherSuites() []uint16 {
	switch {
	case p.CipherSuites != nil:
		return slices.Clone(p.CipherSuites)
	case p.Compatibility:
		return nil
	}
	return IntermediateCipherSuites()
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
//   - CipherSuites are p's TLS 1.2 suites, AEAD only by default: a client
//     that offers none of them is refused with a handshake_failure alert.
//
//   - With a TicketLifetime, WrapSession and UnwrapSession record when
//     each session was created in its ticket and refuse to resume older
//     ones; a negative one sets SessionTicketsDisabled.
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
		MinVersion:   p.minVersion(),
		NextProtos:   p.nextProtos(),
		CipherSuites: p.cipherSuites(),
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
	switch {
	case p.TicketLifetime > 0:
		// Before clientAuthConfig, whose per-pool configs are clones of cfg
		// and so call the same functions, which use cfg's keys.
		ticketLifetime(cfg, p.TicketLifetime)
	case p.TicketLifetime < 0:
		cfg.SessionTicketsDisabled = true
	}
	if p.ClientAuth != NoClientCert {
		p.clientAuthConfig(cfg)
	}
	return cfg
}
