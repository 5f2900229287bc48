package mailtest

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIssueVerifies(t *testing.T) {
	ca, err := GenerateCA("test CA")
	require.NoError(t, err)
	tests := []struct {
		name string
		key  KeyType
		sans []string
		host string
	}{
		{"ecdsa exact", ECDSA, []string{"mail.example.com"}, "mail.example.com"},
		{"rsa exact", RSA, []string{"mail.example.net"}, "mail.example.net"},
		{"wildcard", ECDSA, []string{"*.example.org"}, "imap.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Issue(CertOptions{Key: tt.key}, tt.sans...)
			require.NoError(t, err)
			_, err = leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: tt.host})
			assert.NoError(t, err)
			switch tt.key {
			case RSA:
				assert.IsType(t, &rsa.PrivateKey{}, leaf.TLS.PrivateKey)
			default:
				assert.IsType(t, &ecdsa.PrivateKey{}, leaf.TLS.PrivateKey)
			}
			pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
			require.NoError(t, err)
			assert.Len(t, pair.Certificate, 2, "chain holds leaf and CA")
		})
	}
}

func TestValidityWindows(t *testing.T) {
	ca, err := GenerateCA("test CA")
	require.NoError(t, err)
	exp, err := ca.Expired(ECDSA, "old.example.com")
	require.NoError(t, err)
	assert.True(t, exp.Cert.NotAfter.Before(time.Now()))
	fut, err := ca.NotYetValid(ECDSA, "new.example.com")
	require.NoError(t, err)
	assert.True(t, fut.Cert.NotBefore.After(time.Now()))
	cnOnly, err := ca.Issue(CertOptions{NoSANs: true}, "legacy.example.com")
	require.NoError(t, err)
	assert.Empty(t, cnOnly.Cert.DNSNames)
	assert.Equal(t, "legacy.example.com", cnOnly.Cert.Subject.CommonName)
}

func TestWriteFiles(t *testing.T) {
	ca, err := GenerateCA("test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	dir := t.TempDir()
	c, k, err := leaf.WriteFiles(dir, "mail")
	require.NoError(t, err)
	_, err = tls.LoadX509KeyPair(c, k)
	require.NoError(t, err)
	p, err := ca.WriteCA(dir, "ca.pem")
	require.NoError(t, err)
	assert.FileExists(t, p)
}
