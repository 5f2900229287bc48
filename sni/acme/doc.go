// Package acme is a certificate source for package sni whose certificates
// are obtained and renewed through ACME (RFC 8555) by
// github.com/caddyserver/certmagic, so that an application names its mail
// domains and serves them by SNI beside certificates from files.
//
// A Manager is an sni.Source: put it in an sni.Store's Sources, and its
// certificates join the Store's selection (exact and wildcard names, the
// default, Strict, ECDSA and RSA) like those of sni.Pair or
// sni.LetsEncrypt. The Manager obtains what is missing, keeps the
// certificates in certmagic's Storage (a folder by default; a shared
// Storage lets a fleet share certificates and locks) and renews each one
// RenewBefore its expiry; after each certificate it obtains, renews or
// finds renewed in Storage, it calls OnRenew, where the application calls
// the Store's Reload. A renewal that fails is reported through OnError and
// retried; the old certificate keeps serving until it is replaced.
//
// Challenges: HTTP-01 on the address the application chooses (a listener
// the Manager owns, or a handler the application mounts on its own HTTP
// server), or DNS-01 through certmagic's DNSProvider (libdns) interface.
// TLS-ALPN-01 (RFC 8737) is not used: mail clients never speak ACME, and
// the certificates are served through sni.Policy, whose tls.Config keeps
// the mail ALPN ids ("imap", "smtp", "pop3"); certmagic's own TLSConfig
// offers only "acme-tls/1" and is never handed out.
//
// Typical usage:
//
//	store := &sni.Store{}
//	mgr := &acme.Manager{
//		Domains:  []string{"mail.example.com", "mail.example.net"},
//		Email:    "postmaster@example.com",
//		HTTPAddr: ":80",
//		Dir:      "/var/lib/mailedge/acme",
//		OnRenew:  func(acme.Renewal) { _ = store.Reload() },
//	}
//	store.Sources = []sni.Source{mgr, sni.LetsEncrypt{Dir: "/etc/letsencrypt"}}
//	go mgr.Run(ctx) // obtains, then renews until ctx ends
//	ln, err := tls.Listen("tcp", ":993", store.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP}))
//
// Ownership and concurrency: Run and Check own everything they start (the
// HTTP-01 listener, certmagic's Cache and its maintenance goroutine) and
// stop it before they return; nothing is kept in package variables, and
// certmagic's package defaults (certmagic.Default) are not used. Load
// returns the last good set from memory without I/O; it and the other
// methods are safe for concurrent use. Renewal is decided by the Manager
// (RenewBefore), not by ACME Renewal Information, so that it is the same
// on every replica sharing a Storage.
package acme
