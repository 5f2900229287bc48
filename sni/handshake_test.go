package sni

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// serveTLS accepts on a loopback listener and runs the server side of a
// handshake with cfg on each connection; the errors of the server side go
// to the returned channel. Everything stops when the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // acceptLoop
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { // handshakeOne
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := tc.HandshakeContext(ctx)
				if err == nil {
					// Let the client read the session ticket (TLS 1.3) before closing.
					_, _ = tc.Write([]byte("ok\n"))
				}
				errs <- err
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), errs
}

// dialTLS runs a client handshake against addr and returns the state.
// Certificates are checked by the caller, so the client skips verification.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	cfg = cfg.Clone()
	cfg.InsecureSkipVerify = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	buf := make([]byte, 3)
	_, _ = c.Read(buf)
	return c.(*tls.Conn).ConnectionState(), nil
}

// handshakeResolver serves mail.example.com (ECDSA and RSA),
// mail.example.net, *.example.org, and default.example.com by default.
func handshakeResolver(t *testing.T, strict bool) *Resolver {
	t.Helper()
	r := &Resolver{Strict: strict}
	require.NoError(t, r.Add(&rsaLeaf(t, "mail.example.com").TLS))
	require.NoError(t, r.Add(cert(t, "mail.example.com")))
	require.NoError(t, r.Add(cert(t, "mail.example.net")))
	require.NoError(t, r.Add(cert(t, "*.example.org")))
	require.NoError(t, r.AddDefault(cert(t, "default.example.com")))
	return r
}

func TestHandshakeCertificate(t *testing.T) {
	leaktest.Check(t)
	r := handshakeResolver(t, false)
	addr, serverErrs := serveTLS(t, r.TLSConfig(Policy{}))
	pool := ca(t).Pool()
	rsaTLS12 := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	ecdsaTLS12 := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
	tests := []struct {
		name    string
		sni     string
		client  *tls.Config // nil: Go's defaults (TLS 1.3, every scheme)
		wantCN  string
		wantKey string
		verify  bool // the chain must verify for sni against the test CA
	}{
		{"exact name", "mail.example.com", nil, "mail.example.com", "ECDSA P-256", true},
		{"second domain", "mail.example.net", nil, "mail.example.net", "ECDSA P-256", true},
		{"wildcard", "imap.example.org", nil, "*.example.org", "ECDSA P-256", true},
		{"upper-case SNI", "MAIL.EXAMPLE.NET", nil, "mail.example.net", "ECDSA P-256", true},
		{"no SNI gets default", "", nil, "default.example.com", "ECDSA P-256", false},
		{"unknown name gets default", "unknown.example.com", nil, "default.example.com", "ECDSA P-256", false},
		{"two-label wildcard miss gets default", "a.b.example.org", nil, "default.example.com", "ECDSA P-256", false},
		{"TLS 1.2 RSA-only client gets RSA", "mail.example.com", rsaTLS12, "mail.example.com", "RSA 2048", true},
		{"TLS 1.2 ECDSA-only client gets ECDSA", "mail.example.com", ecdsaTLS12, "mail.example.com", "ECDSA P-256", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{}
			if tt.client != nil {
				cfg = tt.client.Clone()
			}
			cfg.ServerName = tt.sni
			cs, err := dialTLS(t, addr, cfg)
			require.NoError(t, err)
			require.NoError(t, <-serverErrs)
			require.NotEmpty(t, cs.PeerCertificates)
			got := cs.PeerCertificates[0]
			assert.Equal(t, tt.wantCN, got.Subject.CommonName)
			assert.Equal(t, tt.wantKey, keyType(got))
			if tt.verify {
				_, err := got.Verify(x509.VerifyOptions{Roots: pool, DNSName: tt.sni})
				assert.NoError(t, err, "the served chain verifies for %s", tt.sni)
			}
		})
	}
}

func TestHandshakeStrict(t *testing.T) {
	leaktest.Check(t)
	addr, serverErrs := serveTLS(t, handshakeResolver(t, true).TLSConfig(Policy{}))
	tests := []struct {
		name    string
		sni     string
		wantErr string // in the client's error; "" for success
	}{
		{"known name served", "mail.example.net", ""},
		{"wildcard served", "pop.example.org", ""},
		{"unknown name refused", "unknown.example.com", "unrecognized name"},
		{"no SNI refused", "", "unrecognized name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dialTLS(t, addr, &tls.Config{ServerName: tt.sni})
			serverErr := <-serverErrs
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.NoError(t, serverErr)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Error(t, serverErr)
		})
	}
}

