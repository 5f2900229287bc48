package sni

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// matchingResolver holds one certificate per matching rule; each has a
// distinct Common Name so a test can tell which one was served.
func matchingResolver(t *testing.T) *Resolver {
	t.Helper()
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "default.example.com")))
	require.NoError(t, r.Add(cert(t, "mail.example.com", "smtp.example.com")))
	require.NoError(t, r.Add(cert(t, "*.example.org")))
	require.NoError(t, r.Add(cert(t, "special.example.org")))
	require.NoError(t, r.AddNames(cert(t, "postfix-ancestor"), ".example.net"))
	require.NoError(t, r.Add(cert(t, "xn--bcher-kva.example")))
	require.NoError(t, r.AddNames(cert(t, "munich"), "münchen.example"))
	l, err := ca(t).Issue(mailtest.CertOptions{NoSANs: true, CommonName: "legacy.example.com"})
	require.NoError(t, err)
	require.NoError(t, r.Add(&l.TLS))
	l, err = ca(t).Issue(mailtest.CertOptions{CommonName: "cn-ignored.example.com"}, "san.example.com")
	require.NoError(t, err)
	require.NoError(t, r.Add(&l.TLS))
	return &r
}

func TestLookupRules(t *testing.T) {
	r := matchingResolver(t)
	long := strings.Repeat("a.", 150) + "example.org" // 311 bytes
	tests := []struct {
		name   string
		server string
		want   string // Common Name served by Lookup; "" for no match
	}{
		{"exact", "mail.example.com", "mail.example.com"},
		{"second SAN", "smtp.example.com", "mail.example.com"},
		{"upper case", "MAIL.Example.COM", "mail.example.com"},
		{"trailing dot", "mail.example.com.", "mail.example.com"},
		{"upper case and trailing dot", "SMTP.EXAMPLE.COM.", "mail.example.com"},
		{"wildcard one label", "imap.example.org", "*.example.org"},
		{"wildcard upper case", "IMAP.EXAMPLE.ORG", "*.example.org"},
		{"wildcard not two labels", "a.b.example.org", ""},
		{"wildcard not the base", "example.org", ""},
		{"exact beats wildcard", "special.example.org", "special.example.org"},
		{"wildcard empty label", ".example.org", ""},
		{"ancestor one level", "mx.example.net", "postfix-ancestor"},
		{"ancestor any depth", "a.b.c.example.net", "postfix-ancestor"},
		{"ancestor not the base", "example.net", ""},
		{"ancestor not past an empty label", "a..example.net", ""},
		{"IDN A-label", "xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"IDN A-label upper case", "XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"},
		{"IDN U-label", "bücher.example", "xn--bcher-kva.example"},
		{"IDN U-label upper case", "BÜCHER.example", "xn--bcher-kva.example"},
		{"IDN registered as U-label", "xn--mnchen-3ya.example", "munich"},
		{"CN when no SANs", "legacy.example.com", "legacy.example.com"},
		{"CN ignored when SANs", "cn-ignored.example.com", ""},
		{"SAN of CN-ignored cert", "san.example.com", "cn-ignored.example.com"},
		{"unknown", "nothing.example.com", ""},
		{"empty", "", ""},
		{"only a dot", ".", ""},
		{"two dots", "..", ""},
		{"IPv4 literal", "127.0.0.1", ""},
		{"IPv6 literal", "::1", ""},
		{"bracketed IPv6", "[::1]", ""},
		{"over-long", long, ""},
		{"garbage bytes", "\x00\xff\xfe.example.org", ""},
		{"invalid UTF-8 label", "\xffmail.example.com", ""},
		{"wildcard sent by client", "*.example.org", "*.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := r.Lookup(tt.server)
			assert.Equal(t, tt.want != "", ok, "Lookup(%q) found", tt.server)
			if tt.want == "" {
				assert.Nil(t, c)
				return
			}
			assert.Equal(t, tt.want, cn(c), "Lookup(%q)", tt.server)
		})
	}
}

