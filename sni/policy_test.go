package sni

import (
	"context"
	"crypto/tls"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

// cbcSuites are the ECDHE CBC-SHA suites crypto/tls's default list has and
// the intermediate list leaves out.
var cbcSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

func TestIntermediateCipherSuites(t *testing.T) {
	secure := make(map[uint16]bool)
	for _, s := range tls.CipherSuites() {
		secure[s.ID] = true
	}
	list := IntermediateCipherSuites()
	assert.Len(t, list, 6)
	for _, id := range list {
		name := tls.CipherSuiteName(id)
		assert.True(t, secure[id], "%s is among crypto/tls's secure suites", name)
		assert.True(t, strings.HasPrefix(name, "TLS_ECDHE_"), "%s: ECDHE key exchange", name)
		assert.NotContains(t, name, "CBC")
	}
	list[0] = 0
	assert.NotZero(t, IntermediateCipherSuites()[0], "each call returns a new slice")
}

// TestPolicyCipherSuites: a TLS 1.2 client offering only CBC suites is
// refused by default and served with Compatibility; a list of its own
// refuses the suites it leaves out; TLS 1.3 is served whatever the list.
func TestPolicyCipherSuites(t *testing.T) {
	leaktest.Check(t)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))
	only := func(v uint16, suites ...uint16) *tls.Config {
		return &tls.Config{MinVersion: v, MaxVersion: v, CipherSuites: suites, ServerName: "mail.example.com"}
	}
	tests := []struct {
		name   string
		policy Policy
		client *tls.Config
		ok     bool
	}{
		{"default refuses CBC", Policy{}, only(tls.VersionTLS12, cbcSuites...), false},
		{"default takes GCM", Policy{}, only(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), true},
		{"default takes ChaCha20", Policy{}, only(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), true},
		{"compatibility takes CBC", Policy{Compatibility: true}, only(tls.VersionTLS12, cbcSuites...), true},
		{"own list refuses another AEAD suite", Policy{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
			only(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), false},
		{"own list takes its suite", Policy{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
			only(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384), true},
		{"own list wins over compatibility", Policy{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, Compatibility: true},
			only(tls.VersionTLS12, cbcSuites...), false},
		{"TLS 1.3 whatever the list", Policy{CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
			only(tls.VersionTLS13), true},
		{"min 1.3 refuses 1.2", Policy{MinVersion: tls.VersionTLS13}, only(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, serverErrs := serveTLS(t, r.TLSConfig(tt.policy))
			st, err := dialTLS(t, addr, tt.client)
			srvErr := <-serverErrs
			if !tt.ok {
				require.Error(t, err)
				assert.Error(t, srvErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, srvErr)
			if tt.client.MaxVersion == tls.VersionTLS12 {
				assert.Contains(t, tt.client.CipherSuites, st.CipherSuite, "got %s", tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
}

// needOpenSSL returns the openssl binary (see testnet.NeedProgram).
func needOpenSSL(t *testing.T) string {
	t.Helper()
	return testnet.NeedProgram(t, "openssl", "Debian: apt-get install openssl")
}

// sClient runs openssl s_client -tls1_2 with one cipher (OpenSSL's name)
// against addr and returns the cipher it negotiated, or "", and its output.
// Its exit status is not the verdict: the test server closes without
// close_notify, which s_client reports as an error after the handshake.
func sClient(t *testing.T, bin, addr, cipher string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", addr, "-servername", "mail.example.com",
		"-tls1_2", "-cipher", cipher, "-brief")
	cmd.Stdin = strings.NewReader("") // EOF at once: s_client ends after the handshake
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "CONNECTION ESTABLISHED") {
		return "", string(out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "Ciphersuite: "); ok {
			return c, string(out)
		}
	}
	return "", string(out)
}

// TestPolicyOpenSSLCBC: the scanner's view. openssl s_client offering only
// ECDHE-ECDSA-AES128-SHA (CBC, LUCKY13) over TLS 1.2 is refused by the
// default policy and served with Compatibility.
func TestPolicyOpenSSLCBC(t *testing.T) {
	bin := needOpenSSL(t)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com"))) // ECDSA: the ECDSA suites apply
	for _, tt := range []struct {
		name   string
		policy Policy
		cipher string
		ok     bool
	}{
		{"default refuses CBC", Policy{}, "ECDHE-ECDSA-AES128-SHA", false},
		{"default refuses CBC AES256", Policy{}, "ECDHE-ECDSA-AES256-SHA", false},
		{"default takes GCM", Policy{}, "ECDHE-ECDSA-AES128-GCM-SHA256", true},
		{"compatibility takes CBC", Policy{Compatibility: true}, "ECDHE-ECDSA-AES128-SHA", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, serverErrs := serveTLS(t, r.TLSConfig(tt.policy))
			got, out := sClient(t, bin, addr, tt.cipher)
			srvErr := <-serverErrs
			if !tt.ok {
				assert.Empty(t, got, "openssl output:\n%s", out)
				assert.ErrorContains(t, srvErr, "no cipher suite supported by both client and server")
				return
			}
			assert.Equal(t, tt.cipher, got, "openssl output:\n%s", out)
			assert.NoError(t, srvErr)
		})
	}
}

// TestPolicyTicketLifetime: sessions resume within TicketLifetime and not
// after it, with ticket keys set on the config after TLSConfig returned (a
// second config with the same keys, a replica, resumes the first's
// tickets), with and without client certificates (whose handshakes run on
// a per-CA-pool clone), in TLS 1.3 and 1.2. In TLS 1.2 a resumed session
// keeps its first handshake's age; in TLS 1.3 each resumption starts anew.
func TestPolicyTicketLifetime(t *testing.T) {
	leaktest.Check(t)
	clientCA := newCA(t, "lifetime")
	cas, err := LoadCAPool(writeFile(t, t.TempDir(), "cas.pem", clientCA.CertPEM))
	require.NoError(t, err)
	l, err := clientCA.Issue(mailtest.CertOptions{}, "alice")
	require.NoError(t, err)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))
	var key [32]byte
	key[0] = 7

	for _, mode := range []ClientAuth{NoClientCert, RequireClientCert} {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(mode.String()+"/"+tls.VersionName(v), func(t *testing.T) {
				clock := new(testnet.Clock)
				clock.Set(time.Now())
				t0 := clock.Now()
				policy := Policy{Protocol: ALPNIMAP, ClientAuth: mode, ClientCAs: cas, TicketLifetime: time.Hour}
				var clientCert *tls.Certificate
				if mode != NoClientCert {
					clientCert = &l.TLS
				}
				serve := func() (string, <-chan mtlsServed) {
					cfg := r.TLSConfig(policy)
					cfg.Time = clock.Now
					cfg.SetSessionTicketKeys([][32]byte{key}) // after TLSConfig, as a Rotator does
					return mtlsServe(t, cfg)
				}
				addrA, statesA := serve()
				addrB, statesB := serve()
				cache := tls.NewLRUClientSessionCache(4)
				resumed := func(at time.Duration, addr string, states <-chan mtlsServed) bool {
					t.Helper()
					clock.Set(t0.Add(at))
					_, err := mtlsDial(t, addr, clientCert, v, cache)
					srv := <-states
					require.NoError(t, errors.Join(err, srv.err))
					return srv.state.DidResume
				}
				assert.False(t, resumed(0, addrA, statesA), "first handshake")
				assert.True(t, resumed(30*time.Minute, addrB, statesB), "30m: the replica resumes A's ticket")
				// TLS 1.2: the ticket B issued keeps the session's time, t0.
				// TLS 1.3: B's resumption made a new session at 30m.
				assert.Equal(t, v == tls.VersionTLS13, resumed(70*time.Minute, addrA, statesA), "70m")
				assert.False(t, resumed(4*time.Hour, addrA, statesA), "4h: past the lifetime")
				assert.True(t, resumed(4*time.Hour+time.Minute, addrA, statesA), "the full handshake's new session")
			})
		}
	}
}

// A ticket issued without a lifetime (a replica sharing the keys without
// it) carries no creation time and is not resumed by a config with one;
// the other way round it is.
func TestPolicyTicketLifetimeUnstamped(t *testing.T) {
	leaktest.Check(t)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))
	keys := [][32]byte{{9}}
	plain, limited := r.TLSConfig(Policy{}), r.TLSConfig(Policy{TicketLifetime: time.Hour})
	plain.SetSessionTicketKeys(keys)
	limited.SetSessionTicketKeys(keys)
	addrPlain, errsPlain := serveTLS(t, plain)
	addrLimited, errsLimited := serveTLS(t, limited)
	client := &tls.Config{ServerName: "mail.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	dial := func(addr string, errs <-chan error) bool {
		t.Helper()
		st, err := dialTLS(t, addr, client)
		require.NoError(t, errors.Join(err, <-errs))
		return st.DidResume
	}
	assert.False(t, dial(addrPlain, errsPlain))
	assert.False(t, dial(addrLimited, errsLimited), "a ticket without a creation time")
	assert.True(t, dial(addrPlain, errsPlain), "the limited config's ticket resumes where no lifetime applies")
}

