package sni

import (
	"crypto/tls"
	"fmt"
	"testing"
)

// benchResolver holds 10,000 names: 5,000 exact ("host<i>.example.com")
// and 5,000 wildcards ("*.d<i>.example.net"), spread over a few
// certificates (lookups do not look at the certificate), plus an ECDSA and
// an RSA certificate for dual.example.com and a default.
func benchResolver(b *testing.B) *Resolver {
	b.Helper()
	pool := make([]*tls.Certificate, 8)
	for i := range pool {
		pool[i] = cert(b, fmt.Sprintf("pool%d.example.com", i))
	}
	entries := make([]Entry, 0, 10_003)
	for i := range 5_000 {
		entries = append(entries,
			Entry{Certificate: pool[i%len(pool)], Names: []string{fmt.Sprintf("host%d.example.com", i)}},
			Entry{Certificate: pool[(i+1)%len(pool)], Names: []string{fmt.Sprintf("*.d%d.example.net", i)}})
	}
	entries = append(entries,
		Entry{Certificate: &rsaLeaf(b, "dual.example.com").TLS},
		Entry{Certificate: cert(b, "dual.example.com")},
		Entry{Certificate: cert(b, "default.example.com"), Default: true})
	r := &Resolver{}
	if err := r.Set(entries); err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkGetCertificate(b *testing.B) {
	r := benchResolver(b)
	rsaOnly := tls.ClientHelloInfo{
		ServerName:        "dual.example.com",
		SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes:  []tls.SignatureScheme{tls.PSSWithSHA256},
		CipherSuites:      []uint16{tls.TLS_AES_128_GCM_SHA256},
	}
	cases := []struct {
		name  string
		hello tls.ClientHelloInfo
	}{
		{"exact", tls.ClientHelloInfo{ServerName: "host4321.example.com"}},
		{"exact-upper-case", tls.ClientHelloInfo{ServerName: "HOST4321.Example.COM"}},
		{"exact-trailing-dot", tls.ClientHelloInfo{ServerName: "host4321.example.com."}},
		{"wildcard", tls.ClientHelloInfo{ServerName: "imap.d4321.example.net"}},
		{"unknown-default", tls.ClientHelloInfo{ServerName: "a.b.c.unknown.example.org"}},
		{"no-sni-default", tls.ClientHelloInfo{}},
		{"dual-key-rsa-client", rsaOnly},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			hello := bc.hello
			if c, err := r.GetCertificate(&hello); err != nil || c == nil {
				b.Fatalf("GetCertificate(%q) = %v, %v", hello.ServerName, c, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = r.GetCertificate(&hello)
			}
		})
	}
}

func BenchmarkLookupIDNA(b *testing.B) {
	r := benchResolver(b)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = r.Lookup("bücher.example") // the U-label path converts, and allocates
	}
}