func TestGetCertificateDefaultAndStrict(t *testing.T) {
	withDefault := func(strict bool) *Resolver {
		r := &Resolver{Strict: strict}
		require.NoError(t, r.Add(cert(t, "mail.example.com")))
		require.NoError(t, r.AddDefault(cert(t, "default.example.com")))
		return r
	}
	implicit := &Resolver{}
	require.NoError(t, implicit.Add(cert(t, "first.example.com")))
	require.NoError(t, implicit.Add(cert(t, "second.example.com")))
	tests := []struct {
		name    string
		r       *Resolver
		server  string
		want    string // served Common Name; "" means ErrNoCertificate
		wantErr bool
	}{
		{"known name", withDefault(false), "mail.example.com", "mail.example.com", false},
		{"no SNI gets default", withDefault(false), "", "default.example.com", false},
		{"unknown gets default", withDefault(false), "other.example.com", "default.example.com", false},
		{"IP literal gets default", withDefault(false), "127.0.0.1", "default.example.com", false},
		{"strict known name", withDefault(true), "mail.example.com", "mail.example.com", false},
		{"strict no SNI refused", withDefault(true), "", "", true},
		{"strict unknown refused", withDefault(true), "other.example.com", "", true},
		{"first certificate is the implicit default", implicit, "", "first.example.com", false},
		{"empty resolver refuses", &Resolver{}, "mail.example.com", "", true},
		{"empty resolver refuses no SNI", &Resolver{}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.r.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.server})
			if tt.wantErr {
				assert.ErrorIs(t, err, ErrNoCertificate)
				assert.Nil(t, c, "a refusal returns no certificate")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cn(c))
		})
	}
}

// TestGetCertificateKeyType checks the choice between an ECDSA and an RSA
// certificate for one name by what the ClientHello says the client supports.
func TestGetCertificateKeyType(t *testing.T) {
	var r Resolver
	rsaMail := rsaLeaf(t, "mail.example.com")
	rsaDefault := rsaLeaf(t, "default.example.com")
	require.NoError(t, r.Add(&rsaMail.TLS)) // RSA added first: preference must not follow order
	require.NoError(t, r.Add(cert(t, "mail.example.com")))
	require.NoError(t, r.AddDefault(&rsaDefault.TLS))
	require.NoError(t, r.AddDefault(cert(t, "default.example.com")))

	tls13 := []uint16{tls.VersionTLS13}
	tls12 := []uint16{tls.VersionTLS12}
	ecdsaSuites := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	rsaSuites := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	rsaSchemes := []tls.SignatureScheme{tls.PSSWithSHA256, tls.PKCS1WithSHA256}
	allSchemes := []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256, tls.PKCS1WithSHA256}
	tests := []struct {
		name  string
		hello tls.ClientHelloInfo
		want  string // "ECDSA P-256" or "RSA 2048"
	}{
		{"TLS 1.3 any scheme prefers ECDSA", tls.ClientHelloInfo{ServerName: "mail.example.com",
			SupportedVersions: tls13, SignatureSchemes: allSchemes, CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}}, "ECDSA P-256"},
		{"TLS 1.3 RSA schemes only", tls.ClientHelloInfo{ServerName: "mail.example.com",
			SupportedVersions: tls13, SignatureSchemes: rsaSchemes, CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}}, "RSA 2048"},
		{"TLS 1.2 ECDSA suites", tls.ClientHelloInfo{ServerName: "mail.example.com", SupportedVersions: tls12,
			SignatureSchemes: allSchemes, CipherSuites: ecdsaSuites, SupportedCurves: []tls.CurveID{tls.CurveP256}, SupportedPoints: []uint8{0}}, "ECDSA P-256"},
		{"TLS 1.2 RSA suites only", tls.ClientHelloInfo{ServerName: "mail.example.com", SupportedVersions: tls12,
			SignatureSchemes: allSchemes, CipherSuites: rsaSuites, SupportedCurves: []tls.CurveID{tls.CurveP256}, SupportedPoints: []uint8{0}}, "RSA 2048"},
		{"upper-case name, RSA only", tls.ClientHelloInfo{ServerName: "MAIL.EXAMPLE.COM",
			SupportedVersions: tls13, SignatureSchemes: rsaSchemes, CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}}, "RSA 2048"},
		{"default for unknown name, RSA only", tls.ClientHelloInfo{ServerName: "unknown.example.com",
			SupportedVersions: tls13, SignatureSchemes: rsaSchemes, CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}}, "RSA 2048"},
		{"default without SNI, any scheme", tls.ClientHelloInfo{
			SupportedVersions: tls13, SignatureSchemes: allSchemes, CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}}, "ECDSA P-256"},
		{"supports neither: preferred one", tls.ClientHelloInfo{ServerName: "mail.example.com",
			SupportedVersions: tls13, SignatureSchemes: []tls.SignatureScheme{tls.Ed25519}}, "ECDSA P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := r.GetCertificate(&tt.hello)
			require.NoError(t, err)
			assert.Equal(t, tt.want, keyType(c.Leaf))
		})
	}
}

