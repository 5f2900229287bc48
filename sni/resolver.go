package sni

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrNoCertificate is returned (wrapped) by GetCertificate when no
// certificate is held for the requested name and the Resolver has no
// default certificate or is Strict.
var ErrNoCertificate = errors.New("sni: no certificate for server name")

// ErrNoNames is returned (wrapped) when a certificate names no usable host:
// no DNS SAN, no host-like Common Name, and no names given by the caller.
var ErrNoNames = errors.New("sni: certificate names no host")

// Entry is one certificate with the names it is served for, as loaders
// produce it and Set consumes it.
type Entry struct {
	// Certificate is the chain and private key. Its Leaf is parsed from
	// Certificate[0] if nil (on a copy; the caller's value is not changed).
	Certificate *tls.Certificate
	// Names are the server names to serve the certificate for: host names,
	// "*.example.com" for one left-most label (RFC 6125), or ".example.com"
	// for any name below example.com (the Postfix SNI map form). If empty,
	// the leaf's DNS SANs, or its Common Name when it has no DNS SANs;
	// those that are not host names (an organisation as CN) are skipped.
	Names []string
	// Default makes the certificate one of those served when the client
	// sends no SNI or an unknown name. If no entry is marked Default, the
	// first entry is the default.
	Default bool
	// Source says where the certificate was loaded from (a file name), for
	// Certificates. If empty, nothing is reported.
	Source string
}

// Resolver is the certificate store: it picks the certificate for a TLS
// ClientHello by its SNI name. Its zero value holds no certificates and is
// ready for use.
//
// The certificates live in an immutable snapshot behind an atomic pointer:
// lookups never lock, and Add or Set build a new snapshot and swap it in, so
// a handshake in flight keeps the snapshot it started with. Resolver is safe
// for concurrent use. A Resolver must not be copied after first use.
type Resolver struct {
	// Strict refuses handshakes without SNI or for unknown names with
	// ErrNoCertificate instead of serving the default certificate. Set it
	// before the Resolver is in use. If false, the default is served.
	Strict bool

	mu   sync.Mutex // serialises writers; readers only Load snap
	snap atomic.Pointer[snapshot]
}

// Add adds cert, served for the DNS names of its leaf (the Common Name when
// there are none), to the current set. Each Add rebuilds the lookup maps;
// to load many certificates at once, use Set.
func (r *Resolver) Add(cert *tls.Certificate) error {
	return r.add(Entry{Certificate: cert})
}

// AddNames adds cert served for the given names instead of the names in
// the certificate. Names take the forms described at Entry.Names.
func (r *Resolver) AddNames(cert *tls.Certificate, names ...string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: AddNames without names", ErrNoNames)
	}
	return r.add(Entry{Certificate: cert, Names: names})
}

// AddDefault adds cert as a default certificate, served when the client
// sends no SNI or an unknown name, and also for its own names. Add an ECDSA
// and an RSA default to serve each client the kind it supports.
func (r *Resolver) AddDefault(cert *tls.Certificate) error {
	return r.add(Entry{Certificate: cert, Default: true})
}

func (r *Resolver) add(e Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var entries []Entry
	if s := r.snap.Load(); s != nil {
		entries = append(entries, s.entries...)
	}
	s, err := build(append(entries, e))
	if err != nil {
		return err
	}
	r.snap.Store(s)
	return nil
}

// Set replaces the whole set of certificates with entries in one atomic
// step. If any entry is unusable, Set returns an error naming it and the
// Resolver keeps serving the set it had.
func (r *Resolver) Set(entries []Entry) error {
	s, err := build(append([]Entry(nil), entries...))
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.snap.Store(s)
	r.mu.Unlock()
	return nil
}

// Len returns the number of certificates held.
func (r *Resolver) Len() int {
	if s := r.snap.Load(); s != nil {
		return len(s.entries)
	}
	return 0
}

// Lookup returns the certificate held for name without falling back to the
// default: an exact match first, then a "*." wildcard over the left-most
// label, then a ".domain" entry for the nearest ancestor. The match is
// case-insensitive, ignores a trailing dot, and compares international
// names in A-label form. When several certificates serve the name, Lookup
// returns the preferred one (ECDSA before RSA).
func (r *Resolver) Lookup(name string) (*tls.Certificate, bool) {
	s := r.snap.Load()
	if s == nil {
		return nil, false
	}
	set := s.match(name)
	if len(set) == 0 {
		return nil, false
	}
	return set[0].cert, true
}

// GetCertificate returns the certificate for hello's server name, for use
// as tls.Config.GetCertificate. When several certificates serve the name,
// it returns the first one the client supports (ClientHelloInfo.
// SupportsCertificate), preferring ECDSA, and the preferred one if the
// client supports none. Without SNI, or for a name it holds nothing for,
// it returns the default certificate, or an error wrapping
// ErrNoCertificate when Strict is set or there is no default. It never
// returns nil with a nil error.
func (r *Resolver) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.get(hello, r.Strict)
}

// get is GetCertificate with the strictness passed in, so that a Store can
// apply its own Strict to the Resolver it holds.
func (r *Resolver) get(hello *tls.ClientHelloInfo, strict bool) (*tls.Certificate, error) {
	s := r.snap.Load()
	if s == nil {
		return nil, fmt.Errorf("%w %q: the resolver is empty", ErrNoCertificate, hello.ServerName)
	}
	if set := s.match(hello.ServerName); len(set) > 0 {
		return choose(hello, set), nil
	}
	if strict || len(s.defaults) == 0 {
		return nil, fmt.Errorf("%w %q", ErrNoCertificate, hello.ServerName)
	}
	return choose(hello, s.defaults), nil
}

// choose returns the first certificate of set that the client supports,
// or the first of set if it supports none (the handshake then fails in
// crypto/tls with a precise error).
func choose(hello *tls.ClientHelloInfo, set []*entry) *tls.Certificate {
	if len(set) == 1 {
		return set[0].cert
	}
	// The name was matched by us (wildcards, ancestors, defaults and
	// U-labels included); ask crypto/tls only about versions, signature
	// schemes and cipher suites.
	h := *hello
	h.ServerName = ""
	for _, e := range set {
		if h.SupportsCertificate(e.cert) == nil {
			return e.cert
		}
	}
	return set[0].cert
}
