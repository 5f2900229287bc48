package acme_test

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/acme"
	"github.com/mailedge/mailedge/sni/acme/acmetest"
)

// certmagic keeps one rate-limiter goroutine per CA and account for the
// life of the process (package state in its acmeclient.go), and each test
// has a pebble of its own: the tests check for leaks from after their
// first contact with the CA. Its ACME client's HTTP/2 connection to the
// CA stays open, idle, until the CA closes it (its transport is not
// reachable to close): the tests kill pebble before the leak check.

func TestObtainServeIMAP(t *testing.T) {
	pb := acmetest.Start(t, acmetest.Options{})
	ev := newEvents()
	store := &sni.Store{}
	mgr := newManager(pb, t.TempDir(), ev, nil, "mail.example.com", "Mail.Example.NET")
	store.Sources = []sni.Source{mgr}

	require.NoError(t, mgr.Check(context.Background()))
	leaktest.Check(t)
	t.Cleanup(pb.Kill) // before the leak check: ends the client's idle HTTP/2 connection to the CA
	require.NoError(t, store.Reload())
	renewals, errs := ev.counts()
	assert.Equal(t, 2, renewals, "OnRenew calls; want one per domain")
	assert.Equal(t, 0, errs)
	for _, r := range ev.renewals {
		assert.True(t, r.FromCA, "%s: FromCA", r.Domain)
		assert.Nil(t, r.Previous, "%s: Previous", r.Domain)
	}

	addr := serveTLS(t, store.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP}))
	roots := pb.IssuerRoots(t)
	for _, name := range []string{"mail.example.com", "mail.example.net"} {
		st := handshake(t, addr, name, sni.ALPNIMAP, roots) // verified against pebble's root
		leaf := st.PeerCertificates[0]
		assert.Equal(t, sni.ALPNIMAP, st.NegotiatedProtocol, name)
		assert.Equal(t, []string{name}, leaf.DNSNames, name)
		assert.Contains(t, leaf.Issuer.CommonName, "Pebble", name)
		assert.Equal(t, x509.ECDSA, leaf.PublicKeyAlgorithm, name)
	}
	// The Store's listing (the gateway's expiry gauges) names them.
	var names []string
	for _, in := range store.Certificates() {
		names = append(names, in.Name)
		assert.True(t, strings.HasPrefix(in.Source, "acme:https://127.0.0.1:"), in.Source)
	}
	assert.ElementsMatch(t, []string{"mail.example.com", "mail.example.net"}, names)
	for _, st := range mgr.Status() {
		assert.NoError(t, st.Err, st.Domain)
		assert.False(t, st.NotAfter.IsZero(), st.Domain)
	}

	// A second check finds nothing to do.
	require.NoError(t, mgr.Check(context.Background()))
	renewals, _ = ev.counts()
	assert.Equal(t, 2, renewals, "OnRenew calls after a check with nothing due")

	t.Run("openssl", func(t *testing.T) {
		bin, err := exec.LookPath("openssl")
		if err != nil {
			t.Skip("openssl not installed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
		require.NoError(t, os.WriteFile(rootFile, pb.IssuerRootPEM(t), 0o600))
		cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", addr, "-servername", "mail.example.net",
			"-alpn", "imap", "-CAfile", rootFile, "-verify_hostname", "mail.example.net", "-verify_return_error")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "Verify return code: 0 (ok)")
		assert.Contains(t, string(out), "issuer=CN = Pebble Intermediate CA")
		assert.Contains(t, string(out), "Verified peername: mail.example.net")
		assert.Contains(t, string(out), "ALPN protocol: imap")
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *acme.Manager
		want string
	}{
		{"no domains", &acme.Manager{Email: testEmail, HTTPAddr: ":80"}, "no domains"},
		{"no email", &acme.Manager{Domains: []string{"a.example"}, HTTPAddr: ":80"}, "no Email"},
		{"no challenge", &acme.Manager{Domains: []string{"a.example"}, Email: testEmail}, "no challenge"},
		{"wildcard without DNS", &acme.Manager{Domains: []string{"*.example.com"}, Email: testEmail, HTTPAddr: ":80"}, "needs DNS"},
		{"IP address", &acme.Manager{Domains: []string{"192.0.2.1"}, Email: testEmail, HTTPAddr: ":80"}, "not a host name"},
		{"empty name", &acme.Manager{Domains: []string{" "}, Email: testEmail, HTTPAddr: ":80"}, "not a host name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Check(context.Background())
			require.ErrorIs(t, err, acme.ErrConfig)
			assert.Contains(t, err.Error(), tc.want)
			err = tc.m.Run(context.Background())
			require.ErrorIs(t, err, acme.ErrConfig)
		})
	}
}

func TestLoadBeforeObtaining(t *testing.T) {
	m := &acme.Manager{Domains: []string{"mail.example.com"}}
	entries, files, err := m.Load()
	assert.NoError(t, err)
	assert.Empty(t, entries)
	assert.Empty(t, files)
}
