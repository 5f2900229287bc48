package sni

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrBadPEM is returned (wrapped, with the file name) when a file holds no
// usable PEM data: no block at all, a garbled block, an encrypted or
// unparsable key, a certificate that does not parse, or blocks in an order
// that pairs no key with a certificate.
var ErrBadPEM = errors.New("sni: malformed PEM")

// ErrKeyMismatch is returned (wrapped, with both file names) when a private
// key does not belong to the certificate it is paired with.
var ErrKeyMismatch = errors.New("sni: private key does not match certificate")

// LoadPair reads a certificate chain (leaf first, then intermediates) from
// certFile and its private key from keyFile, both PEM, as
// tls.LoadX509KeyPair does, with errors that name the file at fault. The
// returned certificate has its Leaf set.
func LoadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certItems, err := readPEM(certFile)
	if err != nil {
		return nil, err
	}
	keyItems, err := readPEM(keyFile)
	if err != nil {
		return nil, err
	}
	var c chain
	for _, it := range keyItems {
		if isKeyBlock(it.block.Type) {
			c.keyBlock, c.keyFile = it.block, it.file
			break
		}
	}
	if c.keyBlock == nil {
		return nil, fmt.Errorf("%w: %s: no PRIVATE KEY block", ErrBadPEM, keyFile)
	}
	for _, it := range certItems {
		if it.block.Type == "CERTIFICATE" {
			c.certs = append(c.certs, it.block.Bytes)
			c.certFile = it.file
		}
	}
	if len(c.certs) == 0 {
		return nil, fmt.Errorf("%w: %s: no CERTIFICATE block", ErrBadPEM, certFile)
	}
	return c.certificate()
}

// pemItem is a PEM block and the file it came from.
type pemItem struct {
	block *pem.Block
	file  string
}

// readPEM returns every PEM block in file. A file that cannot be read,
// holds no block, or holds a block that does not decode is an error naming
// the file.
func readPEM(file string) ([]pemItem, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sni: %w", err) // *PathError names the file
	}
	var items []pemItem
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		items = append(items, pemItem{block: b, file: file})
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: %s: garbled PEM block after %d good ones", ErrBadPEM, file, len(items))
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: %s: no PEM block", ErrBadPEM, file)
	}
	return items, nil
}

func isKeyBlock(typ string) bool {
	return typ == "PRIVATE KEY" || typ == "RSA PRIVATE KEY" || typ == "EC PRIVATE KEY" ||
		typ == "ENCRYPTED PRIVATE KEY"
}

// chain is a private key with the certificates that follow it.
type chain struct {
	keyBlock *pem.Block
	keyFile  string
	certs    [][]byte
	certFile string // the file holding the leaf
}

// chainsOf splits blocks into chains the Postfix way: each private key
// starts a chain and the certificates after it, leaf first, belong to it
// (postconf(5), smtpd_tls_chain_files). Other block types are skipped.
func chainsOf(items []pemItem) ([]chain, error) {
	var out []chain
	for _, it := range items {
		switch {
		case isKeyBlock(it.block.Type):
			out = append(out, chain{keyBlock: it.block, keyFile: it.file})
		case it.block.Type == "CERTIFICATE":
			if len(out) == 0 {
				return nil, fmt.Errorf("%w: %s: certificate before its private key (the key must come first)", ErrBadPEM, it.file)
			}
			c := &out[len(out)-1]
			if len(c.certs) == 0 {
				c.certFile = it.file
			}
			c.certs = append(c.certs, it.block.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no private key", ErrBadPEM)
	}
	for _, c := range out {
		if len(c.certs) == 0 {
			return nil, fmt.Errorf("%w: %s: private key without a certificate after it", ErrBadPEM, c.keyFile)
		}
	}
	return out, nil
}

// certificate parses the chain into a tls.Certificate, checking that the
// key belongs to the leaf.
func (c chain) certificate() (*tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(c.certs[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPEM, c.certFile, err)
	}
	key, err := parseKey(c.keyBlock)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPEM, c.keyFile, err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: key %s, certificate %s", ErrKeyMismatch, c.keyFile, c.certFile)
	}
	return &tls.Certificate{Certificate: c.certs, PrivateKey: key, Leaf: leaf}, nil
}

// parseKey decodes a PKCS #8, PKCS #1 or SEC 1 private key that can sign.
func parseKey(b *pem.Block) (crypto.Signer, error) {
	if b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "" {
		return nil, errors.New("encrypted private keys are not supported")
	}
	var k any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %v", b.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", k)
	}
	return s, nil
}
