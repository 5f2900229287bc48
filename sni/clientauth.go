package sni

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// ClientAuth is whether a listener asks for client certificates (mutual
// TLS), in the four modes of nginx's ssl_verify_client.
type ClientAuth uint8

const (
	// NoClientCert asks for no certificate (nginx "off").
	NoClientCert ClientAuth = iota
	// OptionalClientCert asks for a certificate; a client may send none,
	// but one it sends must verify against Policy.ClientCAs (nginx
	// "optional").
	OptionalClientCert
	// RequireClientCert refuses a client without a certificate that
	// verifies against Policy.ClientCAs, with a TLS alert (nginx "on"):
	// certificate_required in TLS 1.3, handshake_failure in TLS 1.2 when
	// none is sent, bad_certificate or unknown_certificate_authority when
	// it does not verify.
	RequireClientCert
	// OptionalClientCertNoCA asks for a certificate and accepts any, or
	// none, without verifying it (nginx "optional_no_ca"): the application
	// or the backend decides what it proves. The certificate is in the
	// connection state's PeerCertificates, never in VerifiedChains.
	OptionalClientCertNoCA
)

var clientAuthNames = [...]string{
	NoClientCert:           "off",
	OptionalClientCert:     "optional",
	RequireClientCert:      "on",
	OptionalClientCertNoCA: "optional_no_ca",
}

// String returns nginx's name of the mode: "off", "optional", "on" or
// "optional_no_ca".
func (a ClientAuth) String() string {
	if int(a) < len(clientAuthNames) {
		return clientAuthNames[a]
	}
	return fmt.Sprintf("ClientAuth(%d)", uint8(a))
}

// ParseClientAuth reads a mode by nginx's names ("off", "optional", "on",
// "optional_no_ca"), or "none" and "required" for "off" and "on".
func ParseClientAuth(s string) (ClientAuth, error) {
	switch strings.ToLower(s) {
	case "off", "none", "":
		return NoClientCert, nil
	case "optional":
		return OptionalClientCert, nil
	case "on", "required", "require":
		return RequireClientCert, nil
	case "optional_no_ca":
		return OptionalClientCertNoCA, nil
	}
	return 0, fmt.Errorf("sni: client certificates %q: want off, optional, on or optional_no_ca", s)
}

// tlsClientAuth returns crypto/tls's mode for a.
func (a ClientAuth) tlsClientAuth() tls.ClientAuthType {
	switch a {
	case OptionalClientCert:
		return tls.VerifyClientCertIfGiven
	case RequireClientCert:
		return tls.RequireAndVerifyClientCert
	case OptionalClientCertNoCA:
		return tls.RequestClientCert
	}
	return tls.NoClientCert
}

// verifies reports whether the mode verifies certificates against CAs.
func (a ClientAuth) verifies() bool { return a == OptionalClientCert || a == RequireClientCert }

// errNoClientCAs fails every handshake of a Policy that verifies client
// certificates against no CAs.
var errNoClientCAs = errors.New("sni: Policy.ClientAuth verifies client certificates but ClientCAs is nil")

// ErrNoCAs is wrapped by the error of a CA bundle without a single CA
// certificate.
var ErrNoCAs = errors.New("sni: no CA certificate")

// CAPool is a bundle of CA certificates read from a PEM file (nginx's
// ssl_client_certificate) to verify client certificates with. Reload reads
// the file again and swaps the new pool in atomically; handshakes in
// flight keep the pool they started with, and a reload that fails keeps
// the old pool. The zero value with File set is ready for Reload.
//
// A CAPool is safe for concurrent use and must not be copied after first
// use.
type CAPool struct {
	// File is the PEM file of CA certificates. Other PEM blocks (keys) are
	// ignored.
	File string

	mu    sync.Mutex // serialises reloads
	stamp *stamp     // File when last read; nil before the first Reload
	cur   atomic.Pointer[x509.CertPool]
	n     atomic.Int32 // certificates in cur
}

// LoadCAPool returns a CAPool of file, loaded.
func LoadCAPool(file string) (*CAPool, error) {
	c := &CAPool{File: file}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads File again. On an error the pool loaded before stays.
func (c *CAPool) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked()
}

// ReloadIfChanged reloads when File has changed, appeared or gone since the
// last Reload, or when it was never read. It reports whether it reloaded,
// and the reload's error, as Store.ReloadIfChanged does.
func (c *CAPool) ReloadIfChanged() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stamp != nil && c.stamp.same(statFile(c.File)) {
		return false, nil
	}
	return true, c.reloadLocked()
}

func (c *CAPool) reloadLocked() error {
	st := statFile(c.File)
	c.stamp = &st // a broken file is read again only once it changes
	items, err := readPEM(c.File)
	if err != nil {
		return fmt.Errorf("client CAs: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for _, it := range items {
		if it.block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(it.block.Bytes)
		if err != nil {
			return fmt.Errorf("sni: client CAs %s: certificate %d: %w", c.File, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return fmt.Errorf("sni: client CAs %s: %w", c.File, ErrNoCAs)
	}
	c.cur.Store(pool)
	c.n.Store(int32(n))
	return nil
}

// Pool returns the pool loaded last, or nil before the first successful
// Reload. The pool must not be modified.
func (c *CAPool) Pool() *x509.CertPool { return c.cur.Load() }

// Len returns the number of CA certificates in Pool.
func (c *CAPool) Len() int { return int(c.n.Load()) }

// clientAuthConfig sets up cfg to ask for client certificates as p says.
// With a verifying mode, every handshake takes the CA pool current at its
// start: crypto/tls reads ClientCAs from the config, which must not change
// while in use, so GetConfigForClient hands out a config per pool, built
// once from a template (a clone of cfg without session-ticket keys, so
// that crypto/tls keeps using cfg's keys, including those a ticket-key
// rotation sets on cfg later).
func (p Policy) clientAuthConfig(cfg *tls.Config) {
	cfg.ClientAuth = p.ClientAuth.tlsClientAuth()
	if !p.ClientAuth.verifies() {
		return
	}
	cas := p.ClientCAs
	if cas == nil {
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, errNoClientCAs }
		return
	}
	template := cfg.Clone()
	type generation struct {
		pool *x509.CertPool
		cfg  *tls.Config
	}
	var gen atomic.Pointer[generation]
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := cas.Pool()
		if pool == nil {
			return nil, fmt.Errorf("sni: client CAs %s not loaded", cas.File)
		}
		if g := gen.Load(); g != nil && g.pool == pool {
			return g.cfg, nil
		}
		c := template.Clone()
		c.ClientCAs = pool
		gen.Store(&generation{pool: pool, cfg: c})
		return c, nil
	}
}
