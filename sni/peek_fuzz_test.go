package sni

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// readerConn is a conn that reads in and then end of file: a fuzzed client
// cannot make Peek wait.
type readerConn struct {
	net.Conn // nil: any other use panics
	r        io.Reader
}

func (c *readerConn) Read(p []byte) (int, error)      { return c.r.Read(p) }
func (c *readerConn) SetReadDeadline(time.Time) error { return nil }

func FuzzPeek(f *testing.F) {
	hello := clientHello(f, &tls.Config{ServerName: "mail.example.com", NextProtos: []string{"imap"}})
	pq := clientHello(f, &tls.Config{ServerName: "pq.example.com", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	for _, s := range [][]byte{hello, pq, splitRecords(pq, 300), hello[:len(hello)/2], hello[:5], nil,
		[]byte("a001 LOGIN user pass\r\n"), []byte("GET / HTTP/1.0\r\n\r\n"), {0x16, 0x03, 0x01, 0xff, 0xff},
		append(bytes.Clone(hello), "trailing bytes"...)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		pk := Peeker{MaxBytes: 4096}
		conn := &readerConn{r: bytes.NewReader(in)}
		got, raw, err := pk.Peek(context.Background(), conn)
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("replay bytes %x are not a prefix of the input %x", raw, in)
		}
		if len(raw) > pk.MaxBytes {
			t.Fatalf("read %d bytes; MaxBytes is %d", len(raw), pk.MaxBytes)
		}
		if (err == nil) != (got != nil) {
			t.Fatalf("Peek = %v, %v: want a ClientHello or an error", got, err)
		}
		if err == nil && got.Conn != conn {
			t.Fatalf("ClientHelloInfo.Conn is %v; want the peeked conn", got.Conn)
		}
	})
}
