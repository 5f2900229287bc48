package sni

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

// newCA returns a CA of its own (ca returns the package's shared one).
func newCA(t *testing.T, name string) *mailtest.CA {
	t.Helper()
	c, err := mailtest.GenerateCA("client CA " + name)
	require.NoError(t, err)
	return c
}

func TestParseClientAuth(t *testing.T) {
	for in, want := range map[string]ClientAuth{
		"off": NoClientCert, "": NoClientCert, "none": NoClientCert,
		"optional": OptionalClientCert, "ON": RequireClientCert, "required": RequireClientCert,
		"optional_no_ca": OptionalClientCertNoCA,
	} {
		got, err := ParseClientAuth(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err := ParseClientAuth("maybe")
	assert.ErrorContains(t, err, `"maybe": want off, optional, on or optional_no_ca`)
	for a, s := range map[ClientAuth]string{NoClientCert: "off", OptionalClientCert: "optional",
		RequireClientCert: "on", OptionalClientCertNoCA: "optional_no_ca", 9: "ClientAuth(9)"} {
		assert.Equal(t, s, a.String())
		if a < 9 {
			back, err := ParseClientAuth(s)
			require.NoError(t, err)
			assert.Equal(t, a, back)
		}
	}
}

func TestCAPool(t *testing.T) {
	dir := t.TempDir()
	a, b := newCA(t, "a"), newCA(t, "b")
	path := filepath.Join(dir, "cas.pem")

	_, err := LoadCAPool(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
	writeFile(t, dir, "cas.pem", leaf(t, mailtest.ECDSA, "x.example").KeyPEM)
	_, err = LoadCAPool(path)
	assert.ErrorIs(t, err, ErrNoCAs, "a key and no certificate")
	writeFile(t, dir, "cas.pem", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	_, err = LoadCAPool(path)
	assert.ErrorIs(t, err, ErrBadPEM)

	writeFile(t, dir, "cas.pem", append(append([]byte{}, a.CertPEM...), b.CertPEM...))
	p, err := LoadCAPool(path)
	require.NoError(t, err)
	assert.Equal(t, 2, p.Len())
	first := p.Pool()
	require.NotNil(t, first)

	// A broken file keeps the pool loaded before.
	replaceFile(t, path, []byte("garbage"))
	assert.Error(t, p.Reload())
	assert.Same(t, first, p.Pool())
	assert.Equal(t, 2, p.Len())

	changed, err := p.ReloadIfChanged()
	assert.False(t, changed, "the broken file was read already")
	assert.NoError(t, err)

	replaceFile(t, path, b.CertPEM)
	changed, err = p.ReloadIfChanged()
	assert.True(t, changed)
	require.NoError(t, err)
	assert.Equal(t, 1, p.Len())
	assert.NotSame(t, first, p.Pool())
	changed, err = p.ReloadIfChanged()
	assert.False(t, changed)
	assert.NoError(t, err)

	var zero CAPool
	assert.Nil(t, zero.Pool())
	assert.Zero(t, zero.Len())
}

// mtlsServed is the server side of one handshake.
type mtlsServed struct {
	state tls.ConnectionState
	err   error
}

// mtlsServe serves handshakes with cfg on a loopback port until the test
// ends, and reports each one's server side.
func mtlsServe(t *testing.T, cfg *tls.Config) (string, <-chan mtlsServed) {
	t.Helper()
	out := make(chan mtlsServed, 16)
	addr := testnet.Serve(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := tc.HandshakeContext(ctx)
		if err == nil {
			_, _ = tc.Write([]byte("ok\n"))
		}
		out <- mtlsServed{tc.ConnectionState(), err}
	})
	return addr, out
}

// mtlsDial makes a handshake to addr with cert (none if nil), then reads
// the server's first bytes: in TLS 1.3 the server's verdict on a client
// certificate arrives only then. It returns the state and the first error.
func mtlsDial(t *testing.T, addr string, cert *tls.Certificate, version uint16, cache tls.ClientSessionCache) (tls.ConnectionState, error) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "mail.example.com", NextProtos: []string{ALPNIMAP},
		MinVersion: version, MaxVersion: version, ClientSessionCache: cache}
	if cert != nil {
		// Sent whatever CAs the server names: Go's client would otherwise
		// keep back a certificate of another CA.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 3)
	if _, err := c.Read(buf); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.(*tls.Conn).ConnectionState(), nil
}

// TestClientAuthModes runs each of nginx's ssl_verify_client modes against
// a client without a certificate, with one from the trusted CA and with
// one from another CA, over TLS 1.3 and 1.2.
func TestClientAuthModes(t *testing.T) {
	trusted, other := newCA(t, "trusted"), newCA(t, "other")
	dir := t.TempDir()
	cas, err := LoadCAPool(writeFile(t, dir, "cas.pem", trusted.CertPEM))
	require.NoError(t, err)
	issue := func(c *mailtest.CA, name string) *tls.Certificate {
		l, err := c.Issue(mailtest.CertOptions{}, name)
		require.NoError(t, err)
		return &l.TLS
	}
	good, stranger := issue(trusted, "alice"), issue(other, "mallory")
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))

	type want struct{ ok, verified bool }
	for _, tc := range []struct {
		mode                  ClientAuth
		none, good, untrusted want
	}{
		{NoClientCert, want{ok: true}, want{ok: true}, want{ok: true}},
		{OptionalClientCert, want{ok: true}, want{ok: true, verified: true}, want{}},
		{RequireClientCert, want{}, want{ok: true, verified: true}, want{}},
		{OptionalClientCertNoCA, want{ok: true}, want{ok: true}, want{ok: true}},
	} {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(tc.mode.String()+"/"+tls.VersionName(v), func(t *testing.T) {
				addr, states := mtlsServe(t, r.TLSConfig(Policy{Protocol: ALPNIMAP, ClientAuth: tc.mode, ClientCAs: cas}))
				for _, c := range []struct {
					what string
					cert *tls.Certificate
					want want
				}{{"none", nil, tc.none}, {"good", good, tc.good}, {"untrusted", stranger, tc.untrusted}} {
					_, err := mtlsDial(t, addr, c.cert, v, nil)
					srv := <-states
					if !c.want.ok {
						assert.Error(t, err, c.what)
						assert.Error(t, srv.err, c.what)
						continue
					}
					require.NoError(t, err, c.what)
					require.NoError(t, srv.err, c.what)
					assert.Equal(t, c.want.verified, len(srv.state.VerifiedChains) > 0, c.what)
					sent := c.cert != nil && tc.mode != NoClientCert
					assert.Equal(t, sent, len(srv.state.PeerCertificates) > 0, c.what)
				}
			})
		}
	}
}

