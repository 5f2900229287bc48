package ticketkeys

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
)

const serverName = "mail.example.test"

// testPKI is one CA and one certificate for every replica of every test,
// as a fleet shares its certificates.
var testPKI = sync.OnceValues(func() (*pki, error) {
	ca, err := mailtest.GenerateCA("mailedge ticketkeys test CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(mailtest.CertOptions{}, serverName)
	if err != nil {
		return nil, err
	}
	var certs sni.Resolver
	if err := certs.AddDefault(&leaf.TLS); err != nil {
		return nil, err
	}
	return &pki{ca: ca, certs: &certs}, nil
})

type pki struct {
	ca    *mailtest.CA
	certs *sni.Resolver
}

func getPKI(t testing.TB) *pki {
	t.Helper()
	p, err := testPKI()
	require.NoError(t, err)
	return p
}

// serverConfig returns a new server config as the gateway builds one per
// listener: sni's TLSConfig for IMAP.
func serverConfig(t testing.TB) *tls.Config {
	return getPKI(t).certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})
}

// clientConfig returns a client config with its own session cache, at
// most maxVersion (0 for crypto/tls's default, TLS 1.3).
func clientConfig(t testing.TB, maxVersion uint16) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		RootCAs:            getPKI(t).ca.Pool(),
		NextProtos:         []string{sni.ALPNIMAP},
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
		MaxVersion:         maxVersion,
	}
}

const greeting = "* OK\r\n"

// serve runs the server side of one connection: handshake, a greeting
// (after the TLS 1.3 tickets, so the client has its ticket once it read
// the greeting), then reading until the client closes.
func serve(c net.Conn, cfg *tls.Config) {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	tc := tls.Server(c, cfg)
	defer tc.Close()
	if _, err := io.WriteString(tc, greeting); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, tc)
}

// client runs the client side of one connection over c and tells whether
// the handshake resumed a session.
func client(t testing.TB, c net.Conn, cfg *tls.Config) bool {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	tc := tls.Client(c, cfg)
	defer tc.Close()
	buf := make([]byte, len(greeting))
	_, err := io.ReadFull(tc, buf)
	require.NoError(t, err)
	require.Equal(t, greeting, string(buf))
	st := tc.ConnectionState()
	if cfg.MaxVersion != 0 {
		require.Equal(t, cfg.MaxVersion, st.Version, "negotiated another TLS version than the test's")
	}
	return st.DidResume
}

// resumesOn tells whether a session begun with server config a resumes
// with server config b, over in-memory pipes.
func resumesOn(t testing.TB, a, b *tls.Config) bool {
	t.Helper()
	cfg := clientConfig(t, 0)
	pipe := func(srv *tls.Config) bool {
		s, c := net.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); serve(s, srv) }()
		defer func() { <-done }()
		return client(t, c, cfg)
	}
	require.False(t, pipe(a), "the first handshake resumed")
	return pipe(b)
}

// replica is one gateway of a simulated fleet: a TLS listener on
// loopback with its own config and its own Rotator.
type replica struct {
	addr string
	cfg  *tls.Config
	rot  *Rotator
	ev   *events
}

// startFleet starts n replicas, each with a Rotator over the Source that
// src returns for it (nil: no Rotator, crypto/tls's own keys), polling
// every interval. Every Rotator must load keys at once. Listeners and
// Rotators stop when the test ends.
func startFleet(t *testing.T, n int, interval time.Duration, src func(i int) Source) []*replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	fleet := make([]*replica, n)
	for i := range fleet {
		r := &replica{cfg: serverConfig(t)}
		if s := src(i); s != nil {
			r.ev = &events{}
			r.rot = r.ev.rotator(s)
			r.rot.Interval = interval
			r.rot.Add(r.cfg)
			require.NoError(t, r.rot.Refresh(ctx))
			wg.Add(1)
			go func() { defer wg.Done(); _ = r.rot.Run(ctx) }()
		}
		r.addr = testnet.Serve(t, func(c net.Conn) { serve(c, r.cfg) })
		fleet[i] = r
	}
	return fleet
}

// roundRobin makes n connections over the fleet, the i-th to replica
// (start+i) mod len(fleet), with one client's session cache, and returns
// how many resumed.
func roundRobin(t testing.TB, fleet []*replica, cfg *tls.Config, start, n int) (resumed int) {
	t.Helper()
	for i := range n {
		r := fleet[(start+i)%len(fleet)]
		c, err := net.Dial("tcp", r.addr)
		require.NoError(t, err)
		if client(t, c, cfg) {
			resumed++
		}
	}
	return resumed
}

