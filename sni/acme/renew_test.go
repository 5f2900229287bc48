package acme_test

import (
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/acme"
	"github.com/mailedge/mailedge/sni/acme/acmetest"
)

// TestRenewal: pebble's short profile issues certificates valid for 30s,
// renewed a third of their life before expiry; the Store serves the new
// serial after OnRenew reloaded it, and so does a real handshake.
func TestRenewal(t *testing.T) {
	pb := acmetest.Start(t, acmetest.Options{ShortValidity: 30 * time.Second})
	ev := newEvents()
	store := &sni.Store{}
	mgr := newManager(pb, t.TempDir(), ev, store, "mail.example.com")
	mgr.Profile = acmetest.ProfileShort
	store.Sources = []sni.Source{mgr}
	require.NoError(t, mgr.Check(context.Background()))
	require.NoError(t, store.Reload())
	leaktest.Check(t)
	t.Cleanup(pb.Kill) // before the leak check: ends the client's idle HTTP/2 connection to the CA
	first := servedSerial(t, store, "mail.example.com")
	addr := serveTLS(t, store.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP}))

	runManager(t, mgr)
	ev.waitFor(t, "a renewal", func() bool { n, _ := ev.counts(); return n >= 2 })
	second := servedSerial(t, store, "mail.example.com")
	assert.NotEqual(t, first, second, "serial after renewal")
	st := handshake(t, addr, "mail.example.com", sni.ALPNIMAP, pb.IssuerRoots(t))
	assert.Equal(t, second, st.PeerCertificates[0].SerialNumber.String(), "served serial")

	ev.mu.Lock()
	r := ev.renewals[1]
	ev.mu.Unlock()
	assert.True(t, r.FromCA)
	require.NotNil(t, r.Previous)
	assert.Equal(t, first, r.Previous.SerialNumber.String())
	_, errs := ev.counts()
	assert.Equal(t, 0, errs, "errors: %v", ev.lastErr())
}

// TestCAOutage: pebble is killed while a renewal is due. The old
// certificate keeps serving, each failed attempt is reported and visible
// in Status; with pebble back (a new CA, which knows no account), the
// renewal succeeds.
func TestCAOutage(t *testing.T) {
	pb := acmetest.Start(t, acmetest.Options{ShortValidity: 30 * time.Second})
	ev := newEvents()
	store := &sni.Store{}
	mgr := newManager(pb, t.TempDir(), ev, store, "mail.example.com")
	mgr.Profile = acmetest.ProfileShort
	store.Sources = []sni.Source{mgr}
	require.NoError(t, mgr.Check(context.Background()))
	require.NoError(t, store.Reload())
	leaktest.Check(t)
	t.Cleanup(pb.Kill) // before the leak check: ends the client's idle HTTP/2 connection to the CA
	first := servedSerial(t, store, "mail.example.com")

	pb.Kill()
	runManager(t, mgr)
	ev.waitFor(t, "a failed renewal", func() bool { _, n := ev.counts(); return n >= 2 })
	assert.Contains(t, ev.lastErr().Error(), "acme: mail.example.com: renew")
	assert.Equal(t, first, servedSerial(t, store, "mail.example.com"), "the old certificate keeps serving")
	st := mgr.Status()[0]
	assert.Error(t, st.Err)
	assert.GreaterOrEqual(t, st.Failures, 2)

	pb.Start()
	ev.waitFor(t, "a renewal after the outage", func() bool { n, _ := ev.counts(); return n >= 2 })
	assert.NotEqual(t, first, servedSerial(t, store, "mail.example.com"), "serial after the outage")
	ev.waitFor(t, "Status without error", func() bool { return mgr.Status()[0].Err == nil })
}

// TestDNS01: a wildcard name through the provider interface (TXT records
// set in pebble-challtestsrv), with an RSA key, served by SNI for a name
// below it.
func TestDNS01(t *testing.T) {
	pb := acmetest.Start(t, acmetest.Options{})
	ev := newEvents()
	store := &sni.Store{}
	mgr := newManager(pb, t.TempDir(), ev, store, "*.example.org")
	mgr.HTTPAddr = ""
	mgr.DNS = pb.DNSProvider()
	mgr.DNSResolvers = []string{pb.ResolverAddr}
	mgr.DNSPropagationTimeout = -1 // pebble asks pebble-challtestsrv, which has the record at once
	mgr.KeyType = acme.RSA
	store.Sources = []sni.Source{mgr}
	require.NoError(t, mgr.Check(context.Background()))
	leaktest.Check(t)
	t.Cleanup(pb.Kill) // before the leak check: ends the client's idle HTTP/2 connection to the CA
	require.NoError(t, store.Reload())

	addr := serveTLS(t, store.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP}))
	st := handshake(t, addr, "smtp.example.org", sni.ALPNSMTP, pb.IssuerRoots(t))
	leaf := st.PeerCertificates[0]
	assert.Equal(t, []string{"*.example.org"}, leaf.DNSNames)
	assert.Equal(t, x509.RSA, leaf.PublicKeyAlgorithm)
	assert.Equal(t, sni.ALPNSMTP, st.NegotiatedProtocol)
}

// TestSecondReplica: a second Manager on the same storage folder serves
// the certificate the first obtained without asking the CA, which is down.
func TestSecondReplica(t *testing.T) {
	pb := acmetest.Start(t, acmetest.Options{})
	dir := t.TempDir()
	evA := newEvents()
	a := newManager(pb, dir, evA, nil, "mail.example.com")
	require.NoError(t, a.Check(context.Background()))
	leaktest.Check(t)
	t.Cleanup(pb.Kill) // before the leak check: ends the client's idle HTTP/2 connection to the CA
	pb.Kill()          // from here on, any request to the CA fails

	evB := newEvents()
	storeB := &sni.Store{}
	b := newManager(pb, dir, evB, nil, "mail.example.com")
	storeB.Sources = []sni.Source{b}
	require.NoError(t, b.Check(context.Background()))
	require.NoError(t, storeB.Reload())
	renewals, errs := evB.counts()
	require.Equal(t, 1, renewals)
	assert.Equal(t, 0, errs)
	assert.False(t, evB.renewals[0].FromCA, "FromCA: want false, loaded from storage")
	assert.Equal(t, evA.renewals[0].Certificate.Leaf.SerialNumber.String(), servedSerial(t, storeB, "mail.example.com"))

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.NotEmpty(t, entries, "file storage in Dir")
}
