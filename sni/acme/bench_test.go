package acme_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/acme/acmetest"
)

// BenchmarkStoreLookupACME: a Store lookup by SNI with ACME-managed names
// loaded beside a file-style certificate allocates nothing, as for any
// other source: the Manager's certificates are plain entries of the
// Store's snapshot.
func BenchmarkStoreLookupACME(b *testing.B) {
	pb := acmetest.Start(b, acmetest.Options{})
	ev := newEvents()
	mgr := newManager(pb, b.TempDir(), ev, nil, "mail.example.com", "mail.example.net", "mail.example.org")
	require.NoError(b, mgr.Check(context.Background()))
	store := &sni.Store{Sources: []sni.Source{mgr}}
	require.NoError(b, store.Reload())
	hellos := []*tls.ClientHelloInfo{
		{ServerName: "mail.example.com"}, {ServerName: "mail.example.net"}, {ServerName: "MAIL.EXAMPLE.ORG"},
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c, err := store.GetCertificate(hellos[i%len(hellos)])
		if err != nil || c == nil {
			b.Fatal(err)
		}
		i++
	}
}
