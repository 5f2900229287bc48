package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// serveMail runs a starttls.Server on a loopback listener until the test ends.
func serveMail(t *testing.T, srv *starttls.Server, implicit bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				serve := srv.Serve
				if implicit {
					serve = srv.ServeTLS
				}
				if s, err := serve(ctx, c); err == nil {
					io.Copy(io.Discard, s.Conn) // until the checker closes
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestMailcheck(t *testing.T) {
	ca, err := mailtest.GenerateCA("check CA")
	require.NoError(t, err)
	good, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com", "*.example.net")
	require.NoError(t, err)
	soon, err := ca.Issue(mailtest.CertOptions{NotAfter: time.Now().Add(5 * 24 * time.Hour)}, "soon.example.org")
	require.NoError(t, err)
	var res sni.Resolver
	require.NoError(t, res.AddDefault(&good.TLS))
	require.NoError(t, res.Add(&soon.TLS))
	cfg := res.TLSConfig(sni.Policy{})
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir, "ca.pem")
	require.NoError(t, err)

	imaps := serveMail(t, &starttls.Server{Protocol: starttls.IMAP, TLSConfig: cfg}, true)
	sub := serveMail(t, &starttls.Server{Protocol: starttls.SMTP, TLSConfig: cfg}, false)
	pop := serveMail(t, &starttls.Server{Protocol: starttls.POP3, TLSConfig: cfg}, false)

	t.Run("all good", func(t *testing.T) {
		var out bytes.Buffer
		code := run([]string{"-ca", caFile, "-names", "mail.example.com,imap.example.net", "-json",
			"-target", imaps + "/imaps", "-target", sub + "/smtp+starttls", "-target", pop + "/pop3+starttls"}, &out, io.Discard)
		var rs []result
		require.NoError(t, json.Unmarshal(out.Bytes(), &rs), out.String())
		require.Len(t, rs, 6)
		for _, r := range rs {
			assert.True(t, r.OK, "%+v", r)
			assert.True(t, r.Verified)
			assert.True(t, r.NameMatch)
			assert.Equal(t, "TLS 1.3", r.TLSVersion)
		}
		assert.Equal(t, 0, code)
	})
	t.Run("expiring, unknown name and untrusted CA fail", func(t *testing.T) {
		var out bytes.Buffer
		code := run([]string{"-ca", caFile, "-names", "soon.example.org,other.example", "-json", "-target", imaps + "/imaps"}, &out, io.Discard)
		assert.Equal(t, 1, code)
		var rs []result
		require.NoError(t, json.Unmarshal(out.Bytes(), &rs))
		require.Len(t, rs, 2)
		assert.Contains(t, rs[0].Error, "expires in 4 days")
		assert.False(t, rs[1].NameMatch, "unknown name gets the default certificate, which does not match")

		other, err := mailtest.GenerateCA("other CA")
		require.NoError(t, err)
		otherFile, err := other.WriteCA(dir, "other.pem")
		require.NoError(t, err)
		out.Reset()
		code = run([]string{"-ca", otherFile, "-names", "mail.example.com", "-target", imaps + "/imaps"}, &out, io.Discard)
		assert.Equal(t, 1, code)
		assert.Contains(t, out.String(), "FAIL")
	})
	t.Run("names from an SNI map", func(t *testing.T) {
		mapFile := filepath.Join(dir, "sni")
		require.NoError(t, os.WriteFile(mapFile, []byte("mail.example.com a.key a.crt\n.example.net b.key b.crt\n"), 0o600))
		var out bytes.Buffer
		code := run([]string{"-ca", caFile, "-sni-map", mapFile, "-target", imaps + "/imaps"}, &out, io.Discard)
		assert.Equal(t, 0, code, out.String())
		assert.Contains(t, out.String(), "mailcheck.example.net")
	})
	t.Run("usage errors", func(t *testing.T) {
		var stderr bytes.Buffer
		assert.Equal(t, 2, run([]string{"-names", "x", "-target", "127.0.0.1:1/http"}, io.Discard, &stderr))
		assert.Contains(t, stderr.String(), `-target "127.0.0.1:1/http"`)
	})
}
