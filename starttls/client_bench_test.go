package starttls

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/mailedge/mailedge/internal/testnet"
)

// benchBackend serves every accepted conn with steps until the listener
// closes; the goroutines are waited for at cleanup.
func benchBackend(b *testing.B, cfg *tls.Config, steps ...step) string {
	b.Helper()
	return testnet.Serve(b, func(c net.Conn) { runScript(c, steps, cfg, nil) })
}

// BenchmarkClientUpgrade measures a full STARTTLS dialogue plus handshake
// per protocol; "tls-only" is a bare handshake on the same loopback, the
// baseline for the overhead of the dialogue.
func BenchmarkClientUpgrade(b *testing.B) {
	pki := newPKI(b)
	cases := []struct {
		name  string
		proto Protocol
		steps []step
	}{
		{"smtp", SMTP, then(smtpOffer, send("220 go\r\n"), startTLS)},
		{"imap", IMAP, then(imapOffer, send("A2 OK go\r\n"), startTLS)},
		{"pop3", POP3, then(pop3Offer, send("+OK go\r\n"), startTLS)},
		{"tls-only", -1, []step{startTLS}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			addr := benchBackend(b, pki.server, bc.steps...)
			c := &Client{Protocol: bc.proto, TLSConfig: pki.client}
			b.ReportAllocs()
			for b.Loop() {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if bc.proto < 0 {
					tc := tls.Client(conn, pki.client)
					if err := tc.Handshake(); err != nil {
						b.Fatal(err)
					}
					tc.Close()
					continue
				}
				up, err := c.Upgrade(context.Background(), conn)
				if err != nil {
					b.Fatal(err)
				}
				up.Conn.Close()
			}
		})
	}
}
