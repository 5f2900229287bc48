package sni

import (
	"bytes"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

func TestLoadPair(t *testing.T) {
	dir := t.TempDir()
	good := leaf(t, mailtest.ECDSA, "mail.example.com")
	other := leaf(t, mailtest.ECDSA, "other.example.com")
	certFile, keyFile, err := good.WriteFiles(dir, "good")
	require.NoError(t, err)
	leafOnly := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Cert.Raw})
	pkcs1 := rsaLeaf(t, "rsa.example.com")
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00000000000000000000000000000000"}, Bytes: []byte("x")})
	garbled := append(append([]byte(nil), good.CertPEM...), []byte("-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n")...)

	tests := []struct {
		name     string
		certPEM  []byte // nil: use certFile as written
		keyPEM   []byte // nil: use keyFile as written
		missing  string // "cert" or "key": point at a file that does not exist
		wantErr  error
		wantFile string // the file the error must name: "cert", "key" or "both"
	}{
		{name: "good pair"},
		{name: "leaf without chain", certPEM: leafOnly},
		{name: "RSA key", certPEM: pkcs1.CertPEM, keyPEM: pkcs1.KeyPEM},
		{name: "missing cert file", missing: "cert", wantErr: fs.ErrNotExist, wantFile: "cert"},
		{name: "missing key file", missing: "key", wantErr: fs.ErrNotExist, wantFile: "key"},
		{name: "cert file not PEM", certPEM: []byte("hello\n"), wantErr: ErrBadPEM, wantFile: "cert"},
		{name: "key file not PEM", keyPEM: []byte("hello\n"), wantErr: ErrBadPEM, wantFile: "key"},
		{name: "empty cert file", certPEM: []byte{}, wantErr: ErrBadPEM, wantFile: "cert"},
		{name: "garbled block", certPEM: garbled, wantErr: ErrBadPEM, wantFile: "cert"},
		{name: "key file holds a certificate", keyPEM: good.CertPEM, wantErr: ErrBadPEM, wantFile: "key"},
		{name: "cert file holds a key", certPEM: good.KeyPEM, wantErr: ErrBadPEM, wantFile: "cert"},
		{name: "key of another certificate", keyPEM: other.KeyPEM, wantErr: ErrKeyMismatch, wantFile: "both"},
		{name: "RSA key for ECDSA certificate", keyPEM: pkcs1.KeyPEM, wantErr: ErrKeyMismatch, wantFile: "both"},
		{name: "encrypted key", keyPEM: encrypted, wantErr: ErrBadPEM, wantFile: "key"},
		{name: "key bytes garbage", keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), wantErr: ErrBadPEM, wantFile: "key"},
		{name: "certificate bytes garbage", certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), wantErr: ErrBadPEM, wantFile: "cert"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf, kf := certFile, keyFile
			if tt.certPEM != nil {
				cf = writeFile(t, dir, filepath.Join("case", string(rune('a'+i)), "c.pem"), tt.certPEM)
			}
			if tt.keyPEM != nil {
				kf = writeFile(t, dir, filepath.Join("case", string(rune('a'+i)), "k.pem"), tt.keyPEM)
			}
			switch tt.missing {
			case "cert":
				cf = filepath.Join(dir, "nope.crt")
			case "key":
				kf = filepath.Join(dir, "nope.key")
			}
			c, err := LoadPair(cf, kf)
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.NotNil(t, c.Leaf, "Leaf is set")
				assert.NotNil(t, c.PrivateKey)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.wantErr)
			if tt.wantFile == "cert" || tt.wantFile == "both" {
				assert.Contains(t, err.Error(), cf)
			}
			if tt.wantFile == "key" || tt.wantFile == "both" {
				assert.Contains(t, err.Error(), kf)
			}
		})
	}
}

func TestLoadPairChain(t *testing.T) {
	dir := t.TempDir()
	l := leaf(t, mailtest.ECDSA, "mail.example.com")
	certFile, keyFile, err := l.WriteFiles(dir, "mail")
	require.NoError(t, err)
	c, err := LoadPair(certFile, keyFile)
	require.NoError(t, err)
	assert.Len(t, c.Certificate, 2, "leaf and CA from the full chain")
	assert.Equal(t, l.Cert.Raw, c.Certificate[0], "leaf first")
}

