package mailedge_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/starttls"
)

// The exchange of BenchmarkPassthrough, sized as a TLS 1.3 session of a
// few IMAP commands is: the tenant's first flight (ServerHello, its
// certificate, Finished), the client's Finished, the greeting, a login and
// its answer, a logout and its answer. The proxy never reads into them.
var passthroughFlights = []struct {
	fromClient bool
	n          int
}{{false, 1400}, {true, 80}, {false, 90}, {true, 60}, {false, 70}, {true, 40}, {false, 80}}

// helloRecord returns the first record a crypto/tls client with cfg sends.
func helloRecord(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, cfg).Handshake()
	}()
	defer func() { a.Close(); b.Close(); <-done }()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		tb.Fatal(err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		tb.Fatal(err)
	}
	return rec
}

// playFlights plays the flights of passthroughFlights on c from one side:
// it writes its own and reads the other's whole.
func playFlights(c net.Conn, client bool, buf []byte) error {
	for _, f := range passthroughFlights {
		var err error
		if f.fromClient == client {
			_, err = c.Write(buf[:f.n])
		} else {
			_, err = io.ReadFull(c, buf[:f.n])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkPassthrough is one whole passed-through connection through
// Proxy: the ClientHello peeked, the tenant dialed, the hello replayed,
// a short TLS-sized exchange copied both ways, and both sides closed. The
// client and the tenant only write and read fixed-size flights, so the
// time is mostly the proxy's (and the loopback's).
func BenchmarkPassthrough(b *testing.B) {
	hello := helloRecord(b, &tls.Config{ServerName: "mail.tenant.example"})
	tenant := testnet.Serve(b, func(c net.Conn) {
		buf := make([]byte, 2048)
		if _, err := io.ReadFull(c, buf[:len(hello)]); err != nil {
			return
		}
		if playFlights(c, false, buf) == nil {
			io.Copy(io.Discard, c) // until the client's close
		}
	})
	tenantPool := &backend.Dialer{Addr: tenant, Protocol: starttls.IMAP, Passthrough: true}
	p := &mailedge.Proxy{
		Server:      &starttls.Server{Protocol: starttls.IMAP, TLSConfig: &tls.Config{}}, // no name is terminated here
		Implicit:    true,
		Backend:     &backend.Dialer{Addr: "127.0.0.1:1", Protocol: starttls.IMAP}, // never dialed
		Passthrough: mailedge.PassthroughNames(map[string]mailedge.Backend{"mail.tenant.example": tenantPool}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Serve(ctx, l); close(done) }()
	defer func() { l.Close(); cancel(); <-done }()
	buf := make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(hello); err != nil {
			b.Fatal(err)
		}
		if err := playFlights(c, true, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