// waitFleet waits until every replica's encrypting key is want and it
// holds keys keys.
func waitFleet(t testing.TB, fleet []*replica, want [32]byte, keys int) {
	t.Helper()
	waitFor(t, "every replica on key "+Fingerprint(want), func() bool {
		for _, r := range fleet {
			st := r.rot.Status()
			if st.Fingerprint != Fingerprint(want) || st.Keys != keys {
				return false
			}
		}
		return true
	})
}

// share is resumed/n as a percentage, for the logs.
func share(resumed, n int) float64 { return 100 * float64(resumed) / float64(n) }

// minShare is the issue's goal: at least 95% of the handshakes after the
// first resume, on whichever replica they land.
func assertShare(t testing.TB, phase string, resumed, n int) {
	t.Helper()
	t.Logf("%s: %d of %d handshakes resumed (%.1f%%)", phase, resumed, n, share(resumed, n))
	assert.GreaterOrEqual(t, 100*resumed, 95*n, "%s: %d of %d resumed, under 95%%", phase, resumed, n)
}

// TestResumptionAcrossReplicasFile runs three replicas, each with its own
// config and Rotator over one key file, and a client that goes round robin
// over them: its sessions resume on the other replicas, still do after a
// rotation (old tickets open with the previous key, kept second), and the
// tickets issued after the rotation are the new key's (they still resume
// once the previous key is dropped).
func TestResumptionAcrossReplicasFile(t *testing.T) {
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			leaktest.Check(t)
			const n = 60
			path := filepath.Join(t.TempDir(), "ticket-keys")
			old, next := testKey(11), testKey(99)
			replaceFile(t, path, Format([][32]byte{old}))
			fleet := startFleet(t, 3, 5*time.Millisecond, func(int) Source { return FileSource{Path: path} })
			cfg := clientConfig(t, v.max)

			require.Zero(t, roundRobin(t, fleet, cfg, 0, 1), "the first handshake cannot resume")
			assertShare(t, "before rotation", roundRobin(t, fleet, cfg, 1, n), n)

			replaceFile(t, path, Format([][32]byte{next, old}))
			waitFleet(t, fleet, next, 2)
			require.Equal(t, 1, roundRobin(t, fleet, cfg, 2, 1), "a ticket of the previous key did not resume during its grace")
			assertShare(t, "across the rotation", 1+roundRobin(t, fleet, cfg, 0, n-1), n)

			replaceFile(t, path, Format([][32]byte{next}))
			waitFleet(t, fleet, next, 1)
			assertShare(t, "after the previous key is dropped", roundRobin(t, fleet, cfg, 0, n), n)

			// The controls: a client whose ticket is of a dropped key does a
			// full handshake, and is then resumed again.
			replaceFile(t, path, Format([][32]byte{testKey(150)}))
			waitFleet(t, fleet, testKey(150), 1)
			assert.Zero(t, roundRobin(t, fleet, cfg, 1, 1), "a ticket of a dropped key resumed")
			assertShare(t, "after a key change without grace, from the second handshake", roundRobin(t, fleet, cfg, 2, n), n)

			for _, r := range fleet {
				errs, _, _ := r.ev.counts()
				assert.Zero(t, errs, "the key file was read as a whole each time")
			}
		})
	}
}

// TestResumptionWithoutSharedKeys is the control: replicas with crypto/tls's
// own keys never resume each other's sessions, so the resumptions counted
// above are the shared keys' doing.
func TestResumptionWithoutSharedKeys(t *testing.T) {
	leaktest.Check(t)
	fleet := startFleet(t, 3, 0, func(int) Source { return nil })
	cfg := clientConfig(t, 0)
	resumed := roundRobin(t, fleet, cfg, 0, 30)
	t.Logf("own keys per replica: %d of 30 handshakes resumed", resumed)
	assert.Zero(t, resumed)
	// On one replica they do resume, after one full handshake there (the
	// client holds a ticket of the last replica).
	assert.Equal(t, 29, roundRobin(t, fleet[:1], cfg, 0, 30), "one replica resumes its own sessions")
}

// TestCloneFreezesKeys documents the trap of the package doc: a Clone of a
// config with keys set carries a copy that does not follow the Rotator;
// an added clone does.
func TestCloneFreezesKeys(t *testing.T) {
	src := &fakeSource{}
	src.set([][32]byte{testKey(1)}, nil)
	r := &Rotator{Source: src}
	base := serverConfig(t)
	r.Add(base)
	require.NoError(t, r.Refresh(context.Background()))
	frozen, followed := base.Clone(), base.Clone()
	r.Add(followed)

	src.set([][32]byte{testKey(2)}, nil) // a change without grace
	require.NoError(t, r.Refresh(context.Background()))
	assert.True(t, resumesOn(t, base, followed))
	assert.False(t, resumesOn(t, base, frozen), "the clone kept the keys of the time of the Clone")
}

// replaceFile swaps path for data through a rename, as Kubernetes and
// secret agents do, so a poll never reads half a file.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}
