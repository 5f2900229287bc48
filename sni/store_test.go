package sni

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
)

// storeFixture is a Store over a Pair, a Let's Encrypt folder and a
// Postfix map, all in a temp dir, loaded once.
type storeFixture struct {
	dir                string
	pairCert, pairKey  string
	mapPath, leKeyPath string
	store              *Store
}

func newStoreFixture(t *testing.T) *storeFixture {
	t.Helper()
	f := &storeFixture{dir: t.TempDir()}
	var err error
	def := leaf(t, mailtest.ECDSA, "default.example.com")
	f.pairCert, f.pairKey, err = def.WriteFiles(f.dir, "default")
	require.NoError(t, err)
	writeLetsEncrypt(t, f.dir, map[string]*mailtest.Leaf{"le": leaf(t, mailtest.ECDSA, "le.example.com")})
	f.leKeyPath = filepath.Join(f.dir, "live", "le", "privkey.pem")
	pf := leaf(t, mailtest.ECDSA, "map.example.com")
	writeFile(t, f.dir, "map.key", pf.KeyPEM)
	writeFile(t, f.dir, "map.crt", pf.CertPEM)
	f.mapPath = writeMap(t, f.dir, "map.example.com map.key map.crt\n")
	f.store = &Store{Sources: []Source{
		Pair{CertFile: f.pairCert, KeyFile: f.pairKey, Default: true},
		LetsEncrypt{Dir: f.dir},
		PostfixMap{Path: f.mapPath},
	}}
	require.NoError(t, f.store.Reload())
	return f
}

// served returns the Common Name served for name, "" if none.
func served(s *Store, name string) string {
	c, ok := s.Lookup(name)
	if !ok {
		return ""
	}
	return cn(c)
}

func TestStoreReload(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, f *storeFixture)
		wantErr error             // nil: the reload succeeds
		check   map[string]string // server name -> Common Name served after
	}{
		{
			name: "renewed pair is served",
			change: func(t *testing.T, f *storeFixture) {
				l := leaf(t, mailtest.ECDSA, "default.example.com", "new.example.com")
				replaceFile(t, f.pairCert, l.CertPEM)
				replaceFile(t, f.pairKey, l.KeyPEM)
			},
			check: map[string]string{"new.example.com": "default.example.com", "le.example.com": "le.example.com"},
		},
		{
			name: "new map line is served",
			change: func(t *testing.T, f *storeFixture) {
				replaceFile(t, f.mapPath, []byte("map.example.com map.key map.crt\nextra.example.com map.key map.crt\n"))
			},
			check: map[string]string{"extra.example.com": "map.example.com"},
		},
		{
			name: "new Let's Encrypt lineage is served",
			change: func(t *testing.T, f *storeFixture) {
				writeLetsEncrypt(t, f.dir, map[string]*mailtest.Leaf{"two": leaf(t, mailtest.ECDSA, "two.example.com")})
			},
			check: map[string]string{"two.example.com": "two.example.com", "le.example.com": "le.example.com"},
		},
		{
			name: "mismatched key keeps the old set",
			change: func(t *testing.T, f *storeFixture) {
				replaceFile(t, f.leKeyPath, leaf(t, mailtest.ECDSA, "x.example.com").KeyPEM)
			},
			wantErr: ErrKeyMismatch,
			check:   map[string]string{"le.example.com": "le.example.com", "map.example.com": "map.example.com"},
		},
		{
			name:    "deleted key file keeps the old set",
			change:  func(t *testing.T, f *storeFixture) { require.NoError(t, os.Remove(f.pairKey)) },
			wantErr: fs.ErrNotExist,
			check:   map[string]string{"default.example.com": "default.example.com"},
		},
		{
			name:    "garbled map keeps the old set",
			change:  func(t *testing.T, f *storeFixture) { replaceFile(t, f.mapPath, []byte("  map.key\n")) },
			wantErr: &MapError{},
			check:   map[string]string{"map.example.com": "map.example.com"},
		},
		{
			name: "garbled PEM keeps the old set",
			change: func(t *testing.T, f *storeFixture) {
				replaceFile(t, f.pairCert, []byte("-----BEGIN CERTIFICATE-----\n"))
			},
			wantErr: ErrBadPEM,
			check:   map[string]string{"default.example.com": "default.example.com"},
		},
		{
			name: "no certificates at all keeps the old set",
			change: func(t *testing.T, f *storeFixture) {
				f.store.Sources = []Source{LetsEncrypt{Dir: t.TempDir() + "/empty"}}
				require.NoError(t, os.MkdirAll(f.store.Sources[0].(LetsEncrypt).Dir+"/live", 0o755))
			},
			wantErr: ErrNoCertificate,
			check:   map[string]string{"map.example.com": "map.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newStoreFixture(t)
			tt.change(t, f)
			err := f.store.Reload()
			switch want := tt.wantErr.(type) {
			case nil:
				require.NoError(t, err)
			case *MapError:
				assert.True(t, errors.As(err, &want), "got %v; want a *MapError", err)
			default:
				assert.ErrorIs(t, err, want)
			}
			for name, cn := range tt.check {
				assert.Equal(t, cn, served(f.store, name), "served for %s", name)
			}
		})
	}
}

