package sni

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// Info describes one name served by a Resolver and the certificate behind
// it, so an application can list what it serves and alert before expiry.
type Info struct {
	// Name is the served name in lower-case A-label form: "mail.example.com",
	// "*.example.com" or ".example.com".
	Name string
	// Subject is the leaf's subject Common Name.
	Subject string
	// Issuer is the issuer's Common Name, or its whole distinguished name
	// when it has no Common Name.
	Issuer string
	// NotBefore and NotAfter bound the leaf's validity.
	NotBefore, NotAfter time.Time
	// KeyType is the leaf's key: "ECDSA P-256", "RSA 2048", "Ed25519".
	KeyType string
	// Source is where the certificate was loaded from (Entry.Source).
	Source string
	// Default reports whether the certificate is also served without SNI
	// and for unknown names.
	Default bool
}

// Certificates lists every served name with its certificate, sorted by
// name, the preferred certificate of a name first. A certificate with
// several names appears once per name.
func (r *Resolver) Certificates() []Info {
	s := r.snap.Load()
	if s == nil {
		return nil
	}
	refs := slices.Clone(s.names)
	slices.SortStableFunc(refs, func(a, b nameRef) int {
		if c := cmp.Compare(a.name, b.name); c != 0 {
			return c
		}
		return cmp.Compare(a.e.rank, b.e.rank)
	})
	out := make([]Info, 0, len(refs))
	for _, n := range refs {
		out = append(out, newInfo(n.name, n.e))
	}
	return out
}

// Expiring returns the entries of Certificates whose certificate is no
// longer valid at now+within: those that expire within that window and
// those already expired. Expiring(time.Now(), 30*24*time.Hour) is a
// typical daily check.
func (r *Resolver) Expiring(now time.Time, within time.Duration) []Info {
	limit := now.Add(within)
	var out []Info
	for _, in := range r.Certificates() {
		if in.NotAfter.Before(limit) {
			out = append(out, in)
		}
	}
	return out
}

func newInfo(name string, e *entry) Info {
	leaf := e.cert.Leaf
	issuer := leaf.Issuer.CommonName
	if issuer == "" {
		issuer = leaf.Issuer.String()
	}
	return Info{
		Name:      name,
		Subject:   leaf.Subject.CommonName,
		Issuer:    issuer,
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		KeyType:   keyType(leaf),
		Source:    e.source,
		Default:   e.dflt,
	}
}

// keyType names the leaf's public key algorithm and size.
func keyType(leaf *x509.Certificate) string {
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return leaf.PublicKeyAlgorithm.String()
}

// keyRank orders key types by preference: ECDSA first (small and fast, and
// what every modern client supports), then Ed25519, then RSA.
func keyRank(leaf *x509.Certificate) int {
	switch leaf.PublicKeyAlgorithm {
	case x509.ECDSA:
		return 0
	case x509.Ed25519:
		return 1
	case x509.RSA:
		return 2
	}
	return 3
}
