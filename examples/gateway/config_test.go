package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.conf")
	require.NoError(t, os.WriteFile(cfg, []byte(`# IMAPS offloaded to Dovecot, as a NetScaler does it
-listen imaps=127.0.0.1:0,proto=imap,tls=implicit,pool=imap

-backend imap=10.0.0.5:143,security=plain,proxy=v2,probe=imap,interval=5s
-strict-sni=true
-limits inflight=15,connrate=60
`), 0o600))
	o, err := parseFlags([]string{"-config", cfg}, io.Discard)
	require.NoError(t, err)
	require.Len(t, o.listens, 1)
	require.Len(t, o.backends, 1)
	assert.Equal(t, "imap", o.listens[0].Proto)
	assert.Equal(t, "v2", o.backends[0].Proxy)
	assert.True(t, o.strictSNI)
	assert.Equal(t, "inflight=15,connrate=60", o.limits)

	bad := filepath.Join(dir, "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("-listen x=127.0.0.1:0,proto=imap\nlisten y\n"), 0o600))
	_, err = parseFlags([]string{"-config", bad}, io.Discard)
	require.ErrorContains(t, err, "bad.conf:2")
	_, err = parseFlags([]string{"-config", filepath.Join(dir, "missing.conf")}, io.Discard)
	require.ErrorContains(t, err, "missing.conf")

	// A bad value, a bad flag and a bad listener are reported at their line.
	for line, text := range map[int]string{
		3: "-grace forever",
		4: "-no-such-flag",
		5: "-listen x=127.0.0.1:0,proto=gopher",
		6: "-backend p=127.0.0.1:1,security=maybe",
	} {
		conf := "# a comment\n-listen ok=127.0.0.1:0,proto=imap,pool=p\n"
		for i := 3; i < line; i++ {
			conf += "\n"
		}
		path := filepath.Join(dir, "lines.conf")
		require.NoError(t, os.WriteFile(path, []byte(conf+text+"\n"), 0o600))
		_, err = parseFlags([]string{"-config", path}, io.Discard)
		assert.ErrorContains(t, err, fmt.Sprintf("lines.conf:%d: ", line), text)
	}
}