// writeLetsEncrypt lays out dir/live/<name>/{fullchain,privkey}.pem plus the
// README certbot puts there.
func writeLetsEncrypt(t *testing.T, dir string, leaves map[string]*mailtest.Leaf) {
	t.Helper()
	writeFile(t, dir, "live/README", []byte("This directory contains your keys and certificates.\n"))
	for name, l := range leaves {
		writeFile(t, dir, filepath.Join("live", name, "fullchain.pem"), l.CertPEM)
		writeFile(t, dir, filepath.Join("live", name, "privkey.pem"), l.KeyPEM)
	}
}

func TestLoadLetsEncrypt(t *testing.T) {
	dir := t.TempDir()
	writeLetsEncrypt(t, dir, map[string]*mailtest.Leaf{
		"mail.example.com": leaf(t, mailtest.ECDSA, "mail.example.com", "imap.example.com"),
		"example.org":      leaf(t, mailtest.ECDSA, "*.example.org"),
	})
	entries, err := LoadLetsEncrypt(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "README skipped")
	assert.Equal(t, filepath.Join(dir, "live", "example.org", "fullchain.pem"), entries[0].Source, "sorted by folder")

	var r Resolver
	require.NoError(t, r.Set(entries))
	for name, want := range map[string]string{
		"imap.example.com": "mail.example.com",
		"smtp.example.org": "*.example.org",
	} {
		c, ok := r.Lookup(name)
		require.True(t, ok, name)
		assert.Equal(t, want, cn(c), "served for the SANs, not the folder name")
	}
}

func TestLoadLetsEncryptErrors(t *testing.T) {
	good := leaf(t, mailtest.ECDSA, "mail.example.com")
	other := leaf(t, mailtest.ECDSA, "other.example.com")
	tests := []struct {
		name    string
		setup   func(dir string)
		wantErr error
		text    string
	}{
		{"no live folder", func(dir string) {}, fs.ErrNotExist, "live"},
		{"missing privkey", func(dir string) {
			writeFile(t, dir, "live/mail/fullchain.pem", good.CertPEM)
		}, fs.ErrNotExist, filepath.Join("mail", "privkey.pem")},
		{"key mismatch", func(dir string) {
			writeFile(t, dir, "live/mail/fullchain.pem", good.CertPEM)
			writeFile(t, dir, "live/mail/privkey.pem", other.KeyPEM)
		}, ErrKeyMismatch, filepath.Join("mail", "privkey.pem")},
		{"garbled fullchain", func(dir string) {
			writeFile(t, dir, "live/mail/fullchain.pem", bytes.ToUpper(good.CertPEM[:200]))
			writeFile(t, dir, "live/mail/privkey.pem", good.KeyPEM)
		}, ErrBadPEM, filepath.Join("mail", "fullchain.pem")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(dir)
			_, err := LoadLetsEncrypt(dir)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.wantErr)
			assert.Contains(t, err.Error(), tt.text)
		})
	}
}

func TestLoadLetsEncryptFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	l := leaf(t, mailtest.ECDSA, "mail.example.com")
	// certbot's real layout: live/<name>/*.pem link to archive/<name>/*N.pem.
	writeFile(t, dir, "archive/mail/fullchain1.pem", l.CertPEM)
	writeFile(t, dir, "archive/mail/privkey1.pem", l.KeyPEM)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "live", "mail"), 0o755))
	require.NoError(t, os.Symlink("../../archive/mail/fullchain1.pem", filepath.Join(dir, "live/mail/fullchain.pem")))
	require.NoError(t, os.Symlink("../../archive/mail/privkey1.pem", filepath.Join(dir, "live/mail/privkey.pem")))
	entries, err := LoadLetsEncrypt(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "mail.example.com", entries[0].Certificate.Leaf.Subject.CommonName)
}
