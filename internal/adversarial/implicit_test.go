package adversarial_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// handshake dials addr with cfg and returns the handshake error and, on
// success, the negotiated state.
func handshake(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer raw.Close()
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(ioWait))
	if err := c.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	// With TLS 1.3 a refused client certificate shows on the first read.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	// The test servers close a served session at once: EOF is success.
	if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// TestImplicitTLS is class C: implicit-TLS listeners (993, 465, 995) and
// the TLS policy of sni: ALPN against ALPACA (RFC 7301 §3.2), strict SNI
// (RFC 6066 §3), SNI forms, and client certificates as nginx's
// mail_imap_ssl.t tests them.
func TestImplicitTLS(t *testing.T) {
	t.Run("C1_ALPACA_foreign_ALPN_refused", testALPNRefused)
	t.Run("C2_mail_ALPN_or_none_accepted", testALPNAccepted)
	t.Run("C3_strict_SNI_refuses_unknown_names", testStrictSNI)
	t.Run("C4_SNI_forms_never_panic", testSNIForms)
	t.Run("C5_client_certificates_like_nginx_mail_imap_ssl", testClientCertificates)
}

func testALPNRefused(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	srv := &starttls.Server{Protocol: starttls.IMAP, TLSConfig: p.res.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})}
	addr, results := serveStartTLS(t, srv, true)
	for _, protos := range [][]string{{"http/1.1"}, {"h2", "http/1.1"}, {"smtp"}, {"pop3"}, {"ftp"}} {
		cfg := p.client.Clone()
		cfg.NextProtos = protos
		_, err := handshake(t, addr, cfg)
		require.Error(t, err, "%v accepted on an IMAP listener", protos)
		assert.Contains(t, err.Error(), "no application protocol", "%v", protos)
		assert.Error(t, result(t, results).err)
	}
}

func testALPNAccepted(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	for _, tc := range []struct {
		policy sni.Policy
		protos []string
		want   string
	}{
		{sni.Policy{Protocol: sni.ALPNIMAP}, []string{"imap"}, "imap"},
		{sni.Policy{Protocol: sni.ALPNIMAP}, []string{"h2", "imap"}, "imap"},
		{sni.Policy{Protocol: sni.ALPNIMAP}, nil, ""},
		{sni.Policy{}, []string{"imap"}, "imap"},
		{sni.Policy{}, []string{"pop3"}, "pop3"},
		{sni.Policy{}, []string{"smtp"}, "smtp"},
		{sni.Policy{}, nil, ""},
	} {
		srv := &starttls.Server{Protocol: starttls.IMAP, TLSConfig: p.res.TLSConfig(tc.policy)}
		addr, results := serveStartTLS(t, srv, true)
		cfg := p.client.Clone()
		cfg.NextProtos = tc.protos
		st, err := handshake(t, addr, cfg)
		require.NoError(t, err, "%+v %v", tc.policy, tc.protos)
		assert.Equal(t, tc.want, st.NegotiatedProtocol)
		r := result(t, results)
		require.NoError(t, r.err)
		assert.True(t, r.sess.Implicit)
	}
}

func testStrictSNI(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	res := &sni.Resolver{Strict: true}
	require.NoError(t, res.Add(&p.leaf.TLS))
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.SMTP, TLSConfig: res.TLSConfig(sni.Policy{})}, true)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"mail.example.com", true},
		{"x.example.org", true},
		{"unknown.example.net", false},
		{"example.org", false},
		{"", false}, // no SNI at all
	} {
		cfg := &tls.Config{RootCAs: p.ca.Pool(), ServerName: tc.name, InsecureSkipVerify: tc.name == ""}
		_, err := handshake(t, addr, cfg)
		r := result(t, results)
		if tc.ok {
			assert.NoError(t, err, tc.name)
			assert.NoError(t, r.err, tc.name)
			continue
		}
		if assert.Error(t, err, "%q accepted by a strict resolver", tc.name) {
			assert.Contains(t, err.Error(), "unrecognized name", tc.name)
		}
		assert.Error(t, r.err)
	}
}

