package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Prometheus endpoint reports sessions by outcome, handshakes by TLS
// version and SNI match, failures by reason, backend health and
// certificate expiry.
func TestMetrics(t *testing.T) {
	metricsAddr := testnet.FreeAddr(t)
	addrs, roots := demoGatewayWith(t, "-metrics", metricsAddr)

	c, err := imapclient.DialTLS(addrs["imaps"], &imapclient.Options{TLSConfig: clientTLS(roots, "mail.example.net")})
	require.NoError(t, err)
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	require.NoError(t, c.Logout().Wait())
	c.Close()
	// An ALPACA-style ClientHello (HTTP only) is refused and counted.
	_, err = tls.Dial("tcp", addrs["imaps"], &tls.Config{RootCAs: roots, ServerName: "mail.example.com", NextProtos: []string{"http/1.1"}})
	require.Error(t, err)

	// A browser's request on the STARTTLS port (ALPACA): closed, counted.
	hc, err := net.Dial("tcp", addrs["imap"])
	require.NoError(t, err)
	hc.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = bufio.NewReader(hc).ReadString('\n')
	require.NoError(t, err)
	_, err = io.WriteString(hc, "POST /mail HTTP/1.1\r\nHost: mail.example.com\r\n\r\n")
	require.NoError(t, err)
	io.ReadAll(hc)
	hc.Close()

	want := []string{
		`mailedge_client_failures_total{listener="imap",reason="foreign_protocol"} 1`,
		`mailedge_sessions_total{listener="imap",outcome="foreign_protocol"} 1`,
		`mailedge_sessions_total{listener="imaps",outcome="ok"} 1`,
		`mailedge_tls_handshakes_total{cipher="TLS_AES_128_GCM_SHA256",listener="imaps",sni_match="sni",version="TLS 1.3"} 1`,
		`mailedge_client_failures_total{listener="imaps",reason="alpn"} 1`,
		`mailedge_certificate_expiry_timestamp_seconds{issuer="mailedge demo CA",key="ECDSA P-256",name="mail.example.org"}`,
		`mailedge_backend_up{member=`,
		// Where the sessions spent their time (issue 18 §2).
		`mailedge_stage_seconds_count{listener="imaps",result="ok",stage="accepted"} 2`,
		`mailedge_stage_seconds_count{listener="imaps",result="ok",stage="client"} 1`,
		`mailedge_stage_seconds_count{listener="imaps",result="error",stage="client"} 1`,
		`mailedge_stage_seconds_count{listener="imaps",result="ok",stage="backend"} 1`,
		`mailedge_stage_seconds_count{listener="imaps",result="ok",stage="login"} 1`,
		`mailedge_backend_dial_seconds_count{listener="imaps",member="`,
	}
	var body string
	require.Eventually(t, func() bool { // session ends are recorded when the copy ends
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond)
	for _, w := range want {
		assert.Contains(t, body, w)
	}
}
