package sni

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/net/idna"
)

// entry is a prepared certificate: its Leaf parsed, its facts computed once.
type entry struct {
	cert   *tls.Certificate
	rank   int // key preference: lower is served first
	source string
	dflt   bool
}

// snapshot is one immutable certificate set. Readers share it without
// locks; writers build a new one.
type snapshot struct {
	entries  []Entry             // as given, so Add can extend the set
	exact    map[string][]*entry // "mail.example.com"
	wildcard map[string][]*entry // "example.com" for "*.example.com"
	ancestor map[string][]*entry // "example.com" for ".example.com"
	defaults []*entry
	names    []nameRef // every (name, entry) pair, for Certificates
}

// nameRef records a registered name, for listing.
type nameRef struct {
	name string // as displayed: "mail.example.com", "*.example.com", ".example.com"
	e    *entry
}

// build prepares entries into a snapshot; it fails on the first unusable
// entry, naming its source.
func build(entries []Entry) (*snapshot, error) {
	s := &snapshot{
		entries:  entries,
		exact:    make(map[string][]*entry, len(entries)),
		wildcard: make(map[string][]*entry),
		ancestor: make(map[string][]*entry),
	}
	for i, in := range entries {
		e, names, err := prepare(in)
		if err != nil {
			if in.Source != "" {
				return nil, fmt.Errorf("sni: %s: %w", in.Source, err)
			}
			return nil, fmt.Errorf("sni: certificate %d: %w", i, err)
		}
		for _, n := range names {
			s.register(n, e)
		}
		if e.dflt {
			s.defaults = append(s.defaults, e)
		}
	}
	if len(s.defaults) == 0 && len(entries) > 0 {
		first := s.names[0].e
		first.dflt = true
		s.defaults = []*entry{first}
	}
	for _, m := range []map[string][]*entry{s.exact, s.wildcard, s.ancestor} {
		for _, set := range m {
			sortSet(set)
		}
	}
	sortSet(s.defaults)
	return s, nil
}

// prepare checks one Entry and works out the names it serves.
func prepare(in Entry) (*entry, []string, error) {
	if in.Certificate == nil || len(in.Certificate.Certificate) == 0 {
		return nil, nil, errors.New("empty certificate")
	}
	if in.Certificate.PrivateKey == nil {
		return nil, nil, errors.New("certificate without private key")
	}
	c := *in.Certificate // a copy: Leaf is filled in without touching the caller's value
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, nil, fmt.Errorf("parse leaf: %w", err)
		}
		c.Leaf = leaf
	}
	names := in.Names
	if len(names) == 0 {
		names = leafNames(c.Leaf)
	}
	var keep []string
	for _, n := range names {
		if _, _, err := canonical(n); err == nil {
			keep = append(keep, n)
		} else if len(in.Names) > 0 {
			return nil, nil, err // names the caller chose must all be valid
		}
	}
	if len(keep) == 0 {
		return nil, nil, fmt.Errorf("%w (subject %q)", ErrNoNames, c.Leaf.Subject.CommonName)
	}
	e := &entry{cert: &c, rank: keyRank(c.Leaf), source: in.Source, dflt: in.Default}
	return e, keep, nil
}

// leafNames returns the DNS SANs, or the Common Name when there are none
// (the legacy rule RFC 6125 §6.4.4 keeps for certificates without SANs).
func leafNames(leaf *x509.Certificate) []string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames
	}
	if leaf.Subject.CommonName != "" {
		return []string{leaf.Subject.CommonName}
	}
	return nil
}

// register files e under name, which canonical has accepted.
func (s *snapshot) register(name string, e *entry) {
	key, p, _ := canonical(name)
	m, display := s.exact, key
	switch p {
	case wildcardName:
		m, display = s.wildcard, "*."+key
	case ancestorName:
		m, display = s.ancestor, "."+key
	}
	if slices.Contains(m[key], e) {
		return
	}
	m[key] = append(m[key], e)
	s.names = append(s.names, nameRef{name: display, e: e})
}

// sortSet orders the certificates of one name: ECDSA, then Ed25519, then
// RSA; among equals the one valid longest first. The sort is stable so
// insertion order breaks remaining ties.
func sortSet(set []*entry) {
	slices.SortStableFunc(set, func(a, b *entry) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return b.cert.Leaf.NotAfter.Compare(a.cert.Leaf.NotAfter)
	})
}

// match finds the certificates registered for a server name: exact, then
// wildcard, then the nearest ancestor. It allocates nothing for ASCII names.
func (s *snapshot) match(name string) []*entry {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if name == "" || len(name) > maxName || isIPLiteral(name) {
		return nil
	}
	if !isASCII(name) {
		// A client that sent a U-label (RFC 6066 asks for A-labels): convert
		// it. This path allocates, but no well-behaved client takes it.
		a, err := idna.Lookup.ToASCII(name)
		if err != nil || len(a) > maxName || !isASCII(a) {
			return nil
		}
		name = a
	}
	var buf [maxName]byte
	b := lowerInto(buf[:], name)
	// Indexing a map with string(b) does not allocate.
	if set := s.exact[string(b)]; len(set) > 0 {
		return set
	}
	first := true
	for i := 0; i < len(b); i++ {
		if b[i] != '.' {
			continue
		}
		if i == 0 || i == len(b)-1 || b[i-1] == '.' {
			return nil // an empty label: no name of ours matches
		}
		if first {
			first = false
			if set := s.wildcard[string(b[i+1:])]; len(set) > 0 {
				return set
			}
		}
		if len(s.ancestor) > 0 {
			if set := s.ancestor[string(b[i+1:])]; len(set) > 0 {
				return set
			}
		}
	}
	return nil
}
