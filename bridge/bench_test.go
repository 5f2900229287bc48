package bridge

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

const benchChunk = 32 << 10

// benchStream writes b.N chunks into w while r is drained, and waits for
// the reader to see them all.
func benchStream(b *testing.B, w, r net.Conn) {
	b.Helper()
	done := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, r); done <- n }()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	w.(interface{ CloseWrite() error }).CloseWrite()
	if n := <-done; n != int64(b.N)*benchChunk {
		b.Fatalf("read %d bytes; want %d", n, int64(b.N)*benchChunk)
	}
	b.StopTimer()
}

// BenchmarkDirectTCP is the baseline: one loopback connection, no proxy.
func BenchmarkDirectTCP(b *testing.B) {
	w, r := tcpPair(b)
	defer w.Close()
	defer r.Close()
	benchStream(b, w, r)
}

// BenchmarkJoinTCP streams through Join with plain TCP on both legs
// (splice on Linux).
func BenchmarkJoinTCP(b *testing.B) {
	benchJoin(b, false, Options{})
}

// BenchmarkJoinTCPBuffered streams through Join with the SMTP inspector
// forced into BDAT chunk mode, so bytes are read into pooled buffers.
func BenchmarkJoinTCPBuffered(b *testing.B) {
	benchJoin(b, false, Options{SMTP: &SMTPInspector{}}, "BDAT 999999999999 LAST\r\n")
}

// BenchmarkDirectTLS is the TLS baseline: one loopback TLS connection.
func BenchmarkDirectTLS(b *testing.B) {
	srv, cli := tlsConfigs(b)
	w, r := tlsPair(b, srv, cli)
	defer w.Close()
	defer r.Close()
	benchStream(b, w, r)
}

// BenchmarkJoinTLS streams through Join with TLS on both legs: the proxy
// decrypts and encrypts again.
func BenchmarkJoinTLS(b *testing.B) {
	benchJoin(b, true, Options{})
}

func benchJoin(b *testing.B, useTLS bool, opt Options, preamble ...string) {
	l := startJoin(b, context.Background(), useTLS, opt)
	for _, p := range preamble {
		_, err := l.client.Write([]byte(p))
		require.NoError(b, err)
		_, err = io.ReadFull(l.backend, make([]byte, len(p)))
		require.NoError(b, err)
	}
	benchStream(b, l.client, l.backend)
	l.backend.Close()
	<-l.done
}

// BenchmarkIdleSessions holds many idle bridged sessions and reports the
// heap and stack bytes each costs, with and without Join (the baseline is
// the same four loopback sockets per session with nothing copying).
func BenchmarkIdleSessions(b *testing.B) {
	for _, tc := range []struct {
		name string
		tls  bool
		n    int
	}{{"tcp", false, 2000}, {"tls", true, 500}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				base := idleBytes(b, tc.n, tc.tls, false)
				joined := idleBytes(b, tc.n, tc.tls, true)
				b.ReportMetric(joined, "bytes/session")
				b.ReportMetric(base, "baseline-bytes/session")
				b.ReportMetric(joined-base, "join-bytes/session")
			}
		})
	}
}

// idleBytes opens n sessions, moves 4 KiB each way through each (through
// Join, or over each leg for the baseline) so every buffer has been used,
// lets them go idle, and returns the growth of HeapInuse+StackInuse per
// session.
func idleBytes(b *testing.B, n int, useTLS bool, join bool) float64 {
	var srv, cli *tls.Config
	if useTLS {
		srv, cli = tlsConfigs(b)
	}
	pair := func() (net.Conn, net.Conn) {
		if useTLS {
			return tlsPair(b, srv, cli)
		}
		return tcpPair(b)
	}
	before := memInUse()
	type sess struct {
		client, proxyC, proxyS, backend net.Conn
		done                            chan struct{}
	}
	all := make([]*sess, n)
	msg := make([]byte, 4<<10)
	for i := range all {
		s := &sess{done: make(chan struct{})}
		s.client, s.proxyC = pair()
		s.proxyS, s.backend = pair()
		pairs := [][2]net.Conn{{s.client, s.proxyC}, {s.proxyC, s.client}, {s.proxyS, s.backend}, {s.backend, s.proxyS}}
		if join {
			go func() { Join(context.Background(), s.proxyC, s.proxyS, Options{IdleTimeout: -1}); close(s.done) }()
			pairs = [][2]net.Conn{{s.client, s.backend}, {s.backend, s.client}}
		}
		{
			for _, d := range pairs {
				_, err := d[0].Write(msg)
				require.NoError(b, err)
				_, err = io.ReadFull(d[1], msg)
				require.NoError(b, err)
			}
		}
		all[i] = s
	}
	after := memInUse()
	for _, s := range all {
		s.client.Close()
		s.backend.Close()
		if join {
			<-s.done
		} else {
			s.proxyC.Close()
			s.proxyS.Close()
		}
	}
	return float64(after-before) / float64(n)
}

func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
