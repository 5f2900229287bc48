package sni

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// testCA is shared by the tests of this package: generating a CA per test
// would only slow them down.
var testCA = sync.OnceValues(func() (*mailtest.CA, error) { return mailtest.GenerateCA("mailedge sni test CA") })

func ca(t testing.TB) *mailtest.CA {
	t.Helper()
	c, err := testCA()
	require.NoError(t, err)
	return c
}

// leaf issues a certificate for names with the given key type.
func leaf(t testing.TB, key mailtest.KeyType, names ...string) *mailtest.Leaf {
	t.Helper()
	l, err := ca(t).Issue(mailtest.CertOptions{Key: key}, names...)
	require.NoError(t, err)
	return l
}

// cert issues an ECDSA certificate for names and returns it ready for Add.
func cert(t testing.TB, names ...string) *tls.Certificate {
	t.Helper()
	l := leaf(t, mailtest.ECDSA, names...)
	return &l.TLS
}

// rsaLeaves caches RSA leaves by name list: RSA keys are slow to generate.
var rsaLeaves sync.Map

func rsaLeaf(t testing.TB, names ...string) *mailtest.Leaf {
	t.Helper()
	key := filepath.Join(names...)
	if l, ok := rsaLeaves.Load(key); ok {
		return l.(*mailtest.Leaf)
	}
	l := leaf(t, mailtest.RSA, names...)
	rsaLeaves.Store(key, l)
	return l
}

// cn returns the subject Common Name of the certificate, "<nil>" for nil.
func cn(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return "<nil>"
	}
	return c.Leaf.Subject.CommonName
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// replaceFile swaps dir/name for data through a rename, as certbot and
// Kubernetes do, so the file's identity changes whatever the clock says.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}
