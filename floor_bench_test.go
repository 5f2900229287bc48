package mailedge_test

import (
	"bufio"
	"crypto/tls"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge/internal/gofloor"
	"github.com/mailedge/mailedge/mailtest"
)

// runIMAPS is the client loop of BenchmarkProxyIMAPS and
// BenchmarkGoFloorIMAPS: a full handshake, the greeting, one NOOP, close.
// Where the platform tells, it reports the process's CPU time per
// connection (client, proxy and backend together, so that two proxies
// compare on one client and backend).
func runIMAPS(b *testing.B, addr string, cfg *tls.Config) {
	b.ReportAllocs()
	cpu, ok := cpuTime()
	n := 0
	for b.Loop() {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			b.Fatal(err)
		}
		c.Write([]byte("a NOOP\r\n"))
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "a OK") {
			b.Fatal(line, err)
		}
		c.Close()
		n++
	}
	if end, _ := cpuTime(); ok && n > 0 {
		b.ReportMetric(float64((end-cpu).Microseconds())/float64(n), "cpu-µs/op")
	}
}

// BenchmarkGoFloorIMAPS is BenchmarkProxyIMAPS through the Go floor of
// bench/gofloor instead of Proxy (tls.Listen and two io.Copy, nothing
// else): the difference of the two is what Proxy's layers cost.
func BenchmarkGoFloorIMAPS(b *testing.B) {
	be := fakeIMAP(b)
	ca, _ := mailtest.GenerateCA("bench CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { gofloor.Relay(c, be) })
		}
	})
	defer func() { l.Close(); wg.Wait() }()
	runIMAPS(b, l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"})
}
