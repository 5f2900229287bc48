package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

func TestParsePostfixMap(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []MapLine
		wantLine int    // for errors: the line reported
		text     string // for errors: part of the message
	}{
		{name: "key then cert", in: "mail.example.com /k.pem /c.pem\n",
			want: []MapLine{{1, "mail.example.com", []string{"/k.pem", "/c.pem"}}}},
		{name: "comments and blank lines", in: "# SNI map\n\n   \n\t# indented comment\nmail.example.com /k /c\n# end\n",
			want: []MapLine{{5, "mail.example.com", []string{"/k", "/c"}}}},
		{name: "commas as in postconf(5)", in: "example.com /rsa.pem,/ecdsa.pem\n",
			want: []MapLine{{1, "example.com", []string{"/rsa.pem", "/ecdsa.pem"}}}},
		{name: "comma and space", in: "example.com /rsa.pem, /ecdsa.pem\n",
			want: []MapLine{{1, "example.com", []string{"/rsa.pem", "/ecdsa.pem"}}}},
		{name: "continuation line", in: "example.com /rsa.pem,\n            /ecdsa.pem\nexample.net /n.pem\n",
			want: []MapLine{{1, "example.com", []string{"/rsa.pem", "/ecdsa.pem"}}, {3, "example.net", []string{"/n.pem"}}}},
		{name: "continuation after comment", in: "example.com /a.pem\n# note\n\t/b.pem\n",
			want: []MapLine{{1, "example.com", []string{"/a.pem", "/b.pem"}}}},
		{name: "CRLF line ends", in: "mail.example.com /k /c\r\nmx.example.com /k2 /c2\r\n",
			want: []MapLine{{1, "mail.example.com", []string{"/k", "/c"}}, {2, "mx.example.com", []string{"/k2", "/c2"}}}},
		{name: "no final newline", in: "mail.example.com /k /c",
			want: []MapLine{{1, "mail.example.com", []string{"/k", "/c"}}}},
		{name: "ancestor and wildcard keys", in: ".example.net /n.pem\n*.example.org /o.pem\n",
			want: []MapLine{{1, ".example.net", []string{"/n.pem"}}, {2, "*.example.org", []string{"/o.pem"}}}},
		{name: "IDN key", in: "bücher.example /b.pem\n",
			want: []MapLine{{1, "bücher.example", []string{"/b.pem"}}}},
		{name: "tabs", in: "mail.example.com\t/k\t/c\n",
			want: []MapLine{{1, "mail.example.com", []string{"/k", "/c"}}}},
		{name: "empty file", in: "", want: nil},
		{name: "only comments", in: "# nothing\n", want: nil},

		{name: "continuation first", in: "  /k.pem\n", wantLine: 1, text: "continuation"},
		{name: "no files", in: "# c\nmail.example.com\n", wantLine: 2, text: "no key and certificate files"},
		{name: "no files, only commas", in: "mail.example.com , ,\n", wantLine: 1, text: "no key and certificate files"},
		{name: "bad host name", in: "ok.example.com /a\nbad_name.example.com /b\n", wantLine: 2, text: "bad_name"},
		{name: "partial wildcard", in: "mail*.example.com /a\n", wantLine: 1, text: "mail*"},
		{name: "IP address key", in: "192.0.2.1 /a\n", wantLine: 1, text: "IP address"},
		{name: "duplicate", in: "mail.example.com /a\n\nMAIL.example.com. /b\n", wantLine: 3, text: "first on line 1"},
		{name: "line too long", in: "mail.example.com /a\nx " + strings.Repeat("y", maxMapLine+1) + "\n", wantLine: 2, text: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePostfixMap(strings.NewReader(tt.in))
			if tt.text == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
				return
			}
			require.Error(t, err)
			var me *MapError
			require.True(t, errors.As(err, &me), "got %T; want *MapError", err)
			assert.Equal(t, tt.wantLine, me.Line)
			assert.Contains(t, err.Error(), tt.text)
		})
	}
}

// writeMap writes an SNI map with the given text into dir and returns its path.
func writeMap(t *testing.T, dir, text string) string {
	t.Helper()
	return writeFile(t, dir, "sni", []byte(text))
}