func TestHandshakePolicy(t *testing.T) {
	leaktest.Check(t)
	r := handshakeResolver(t, false)
	tests := []struct {
		name      string
		policy    Policy
		client    *tls.Config
		wantProto string
		wantErr   string // in the client's error; "" for success
	}{
		{"no ALPN accepted", Policy{}, &tls.Config{}, "", ""},
		{"imap accepted", Policy{}, &tls.Config{NextProtos: []string{"imap"}}, "imap", ""},
		{"smtp accepted", Policy{}, &tls.Config{NextProtos: []string{"smtp"}}, "smtp", ""},
		{"pop3 among others accepted", Policy{}, &tls.Config{NextProtos: []string{"http/1.1", "pop3"}}, "pop3", ""},
		{"http/1.1 only refused", Policy{}, &tls.Config{NextProtos: []string{"http/1.1"}}, "", "no application protocol"},
		{"h2 and http/1.1 refused", Policy{}, &tls.Config{NextProtos: []string{"h2", "http/1.1"}}, "", "no application protocol"},
		{"imap on an smtp listener refused", Policy{Protocol: ALPNSMTP}, &tls.Config{NextProtos: []string{"imap"}}, "", "no application protocol"},
		{"smtp on an smtp listener", Policy{Protocol: ALPNSMTP}, &tls.Config{NextProtos: []string{"smtp"}}, "smtp", ""},
		{"no ALPN on an smtp listener", Policy{Protocol: ALPNSMTP}, &tls.Config{}, "", ""},
		{"extra protocol accepted", Policy{Protocol: ALPNIMAP, ExtraProtocols: []string{"x-test"}}, &tls.Config{NextProtos: []string{"x-test"}}, "x-test", ""},
		{"AnyALPN lets http/1.1 in", Policy{AnyALPN: true}, &tls.Config{NextProtos: []string{"http/1.1"}}, "", ""},
		{"TLS 1.1 refused", Policy{}, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, "", "protocol version"},
		{"TLS 1.2 accepted", Policy{}, &tls.Config{MaxVersion: tls.VersionTLS12}, "", ""},
		{"TLS 1.2 refused at a 1.3 minimum", Policy{MinVersion: tls.VersionTLS13}, &tls.Config{MaxVersion: tls.VersionTLS12}, "", "protocol version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, serverErrs := serveTLS(t, r.TLSConfig(tt.policy))
			client := tt.client.Clone()
			client.ServerName = "mail.example.com"
			cs, err := dialTLS(t, addr, client)
			serverErr := <-serverErrs
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.NoError(t, serverErr)
				assert.Equal(t, tt.wantProto, cs.NegotiatedProtocol)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Error(t, serverErr)
		})
	}
}

func TestTLSConfigDefaults(t *testing.T) {
	cfg := (&Resolver{}).TLSConfig(Policy{})
	assert.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)
	assert.Equal(t, []string{"imap", "pop3", "smtp"}, cfg.NextProtos)
	assert.Empty(t, cfg.Certificates, "certificates come from GetCertificate only")
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "x.example.com"})
	assert.Nil(t, c)
	assert.NoError(t, err, "a refusal becomes (nil, nil) so crypto/tls sends unrecognized_name")
	assert.Nil(t, (&Resolver{}).TLSConfig(Policy{AnyALPN: true}).NextProtos)
}

// TestHandshakeInFlightKeepsSnapshot swaps the set while a handshake is
// between choosing its certificate and finishing: the handshake completes
// with the certificate it chose, and the next one sees the new set.
func TestHandshakeInFlightKeepsSnapshot(t *testing.T) {
	leaktest.Check(t)
	r := &Resolver{Strict: true}
	require.NoError(t, r.Add(cert(t, "mail.example.com")))
	chosen := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	cfg := r.TLSConfig(Policy{})
	inner := cfg.GetCertificate
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := inner(h)
		once.Do(func() {
			close(chosen)
			<-proceed
		})
		return c, err
	}
	addr, serverErrs := serveTLS(t, cfg)

	type result struct {
		cs  tls.ConnectionState
		err error
	}
	first := make(chan result, 1)
	go func() {
		cs, err := dialTLS(t, addr, &tls.Config{ServerName: "mail.example.com"})
		first <- result{cs, err}
	}()
	<-chosen
	require.NoError(t, r.Set([]Entry{{Certificate: cert(t, "mail.example.net")}}))
	close(proceed)

	res := <-first
	require.NoError(t, res.err, "the handshake in flight finishes")
	require.NoError(t, <-serverErrs)
	assert.Equal(t, "mail.example.com", res.cs.PeerCertificates[0].Subject.CommonName)

	_, err := dialTLS(t, addr, &tls.Config{ServerName: "mail.example.com"})
	assert.Error(t, err, "the new set no longer serves mail.example.com")
	assert.Error(t, <-serverErrs)
}
