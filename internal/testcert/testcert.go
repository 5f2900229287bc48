// Package testcert is the test CA of package mailtest under its former
// names, for the callers not yet moved to mailtest: every name here is an
// alias of, or a one-line call to, mailtest's. New code uses mailtest.NewCA.
package testcert

import (
	"crypto/tls"

	"github.com/mailedge/mailedge/mailtest"
)

// KeyType selects the algorithm of a generated key (mailtest.KeyType).
type KeyType = mailtest.KeyType

const (
	// ECDSA is an ECDSA P-256 key, the default.
	ECDSA = mailtest.ECDSA
	// RSA is an RSA key of 2048 bits unless Options.RSABits says otherwise.
	RSA = mailtest.RSA
)

// CA is a self-signed certificate authority that issues leaves (mailtest.CA).
type CA = mailtest.CA

// Leaf is an issued certificate with its key (mailtest.Leaf).
type Leaf = mailtest.Leaf

// Options describe a leaf certificate (mailtest.CertOptions).
type Options = mailtest.CertOptions

// NewCA returns a fresh ECDSA P-256 certificate authority named name
// (mailtest.GenerateCA).
func NewCA(name string) (*CA, error) { return mailtest.GenerateCA(name) }

// Throwaway returns a certificate for names signed by a fresh CA that is
// then forgotten (mailtest.Throwaway).
func Throwaway(names ...string) (*tls.Certificate, error) { return mailtest.Throwaway(names...) }