// testSNIForms sends odd names through real handshakes and, for bytes no
// client library would send, straight into GetCertificate.
func testSNIForms(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.SMTP, TLSConfig: p.server}, true)
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 60) + ".example.org"
	for _, tc := range []struct {
		name, verifyAs string
	}{
		{"mail.example.com", "mail.example.com"},
		{"MAIL.Example.COM", "mail.example.com"},
		{"mail.example.com.", "mail.example.com"},
		{"x.example.org", "x.example.org"},
		{"X.EXAMPLE.ORG", "x.example.org"},
		{"127.0.0.1", "mail.example.com"}, // an IP literal is not sent as SNI: the default answers
		{"[::1]", "mail.example.com"},
		{long, "mail.example.com"},
		{strings.Repeat("x", 300), "mail.example.com"},
	} {
		cfg := &tls.Config{ServerName: tc.name, InsecureSkipVerify: true}
		st, err := handshake(t, addr, cfg)
		r := result(t, results)
		if err != nil { // crypto/tls may refuse to send or accept a name; it must not panic
			t.Logf("%q: %v / %v", tc.name, err, r.err)
			continue
		}
		require.NoError(t, r.err)
		require.NotEmpty(t, st.PeerCertificates)
		assert.NoError(t, st.PeerCertificates[0].VerifyHostname(tc.verifyAs), tc.name)
	}
	strict := &sni.Resolver{Strict: true}
	require.NoError(t, strict.Add(&p.leaf.TLS))
	for _, name := range []string{"", ".", "..", "*", "*.example.org", ".example.org", "a..example.org",
		"mail.example.com\x00.evil", "\xff\xfe", "xn--", "xn--zz-.example.org", "ü.example.org",
		strings.Repeat("a.", 5000), strings.Repeat("\x00", 64), "mail.example.com:993", "[::1]", "%00"} {
		hello := &tls.ClientHelloInfo{ServerName: name, SupportedVersions: []uint16{tls.VersionTLS13}}
		cert, err := p.res.GetCertificate(hello)
		assert.NoError(t, err, "%q", name)
		assert.NotNil(t, cert, "%q", name)
		_, err = strict.GetCertificate(hello)
		if err != nil {
			assert.True(t, errors.Is(err, sni.ErrNoCertificate), "%q: %v", name, err)
		}
		assert.NotPanics(t, func() { p.res.Lookup(name) })
	}
}

// testClientCertificates follows nginx's mail_imap_ssl.t: with
// "ssl_verify_client optional" a client without a certificate is served
// and one with a certificate from an unknown CA is refused; with "on" a
// client without one is refused too.
func testClientCertificates(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	clientCA, err := mailtest.GenerateCA("client CA")
	require.NoError(t, err)
	good, err := clientCA.Issue(mailtest.CertOptions{CommonName: "alice"}, "alice.example.com")
	require.NoError(t, err)
	rogueCA, err := mailtest.GenerateCA("rogue CA")
	require.NoError(t, err)
	rogue, err := rogueCA.Issue(mailtest.CertOptions{CommonName: "mallory"}, "mallory.example.com")
	require.NoError(t, err)
	for _, tc := range []struct {
		auth tls.ClientAuthType
		cert *tls.Certificate
		ok   bool
	}{
		{tls.VerifyClientCertIfGiven, nil, true},
		{tls.VerifyClientCertIfGiven, &good.TLS, true},
		{tls.VerifyClientCertIfGiven, &rogue.TLS, false},
		{tls.RequireAndVerifyClientCert, nil, false},
		{tls.RequireAndVerifyClientCert, &good.TLS, true},
		{tls.RequireAndVerifyClientCert, &rogue.TLS, false},
	} {
		cfg := p.res.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})
		cfg.ClientAuth, cfg.ClientCAs = tc.auth, clientCA.Pool()
		addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.IMAP, TLSConfig: cfg}, true)
		ccfg := p.client.Clone()
		if cert := tc.cert; cert != nil {
			// Send it even when the server's CA list does not name its
			// issuer, as a hostile client would (crypto/tls's own choice
			// would send nothing).
			ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		_, err := handshake(t, addr, ccfg)
		r := result(t, results)
		name := tc.auth.String()
		if !tc.ok {
			assert.Error(t, err, name)
			assert.Error(t, r.err, name)
			continue
		}
		require.NoError(t, err, name)
		require.NoError(t, r.err, name)
		if tc.cert == nil {
			assert.Empty(t, r.sess.State.PeerCertificates, name)
		} else if assert.NotEmpty(t, r.sess.State.PeerCertificates, name) {
			assert.Equal(t, "alice", r.sess.State.PeerCertificates[0].Subject.CommonName)
		}
	}
}
