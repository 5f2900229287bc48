package tlsname

import (
	"crypto/tls"
	"testing"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Version(tls.VersionTLS13), "TLSv1.3"},
		{Version(tls.VersionTLS12), "TLSv1.2"},
		{Version(tls.VersionTLS10), "TLSv1"},
		{Version(0x0999), tls.VersionName(0x0999)},
		{Cipher(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), "ECDHE-RSA-AES128-GCM-SHA256"},
		{Cipher(tls.TLS_RSA_WITH_AES_256_CBC_SHA), "AES256-SHA"},
		{Cipher(tls.TLS_AES_128_GCM_SHA256), "TLS_AES_128_GCM_SHA256"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