func TestLoadPostfixMap(t *testing.T) {
	dir := t.TempDir()
	mail := leaf(t, mailtest.ECDSA, "mail.example.com")
	mailRSA := rsaLeaf(t, "mail.example.com")
	wild := leaf(t, mailtest.ECDSA, "*.example.net", "example.net")
	writeFile(t, dir, "mail.key", mail.KeyPEM)
	writeFile(t, dir, "mail.crt", mail.CertPEM)
	// One file with both chains, each key before its certificates.
	writeFile(t, dir, "both.pem", bytes.Join([][]byte{mailRSA.KeyPEM, mailRSA.CertPEM, mail.KeyPEM, mail.CertPEM}, nil))
	writeFile(t, dir, "net.pem", append(append([]byte(nil), wild.KeyPEM...), wild.CertPEM...))
	path := writeMap(t, dir, strings.Join([]string{
		"# hostname key_file cert_file",
		"mail.example.com mail.key " + filepath.Join(dir, "mail.crt"),
		"mx.example.com   both.pem",
		"example.net      net.pem",
		".example.net     net.pem",
		"",
	}, "\n"))
	entries, err := LoadPostfixMap(path)
	require.NoError(t, err)
	require.Len(t, entries, 5, "mx.example.com yields two chains")
	assert.Equal(t, []string{"mx.example.com"}, entries[1].Names, "names come from the map key")
	assert.Equal(t, filepath.Join(dir, "both.pem"), entries[1].Source)

	r := &Resolver{}
	require.NoError(t, r.Set(entries))
	tests := []struct {
		name, server, wantCN, wantKey string
	}{
		{"key file and cert file", "mail.example.com", "mail.example.com", "ECDSA P-256"},
		{"map key names the entry, not the SAN", "mx.example.com", "mail.example.com", "ECDSA P-256"},
		{"exact key", "example.net", "*.example.net", "ECDSA P-256"},
		{"ancestor key, deep name", "a.b.example.net", "*.example.net", "ECDSA P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := r.Lookup(tt.server)
			require.True(t, ok)
			assert.Equal(t, tt.wantCN, cn(c))
			assert.Equal(t, tt.wantKey, keyType(c.Leaf))
		})
	}
	c, err := r.GetCertificate(&tls.ClientHelloInfo{
		ServerName:        "mx.example.com",
		SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes:  []tls.SignatureScheme{tls.PSSWithSHA256},
		CipherSuites:      []uint16{tls.TLS_AES_128_GCM_SHA256},
	})
	require.NoError(t, err)
	assert.Equal(t, "RSA 2048", keyType(c.Leaf), "the RSA chain of a two-chain file serves RSA-only clients")
}

func TestLoadPostfixMapErrors(t *testing.T) {
	dir := t.TempDir()
	mail := leaf(t, mailtest.ECDSA, "mail.example.com")
	other := leaf(t, mailtest.ECDSA, "other.example.com")
	writeFile(t, dir, "mail.key", mail.KeyPEM)
	writeFile(t, dir, "mail.crt", mail.CertPEM)
	writeFile(t, dir, "other.key", other.KeyPEM)
	writeFile(t, dir, "junk.pem", []byte("not pem at all\n"))
	tests := []struct {
		name     string
		text     string
		wantErr  error
		wantLine int
		wantFile string // a file the message must name, besides the map
	}{
		{"missing key file", "ok.example.com mail.key mail.crt\nmail.example.com gone.key mail.crt\n", fs.ErrNotExist, 2, "gone.key"},
		{"cert before key (swapped columns)", "mail.example.com mail.crt mail.key\n", ErrBadPEM, 1, "mail.crt"},
		{"key of another certificate", "# x\nmail.example.com other.key mail.crt\n", ErrKeyMismatch, 2, "other.key"},
		{"garbled PEM", "mail.example.com junk.pem\n", ErrBadPEM, 1, "junk.pem"},
		{"key without certificate", "mail.example.com mail.key\n", ErrBadPEM, 1, "mail.key"},
		{"syntax error", "mail.example.com\n", nil, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeMap(t, dir, tt.text)
			_, err := LoadPostfixMap(path)
			require.Error(t, err)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			var me *MapError
			require.True(t, errors.As(err, &me), "got %T; want *MapError", err)
			assert.Equal(t, path, me.File)
			assert.Equal(t, tt.wantLine, me.Line)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "sni: "+path+":"), "message %q starts with map file and line", msg)
			assert.Contains(t, msg, tt.wantFile)
		})
	}
	_, err := LoadPostfixMap(filepath.Join(dir, "no-such-map"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), "no-such-map")
}
