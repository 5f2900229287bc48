package sni

import (
	"bytes"
	"context"
	"crypto/tls"
	"testing"
)

// BenchmarkPeek peeks a post-quantum ClientHello (about 1.3 KB) that
// arrived whole: the per-connection cost of routing by SNI before any
// handshake, without the socket.
func BenchmarkPeek(b *testing.B) {
	hello := clientHello(b, &tls.Config{ServerName: "pq.example.com", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	var pk Peeker
	ctx := context.Background()
	var r bytes.Reader
	c := &countingConn{}
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(hello)
		c.readerConn.r, c.reads = &r, 0
		if _, _, err := pk.Peek(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.reads), "reads/op")
}
