package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// check is one self-test connection and the certificate it must get.
type check struct {
	sni    string      // "" sends no SNI
	client *tls.Config // nil: Go's defaults
	note   string
	verify string // the name the served chain must be valid for
	wantCN string
	wantKT string
	// wantErr, if set, is part of the error the handshake must fail with.
	wantErr string
}

// runSelftest connects to addr once per check and prints what each got.
func runSelftest(ctx context.Context, addr string, d *demo) error {
	rsaOnly := &tls.Config{MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	checks := []check{
		{sni: "mail.example.com", verify: "mail.example.com", wantCN: "mail.example.com", wantKT: "ECDSA"},
		{sni: "mail.example.net", verify: "mail.example.net", wantCN: "mail.example.net", wantKT: "ECDSA"},
		{sni: "imap.example.org", verify: "imap.example.org", wantCN: "*.example.org", wantKT: "ECDSA"},
		{sni: "mail.example.com", client: rsaOnly, note: "TLS 1.2 RSA-only client", verify: "mail.example.com",
			wantCN: "mail.example.com", wantKT: "RSA"},
		{sni: "", note: "no SNI: the default", verify: "mail.example.com", wantCN: "mail.example.com", wantKT: "ECDSA"},
		{sni: "unknown.example.com", note: "unknown: the default", verify: "mail.example.com", wantCN: "mail.example.com", wantKT: "ECDSA"},
		{sni: "mail.example.net", client: &tls.Config{NextProtos: []string{"imap"}}, note: "ALPN imap", verify: "mail.example.net",
			wantCN: "mail.example.net", wantKT: "ECDSA"},
		{sni: "mail.example.net", client: &tls.Config{NextProtos: []string{"http/1.1"}}, note: "ALPN http/1.1: refused",
			wantErr: "no application protocol"},
	}
	failed := 0
	for _, c := range checks {
		cn, kt, greeting, err := probe(ctx, addr, c, d.ca.Cert)
		label := fmt.Sprintf("%q", c.sni)
		if c.note != "" {
			label += " (" + c.note + ")"
		}
		switch {
		case c.wantErr != "" && err != nil && strings.Contains(err.Error(), c.wantErr):
			fmt.Printf("ok   SNI %-45s -> refused: %v\n", label, err)
		case c.wantErr != "":
			failed++
			fmt.Printf("FAIL SNI %-45s -> %s %s, %v; want refusal %q\n", label, cn, kt, err, c.wantErr)
		case err != nil:
			failed++
			fmt.Printf("FAIL SNI %-45s -> %v\n", label, err)
		case cn != c.wantCN || !strings.HasPrefix(kt, c.wantKT):
			failed++
			fmt.Printf("FAIL SNI %-45s -> %s %s; want %s %s\n", label, cn, kt, c.wantCN, c.wantKT)
		default:
			fmt.Printf("ok   SNI %-45s -> %s (%s)  %s\n", label, cn, kt, greeting)
		}
	}
	if failed > 0 {
		return fmt.Errorf("selftest: %d of %d checks failed", failed, len(checks))
	}
	fmt.Printf("selftest: all %d checks passed\n", len(checks))
	return nil
}

// probe dials addr, verifies the chain against the demo CA for c.verify
// and returns the leaf's name, key type and the
// server's greeting.
func probe(ctx context.Context, addr string, c check, ca *x509.Certificate) (cn, kt, greeting string, err error) {
	cfg := &tls.Config{}
	if c.client != nil {
		cfg = c.client.Clone()
	}
	cfg.ServerName = c.sni
	cfg.InsecureSkipVerify = true // verified below, also when no name is sent
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", "", "", err
	}
	defer conn.Close()
	tc := conn.(*tls.Conn)
	leaf := tc.ConnectionState().PeerCertificates[0]
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: c.verify}); err != nil {
		return "", "", "", err
	}
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return "", "", "", err
	}
	fmt.Fprint(tc, "a LOGOUT\r\n")
	return leaf.Subject.CommonName, keyType(leaf), strings.TrimSpace(line), nil
}

func keyType(c *x509.Certificate) string {
	return c.PublicKeyAlgorithm.String()
}