// A negative lifetime turns tickets off.
func TestPolicyTicketsDisabled(t *testing.T) {
	leaktest.Check(t)
	var r Resolver
	require.NoError(t, r.AddDefault(cert(t, "mail.example.com")))
	cfg := r.TLSConfig(Policy{TicketLifetime: -1})
	assert.True(t, cfg.SessionTicketsDisabled)
	addr, errs := serveTLS(t, cfg)
	client := &tls.Config{ServerName: "mail.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	for range 2 {
		st, err := dialTLS(t, addr, client)
		require.NoError(t, errors.Join(err, <-errs))
		assert.False(t, st.DidResume)
	}
}

func TestSessionCreated(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	got, ok := sessionCreated([][]byte{[]byte("other/v1:x"), createdEntry(at)})
	assert.True(t, ok)
	assert.Equal(t, at, got)
	for _, extra := range [][][]byte{nil, {[]byte(createdTag)}, {append([]byte(createdTag), 1, 2, 3)},
		{append(createdEntry(at), 0)}, {append([]byte(createdTag), 0xff, 0, 0, 0, 0, 0, 0, 0)}} {
		_, ok := sessionCreated(extra)
		assert.False(t, ok, "%q", extra)
	}
	_, ok = encodedCreated([]byte{3, 3, 1, 0, 0}, tls.VersionTLS12)
	assert.False(t, ok, "short")
	b := []byte{3, 3, 1, 0xc0, 0x2b, 0, 0, 0, 0, 0x6b, 0x49, 0xd2, 0}
	got, ok = encodedCreated(b, tls.VersionTLS12)
	assert.True(t, ok)
	assert.Equal(t, time.Unix(0x6b49d200, 0), got)
	_, ok = encodedCreated(b, tls.VersionTLS13)
	assert.False(t, ok, "another version")
	b[2] = 2
	_, ok = encodedCreated(b, tls.VersionTLS12)
	assert.False(t, ok, "a client state")
}

// FuzzSessionCreated: the Extra and SessionState readers take any bytes
// without panicking, and what createdEntry writes reads back.
func FuzzSessionCreated(f *testing.F) {
	f.Add(createdEntry(time.Unix(1_800_000_000, 0)), int64(1_800_000_000))
	f.Add([]byte{3, 3, 1, 0xc0, 0x2b, 0, 0, 0, 0, 0x6b, 0x49, 0xd2, 0}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, secs int64) {
		_, _ = sessionCreated([][]byte{b})
		_, _ = encodedCreated(b, tls.VersionTLS12)
		if secs < 0 {
			secs = -secs
		}
		at := time.Unix(secs%(1<<40), 0)
		got, ok := sessionCreated([][]byte{b, createdEntry(at)})
		if !ok {
			t.Fatalf("entry of %v not read back", at)
		}
		if _, first := sessionCreated([][]byte{b}); !first && !got.Equal(at) {
			t.Fatalf("got %v; want %v", got, at)
		}
	})
}