// The client's view of a refusal: the alert names the reason.
func TestClientAuthAlerts(t *testing.T) {
	trusted, other := newCA(t, "trusted"), newCA(t, "other")
	cas, err := LoadCAPool(writeFile(t, t.TempDir(), "cas.pem", trusted.CertPEM))
	require.NoError(t, err)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))
	addr, errs := serveTLS(t, r.TLSConfig(Policy{ClientAuth: RequireClientCert, ClientCAs: cas}))
	_, err = mtlsDial(t, addr, nil, tls.VersionTLS13, nil)
	assert.ErrorContains(t, err, "certificate required")
	assert.ErrorContains(t, <-errs, "client didn't provide a certificate")
	l, err := other.Issue(mailtest.CertOptions{}, "mallory")
	require.NoError(t, err)
	_, err = mtlsDial(t, addr, &l.TLS, tls.VersionTLS13, nil)
	assert.ErrorContains(t, err, "unknown certificate authority")
	assert.ErrorContains(t, <-errs, "certificate signed by unknown authority")

	// Without ClientCAs, a verifying mode fails every handshake with a
	// reason, never by accident.
	addr, errs = serveTLS(t, r.TLSConfig(Policy{ClientAuth: OptionalClientCert}))
	_, err = mtlsDial(t, addr, nil, tls.VersionTLS13, nil)
	assert.Error(t, err)
	assert.ErrorIs(t, <-errs, errNoClientCAs)
}

// A reloaded CA bundle reaches the next handshake; the session-ticket keys
// set on the config after it was built are the ones used.
func TestClientAuthReloadAndTickets(t *testing.T) {
	first, second := newCA(t, "first"), newCA(t, "second")
	path := writeFile(t, t.TempDir(), "cas.pem", first.CertPEM)
	cas, err := LoadCAPool(path)
	require.NoError(t, err)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))
	cfg := r.TLSConfig(Policy{ClientAuth: RequireClientCert, ClientCAs: cas})
	var k1, k2 [32]byte
	k1[0], k2[0] = 1, 2
	cfg.SetSessionTicketKeys([][32]byte{k1})
	addr, states := mtlsServe(t, cfg)

	l1, err := first.Issue(mailtest.CertOptions{}, "alice")
	require.NoError(t, err)
	l2, err := second.Issue(mailtest.CertOptions{}, "bob")
	require.NoError(t, err)
	handshake := func(l *mailtest.Leaf, cache tls.ClientSessionCache) (tls.ConnectionState, error) {
		t.Helper()
		_, err := mtlsDial(t, addr, &l.TLS, tls.VersionTLS13, cache)
		srv := <-states
		return srv.state, errors.Join(err, srv.err)
	}

	cache := tls.NewLRUClientSessionCache(4)
	st, err := handshake(l1, cache)
	require.NoError(t, err)
	assert.False(t, st.DidResume)
	st, err = handshake(l1, cache)
	require.NoError(t, err)
	assert.True(t, st.DidResume, "resumed with the keys set on the config")
	assert.NotEmpty(t, st.VerifiedChains, "a resumed session keeps its verified chain")

	// New keys on the config: the old ticket no longer decrypts.
	cfg.SetSessionTicketKeys([][32]byte{k2})
	st, err = handshake(l1, cache)
	require.NoError(t, err)
	assert.False(t, st.DidResume, "the config's new keys are used, not a copy's")

	replaceFile(t, path, second.CertPEM)
	require.NoError(t, cas.Reload())
	st, err = handshake(l2, nil)
	require.NoError(t, err, "the new CA's client")
	assert.Equal(t, "bob", st.VerifiedChains[0][0].Subject.CommonName)
	_, err = handshake(l1, nil)
	assert.ErrorContains(t, err, "unknown authority", "the old CA's client")
}