func TestStoreReloadIfChanged(t *testing.T) {
	f := newStoreFixture(t)
	reloaded, err := f.store.ReloadIfChanged()
	require.NoError(t, err)
	assert.False(t, reloaded, "nothing changed since Reload")

	l := leaf(t, mailtest.ECDSA, "le.example.com", "renewed.example.com")
	replaceFile(t, filepath.Join(f.dir, "live", "le", "fullchain.pem"), l.CertPEM)
	replaceFile(t, f.leKeyPath, l.KeyPEM)
	reloaded, err = f.store.ReloadIfChanged()
	require.NoError(t, err)
	assert.True(t, reloaded)
	assert.Equal(t, "le.example.com", served(f.store, "renewed.example.com"))

	// A broken file is reported once, then not again until it changes.
	replaceFile(t, f.pairKey, []byte("junk"))
	reloaded, err = f.store.ReloadIfChanged()
	assert.True(t, reloaded)
	assert.ErrorIs(t, err, ErrBadPEM)
	reloaded, err = f.store.ReloadIfChanged()
	assert.False(t, reloaded)
	require.NoError(t, err)

	// Fixing it is noticed.
	def := leaf(t, mailtest.ECDSA, "default.example.com")
	replaceFile(t, f.pairCert, def.CertPEM)
	replaceFile(t, f.pairKey, def.KeyPEM)
	reloaded, err = f.store.ReloadIfChanged()
	assert.True(t, reloaded)
	require.NoError(t, err)

	var empty Store
	empty.Sources = []Source{Pair{CertFile: f.pairCert, KeyFile: f.pairKey}}
	reloaded, err = empty.ReloadIfChanged()
	assert.True(t, reloaded, "the first call loads")
	require.NoError(t, err)
}

func TestStoreWatch(t *testing.T) {
	leaktest.Check(t)
	f := newStoreFixture(t)
	reloads := make(chan struct{}, 16)
	errs := make(chan error, 16)
	f.store.OnReload = func() { reloads <- struct{}{} }
	f.store.OnError = func(err error) { errs <- err }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.store.Watch(ctx, 2*time.Millisecond) }()
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10s", what)
		}
	}

	// A renewal is picked up.
	l := leaf(t, mailtest.ECDSA, "map.example.com", "watched.example.com")
	writeFile(t, f.dir, "map2.key", l.KeyPEM)
	writeFile(t, f.dir, "map2.crt", l.CertPEM)
	replaceFile(t, f.mapPath, []byte("watched.example.com map2.key map2.crt\n"))
	wait("reload", reloads)
	assert.Equal(t, "map.example.com", served(f.store, "watched.example.com"))

	// A bad change is reported through OnError and the set stays.
	replaceFile(t, f.mapPath, []byte("watched.example.com map.key map2.crt\n"))
	select {
	case err := <-errs:
		assert.ErrorIs(t, err, ErrKeyMismatch)
	case <-time.After(10 * time.Second):
		t.Fatal("no error reported within 10s")
	}
	assert.Equal(t, "map.example.com", served(f.store, "watched.example.com"))

	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestStoreCertificatesInfo(t *testing.T) {
	f := newStoreFixture(t)
	byName := map[string]Info{}
	for _, in := range f.store.Certificates() {
		byName[in.Name] = in
	}
	tests := []struct {
		name        string
		wantSource  string
		wantDefault bool
	}{
		{"default.example.com", f.pairCert, true},
		{"le.example.com", filepath.Join(f.dir, "live", "le", "fullchain.pem"), false},
		{"map.example.com", filepath.Join(f.dir, "map.crt"), false},
	}
	require.Len(t, byName, len(tests))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, ok := byName[tt.name]
			require.True(t, ok)
			assert.Equal(t, tt.wantSource, in.Source)
			assert.Equal(t, tt.wantDefault, in.Default)
			assert.Equal(t, "ECDSA P-256", in.KeyType)
			assert.Equal(t, "mailedge sni test CA", in.Issuer)
			assert.Equal(t, tt.name, in.Subject)
			assert.True(t, in.NotAfter.After(in.NotBefore))
		})
	}
	now := time.Now()
	assert.Empty(t, f.store.Expiring(now, 24*time.Hour), "fresh certificates are not expiring")
	assert.Len(t, f.store.Expiring(now, 365*24*time.Hour), 3, "all expire within a year")
}

