package mailedge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// fakeIMAP greets and answers every tagged line with OK until the
// benchmark ends.
func fakeIMAP(b *testing.B) string {
	return testnet.Serve(b, func(c net.Conn) {
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1] ready\r\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(line, " ")
			c.Write([]byte(tag + " OK done\r\n"))
		}
	})
}

// BenchmarkProxyIMAPS is one whole implicit-TLS IMAP connection through
// Proxy: TLS handshake, backend dial and greeting, handover, one command,
// close. The client's side of the handshake runs in the same process.
func BenchmarkProxyIMAPS(b *testing.B) {
	be := fakeIMAP(b)
	ca, _ := mailtest.GenerateCA("bench CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	var certs sni.Resolver
	certs.AddDefault(&leaf.TLS)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: certs.TLSConfig(sni.Policy{})},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: be, Protocol: starttls.IMAP},
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Serve(ctx, l); close(done) }()
	defer func() { l.Close(); cancel(); <-done }()
	runIMAPS(b, l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"})
}

// BenchmarkTLSHandshakeBaseline is the same client against a bare
// tls.Server that writes one line: the floor Proxy is measured against.
func BenchmarkTLSHandshakeBaseline(b *testing.B) {
	ca, _ := mailtest.GenerateCA("bench CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	l, _ := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("* OK ready\r\n"))
			c.Close()
		}
	}()
	defer func() { l.Close(); wg.Wait() }()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"}
	b.ReportAllocs()
	for b.Loop() {
		c, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		bufio.NewReader(c).ReadString('\n')
		c.Close()
	}
}
