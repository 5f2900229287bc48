package main

import (
	"slices"
	"testing"
)

// FuzzTLSPolicyFlags: the parsers of -tls-ciphers, -tls-min,
// -ticket-lifetime, -timeouts and the -backend checker options take any
// text without panicking, and a cipher list written back reads the same.
func FuzzTLSPolicyFlags(f *testing.F) {
	for _, s := range []string{"ECDHE-ECDSA-AES128-GCM-SHA256:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"imap:pretls=60s,handshake=15s,idle=31m", "smtp:idle=off", "20%", "0.1", "1.3", "12h", "off", ",:,", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ids, err := parseCiphers(s); err == nil {
			c := cipherList(ids)
			back, err := parseCiphers(c.String())
			if err != nil || !slices.Equal(back, ids) {
				t.Fatalf("%q: wrote %q, read back %v, %v", s, c.String(), back, err)
			}
		}
		_, _, _ = parseTimeouts(s)
		if j, err := parseJitter(s); err == nil && !(j == -1 || (j > 0 && j <= 0.5)) {
			t.Fatalf("jitter %q: %v out of range", s, j)
		}
		var v tlsVersion
		_ = v.Set(s)
		var l ticketLifetime
		_ = l.Set(s)
		b := backendSpec{Probe: "imap"}
		_ = parseCheckOptions(&b, map[string]string{"rise": s, "jitter": s, "mailbox": s, "identity": s})
	})
}