// TestStoreSurface pins what a Store offers: the reads and the tls.Config
// of a Resolver, and the reloads, but none of the Resolver's writers, since
// a certificate added by hand would vanish at the next reload.
func TestStoreSurface(t *testing.T) {
	var _ interface {
		GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
		TLSConfig(Policy) *tls.Config
		Lookup(string) (*tls.Certificate, bool)
		Len() int
		Certificates() []Info
		Expiring(time.Time, time.Duration) []Info
		Reload() error
		ReloadIfChanged() (bool, error)
		Watch(context.Context, time.Duration) error
	} = (*Store)(nil)

	typ := reflect.TypeFor[*Store]()
	for _, name := range []string{"Add", "AddNames", "AddDefault", "Set"} {
		_, ok := typ.MethodByName(name)
		assert.False(t, ok, "Store has %s; its set must come from Sources only", name)
	}
	_, ok := typ.Elem().FieldByName("Resolver")
	assert.False(t, ok, "Store exposes its Resolver")
}

func TestStoreStrict(t *testing.T) {
	tests := []struct {
		name       string
		strict     bool
		serverName string
		want       string // Common Name served; "" for ErrNoCertificate
	}{
		{name: "known name", serverName: "le.example.com", want: "le.example.com"},
		{name: "unknown name gets the default", serverName: "other.example.com", want: "default.example.com"},
		{name: "no SNI gets the default", want: "default.example.com"},
		{name: "strict known name", strict: true, serverName: "map.example.com", want: "map.example.com"},
		{name: "strict unknown name", strict: true, serverName: "other.example.com"},
		{name: "strict no SNI", strict: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newStoreFixture(t)
			f.store.Strict = tt.strict
			c, err := f.store.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.serverName})
			if tt.want == "" {
				assert.ErrorIs(t, err, ErrNoCertificate)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cn(c))
		})
	}
}

func TestStoreBeforeReload(t *testing.T) {
	var s Store
	_, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "mail.example.com"})
	assert.ErrorIs(t, err, ErrNoCertificate)
	assert.Zero(t, s.Len())
	assert.Empty(t, s.Certificates())
	_, ok := s.Lookup("mail.example.com")
	assert.False(t, ok)
}

// TestStoreTLSConfigFollowsReload checks that a config taken before a
// reload serves the reloaded set: the config holds the Store, not a set.
func TestStoreTLSConfigFollowsReload(t *testing.T) {
	f := newStoreFixture(t)
	cfg := f.store.TLSConfig(Policy{})
	get := func(name string) string {
		t.Helper()
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		require.NoError(t, err)
		return cn(c)
	}
	assert.Equal(t, "default.example.com", get("later.example.com"))
	l := leaf(t, mailtest.ECDSA, "later.example.com")
	writeFile(t, f.dir, "later.key", l.KeyPEM)
	writeFile(t, f.dir, "later.crt", l.CertPEM)
	replaceFile(t, f.mapPath, []byte("map.example.com map.key map.crt\nlater.example.com later.key later.crt\n"))
	require.NoError(t, f.store.Reload())
	assert.Equal(t, "later.example.com", get("later.example.com"))
}
