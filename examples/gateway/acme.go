package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mailedge/mailedge/sni/acme"
)

// acmeFirstCheck bounds the first obtain at start-up, before the gateway
// serves: a CA that does not answer delays the start by this much at most,
// and Run keeps trying afterwards.
const acmeFirstCheck = 3 * time.Minute

// buildACME reads the -acme-* flags: with -acme-domains, a Manager joins
// the certificate Store's sources, its certificates are obtained (or
// loaded from -acme-dir) before the Store's first reload, and each one it
// obtains or renews later reloads the Store and logs one line.
func (g *gateway) buildACME() error {
	o := g.opts
	if o.acmeDomains == "" {
		if o.acmeHTTP != "" || o.acmeEmail != "" || o.acmeCARoot != "" || o.acmeDir != "" {
			return errors.New("-acme-http, -acme-email, -acme-ca-root and -acme-dir need -acme-domains")
		}
		return nil
	}
	var domains []string
	for _, d := range strings.Split(o.acmeDomains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			domains = append(domains, d)
		}
	}
	if o.acmeHTTP == "" {
		return errors.New("-acme-domains needs -acme-http ADDR, the HTTP-01 listener the CA reaches (port 80 of the names' address in production)")
	}
	if o.acmeEmail == "" {
		return errors.New("-acme-domains needs -acme-email, the ACME account's contact address")
	}
	m := &acme.Manager{
		Domains:  domains,
		Email:    o.acmeEmail,
		CA:       o.acmeCA,
		HTTPAddr: o.acmeHTTP,
		Dir:      o.acmeDir,
		Logger:   g.log,
	}
	if o.acmeCARoot != "" {
		pem, err := os.ReadFile(o.acmeCARoot)
		if err != nil {
			return fmt.Errorf("-acme-ca-root: %w", err)
		}
		m.RootCAs = x509.NewCertPool()
		if !m.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-acme-ca-root %s: no PEM certificate in it", o.acmeCARoot)
		}
	}
	m.OnRenew = func(r acme.Renewal) {
		msg := "acme certificate ready"
		if r.Previous != nil {
			msg = "acme certificate renewed"
		}
		g.log.Info(msg, "domain", r.Domain, "serial", r.Certificate.Leaf.SerialNumber.Text(16),
			"not_after", r.Certificate.Leaf.NotAfter.Format(time.RFC3339), "from_ca", r.FromCA)
		g.certMu.Lock()
		err := g.certs.Reload()
		g.certMu.Unlock()
		if err != nil {
			g.log.Error("certificate reload after an acme certificate failed; still serving the previous set", "err", err)
		} else if g.certs.OnReload != nil {
			g.certs.OnReload()
		}
	}
	m.OnError = func(err error) {
		g.log.Error("acme certificate check failed; the previous certificate, if any, keeps serving", "err", err)
	}
	g.acme = m
	g.certs.Sources = append(g.certs.Sources, m)
	ctx, cancel := context.WithTimeout(context.Background(), acmeFirstCheck)
	defer cancel()
	if err := m.Check(ctx); errors.Is(err, acme.ErrConfig) {
		return fmt.Errorf("-acme-domains: %w", err)
	}
	// Other failures were logged by OnError; the Store's first reload
	// tells whether anything at all can be served.
	return nil
}

// startACME runs the Manager until ctx ends (shutdown cancels it).
func (g *gateway) startACME(ctx context.Context) {
	if g.acme == nil {
		return
	}
	g.goBackground(func() { _ = g.acme.Run(ctx) })
}
