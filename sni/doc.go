// Package sni is the certificate store of mailedge: it selects a server
// certificate by the TLS Server Name Indication (RFC 6066 §3) so that one IP
// address serves many mail domains, matching names as RFC 6125 §6.4 says
// (exact first, then a wildcard for one left-most label, case-insensitive,
// internationalised names in A-label form per RFC 5890), and it builds the
// *tls.Config of the library's TLS policy: TLS 1.2 or newer (RFC 8996) and
// ALPN (RFC 7301) limited to the mail protocol ids, against cross-protocol
// attacks such as ALPACA.
//
// A Resolver holds the certificates and implements tls.Config's
// GetCertificate. It serves a default certificate to clients that send no
// SNI or an unknown name, as Postfix and Dovecot do, or refuses them when
// Strict. When a name has both an ECDSA and an RSA certificate, each client
// gets the one it supports, ECDSA preferred. A Store serves the same way
// from loaders (a cert/key pair, a certbot folder, a Postfix
// tls_server_sni_maps source file) and reloads them atomically, on demand or
// when files change; it has no Add or Set, since the next reload would drop
// a certificate added by hand. Use a Resolver for certificates the
// application holds in memory, a Store for certificates on disk.
//
// Typical usage:
//
//	store := &sni.Store{Sources: []sni.Source{
//		sni.Pair{CertFile: "default.crt", KeyFile: "default.key", Default: true},
//		sni.LetsEncrypt{Dir: "/etc/letsencrypt"},
//		sni.PostfixMap{Path: "/etc/postfix/sni"},
//	}}
//	if err := store.Reload(); err != nil {
//		return err
//	}
//	go store.Watch(ctx, time.Minute) // picks up renewals; returns when ctx ends
//	ln, err := tls.Listen("tcp", ":993", store.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP}))
//
// Connection ownership and concurrency: the package never touches a
// connection; crypto/tls calls GetCertificate during each handshake, and
// the caller owns listeners and conns. Lookups read an immutable snapshot
// through an atomic pointer, take no lock and do not allocate for ASCII
// names (choosing between an ECDSA and an RSA certificate for one name asks
// crypto/tls's SupportsCertificate, which allocates when it rejects one);
// a Resolver's Add and Set and a Store's Reload build a new snapshot and
// swap it in, so a handshake in flight finishes with the snapshot it
// started with. All methods are safe for concurrent use. The package
// starts no goroutine: Watch runs in the caller's goroutine and returns
// when its context ends.
package sni