func TestAddErrors(t *testing.T) {
	good := cert(t, "mail.example.com")
	noNames, err := ca(t).Issue(mailtest.CertOptions{NoSANs: true, CommonName: "Example Mail Ltd"})
	require.NoError(t, err)
	tests := []struct {
		name    string
		add     func(r *Resolver) error
		wantErr error  // sentinel, or nil to check text only
		text    string // part of the message
	}{
		{"nil certificate", func(r *Resolver) error { return r.Add(nil) }, nil, "empty certificate"},
		{"no DER", func(r *Resolver) error { return r.Add(&tls.Certificate{PrivateKey: good.PrivateKey}) }, nil, "empty certificate"},
		{"no key", func(r *Resolver) error { return r.Add(&tls.Certificate{Certificate: good.Certificate}) }, nil, "without private key"},
		{"garbage DER", func(r *Resolver) error {
			return r.Add(&tls.Certificate{Certificate: [][]byte{[]byte("junk")}, PrivateKey: good.PrivateKey})
		}, nil, "parse leaf"},
		{"CN is not a host name", func(r *Resolver) error { return r.Add(&noNames.TLS) }, ErrNoNames, "Example Mail Ltd"},
		{"AddNames without names", func(r *Resolver) error { return r.AddNames(good) }, ErrNoNames, "AddNames"},
		{"partial wildcard", func(r *Resolver) error { return r.AddNames(good, "mail*.example.com") }, errBadName, "mail*"},
		{"wildcard over a TLD", func(r *Resolver) error { return r.AddNames(good, "*.com") }, errBadName, "top-level"},
		{"IP address", func(r *Resolver) error { return r.AddNames(good, "192.0.2.1") }, errBadName, "IP address"},
		{"invalid IDNA", func(r *Resolver) error { return r.AddNames(good, "-bad.example.com") }, errBadName, "-bad"},
		{"empty label", func(r *Resolver) error { return r.AddNames(good, "a..example.com") }, errBadName, "a..example.com"},
		{"source named", func(r *Resolver) error {
			return r.Set([]Entry{{Certificate: good}, {Source: "/etc/ssl/broken.pem"}})
		}, nil, "/etc/ssl/broken.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Resolver
			require.NoError(t, r.Add(cert(t, "kept.example.com")))
			err := tt.add(&r)
			require.Error(t, err)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), tt.text)
			c, ok := r.Lookup("kept.example.com")
			assert.True(t, ok, "a failed change keeps the old set")
			assert.Equal(t, "kept.example.com", cn(c))
		})
	}
}

func TestAddParsesLeafOnACopy(t *testing.T) {
	orig := cert(t, "mail.example.com")
	c := &tls.Certificate{Certificate: orig.Certificate, PrivateKey: orig.PrivateKey}
	var r Resolver
	require.NoError(t, r.Add(c))
	assert.Nil(t, c.Leaf, "the caller's certificate is not modified")
	got, ok := r.Lookup("mail.example.com")
	require.True(t, ok)
	require.NotNil(t, got.Leaf)
	assert.Equal(t, "mail.example.com", got.Leaf.Subject.CommonName)
}

func TestSetReplacesWholeSet(t *testing.T) {
	var r Resolver
	require.NoError(t, r.Add(cert(t, "old.example.com")))
	require.NoError(t, r.Set([]Entry{{Certificate: cert(t, "new.example.com")}}))
	_, ok := r.Lookup("old.example.com")
	assert.False(t, ok, "old names are gone after Set")
	_, ok = r.Lookup("new.example.com")
	assert.True(t, ok)
	assert.Equal(t, 1, r.Len())

	err := r.Set([]Entry{{Certificate: cert(t, "newer.example.com")}, {Certificate: nil, Source: "bad"}})
	require.Error(t, err)
	_, ok = r.Lookup("new.example.com")
	assert.True(t, ok, "a failed Set keeps the set before it")

	require.NoError(t, r.Set(nil))
	assert.Equal(t, 0, r.Len())
	_, err = r.GetCertificate(&tls.ClientHelloInfo{ServerName: "new.example.com"})
	assert.True(t, errors.Is(err, ErrNoCertificate), "got %v; want ErrNoCertificate", err)
}
