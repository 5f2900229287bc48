package sni

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/prefixconn"
)

// clientHello returns the bytes a crypto/tls client with cfg sends first:
// its ClientHello record, written by crypto/tls itself.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	var w helloWriter
	err := tls.Client(&w, cfg).Handshake()
	require.Error(t, err, "the writer answers nothing")
	require.NotEmpty(t, w.buf.Bytes())
	return bytes.Clone(w.buf.Bytes())
}

// helloWriter is a conn that records what is written and reads end of file.
type helloWriter struct {
	net.Conn // nil: any other use panics
	buf      bytes.Buffer
}

func (w *helloWriter) Write(p []byte) (int, error)      { return w.buf.Write(p) }
func (w *helloWriter) Read([]byte) (int, error)         { return 0, io.EOF }
func (w *helloWriter) Close() error                     { return nil }
func (w *helloWriter) SetDeadline(time.Time) error      { return nil }
func (w *helloWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *helloWriter) SetWriteDeadline(time.Time) error { return nil }

// splitRecords rewrites a single handshake record as records carrying at
// most n bytes of its payload each, as a client may send a large
// ClientHello (RFC 8446 §5.1 lets a handshake message span records).
func splitRecords(rec []byte, n int) []byte {
	hdr, payload := rec[:5], rec[5:]
	var out []byte
	for len(payload) > 0 {
		k := min(n, len(payload))
		out = append(out, hdr[0], hdr[1], hdr[2], byte(k>>8), byte(k))
		out = append(out, payload[:k]...)
		payload = payload[k:]
	}
	return out
}

// feed serves in on one end of a pipe, in writes of at most chunk bytes
// (0: all at once), then keeps the pipe open until the test ends; it
// returns the other end.
func feed(t *testing.T, in []byte, chunk int) net.Conn {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(in) > 0 {
			k := len(in)
			if chunk > 0 {
				k = min(chunk, k)
			}
			if _, err := b.Write(in[:k]); err != nil {
				return
			}
			in = in[k:]
		}
	}()
	t.Cleanup(func() { a.Close(); b.Close(); <-done })
	return a
}

func TestPeekClientHello(t *testing.T) {
	leaktest.Check(t)
	pq := clientHello(t, &tls.Config{ServerName: "pq.example.com", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	require.Greater(t, len(pq), 1200, "a post-quantum ClientHello carries an ML-KEM key share")
	tests := []struct {
		name    string
		in      []byte
		chunk   int
		sni     string
		alpn    []string
		version uint16
	}{
		{name: "sni and alpn", in: clientHello(t, &tls.Config{ServerName: "Mail.Example.COM", NextProtos: []string{"imap"}}),
			sni: "Mail.Example.COM", alpn: []string{"imap"}, version: tls.VersionTLS13},
		{name: "no sni", in: clientHello(t, &tls.Config{InsecureSkipVerify: true}), version: tls.VersionTLS13},
		{name: "ip address, no sni", in: clientHello(t, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true}), version: tls.VersionTLS13},
		{name: "tls 1.2 only", in: clientHello(t, &tls.Config{ServerName: "old.example.com", MaxVersion: tls.VersionTLS12}),
			sni: "old.example.com", version: tls.VersionTLS12},
		{name: "post-quantum", in: pq, sni: "pq.example.com", version: tls.VersionTLS13},
		{name: "post-quantum over records of 512 bytes", in: splitRecords(pq, 512), sni: "pq.example.com", version: tls.VersionTLS13},
		{name: "one byte at a time", in: pq, chunk: 1, sni: "pq.example.com", version: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := feed(t, tt.in, tt.chunk)
			var pk Peeker
			hello, raw, err := pk.Peek(context.Background(), conn)
			require.NoError(t, err)
			assert.Equal(t, tt.in, raw, "every byte read is returned for the replay")
			assert.Equal(t, tt.sni, hello.ServerName)
			assert.Equal(t, tt.alpn, hello.SupportedProtos)
			assert.Contains(t, hello.SupportedVersions, tt.version)
			assert.Same(t, conn, hello.Conn)
		})
	}
}

// countingConn reads from a bytes.Reader and counts the reads, as a
// socket would count read(2) calls.
type countingConn struct {
	readerConn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) { c.reads++; return c.readerConn.Read(p) }

// TestPeekReadsAhead: a ClientHello that arrived whole costs one read of
// the conn, however crypto/tls asks for it, and the bytes after it that
// the same read returned are part of the replay.
func TestPeekReadsAhead(t *testing.T) {
	hello := clientHello(t, &tls.Config{ServerName: "pq.example.com", CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"hello", hello},
		{"hello and more", append(bytes.Clone(hello), "early bytes"...)},
		{"hello over records of 300 bytes", splitRecords(hello, 300)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &countingConn{readerConn: readerConn{r: bytes.NewReader(tt.in)}}
			var pk Peeker
			got, raw, err := pk.Peek(context.Background(), c)
			require.NoError(t, err)
			assert.Equal(t, "pq.example.com", got.ServerName)
			assert.Equal(t, tt.in, raw)
			assert.Equal(t, 1, c.reads, "reads of the conn")
		})
	}
}

// TestPeekThenHandshake peeks on a real loopback connection and then
// completes the handshake over the replayed bytes: the client cannot tell.
func TestPeekThenHandshake(t *testing.T) {
	leaktest.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	srvCert := cert(t, "mail.example.com")
	type result struct {
		name string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		var pk Peeker
		hello, raw, err := pk.Peek(context.Background(), c)
		if err != nil {
			done <- result{err: err}
			return
		}
		tc := tls.Server(prefixconn.New(c, raw), &tls.Config{Certificates: []tls.Certificate{*srvCert}})
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("* OK ready\r\n"))
		}
		done <- result{hello.ServerName, err}
	}()
	tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{ServerName: "mail.example.com", RootCAs: ca(t).Pool(),
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}})
	require.NoError(t, err)
	defer tc.Close()
	line := make([]byte, 12)
	_, err = io.ReadFull(tc, line)
	require.NoError(t, err)
	assert.Equal(t, "* OK ready\r\n", string(line))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, "mail.example.com", r.name)
}

func TestPeekRefusals(t *testing.T) {
	leaktest.Check(t)
	hello := clientHello(t, &tls.Config{ServerName: "mail.example.com"})
	big := clientHello(t, &tls.Config{ServerName: "big.example.com", NextProtos: manyProtos(100)})
	require.Greater(t, len(big), DefaultMaxHello)
	tests := []struct {
		name  string
		in    []byte
		pk    Peeker
		want  error // errors.Is
		wantN int   // bytes returned, if not all
	}{
		{name: "imap command", in: []byte("a001 CAPABILITY\r\n"), want: ErrNotTLS},
		{name: "http", in: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), want: ErrNotTLS},
		{name: "smtp", in: []byte("EHLO client.example\r\n"), want: ErrNotTLS},
		{name: "sslv2 hello", in: []byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, want: ErrNotTLS},
		{name: "max bytes", in: hello, pk: Peeker{MaxBytes: 100}, want: ErrHelloTooLarge, wantN: 100},
		{name: "default max bytes", in: big, want: ErrHelloTooLarge, wantN: DefaultMaxHello},
		{name: "record of another type", in: append([]byte{0x17}, hello[1:]...), want: ErrNotTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := feed(t, tt.in, 0)
			got, raw, err := tt.pk.Peek(context.Background(), conn)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, got)
			assert.True(t, bytes.HasPrefix(tt.in, raw), "returned bytes are a prefix of the input")
			if tt.wantN > 0 {
				assert.Len(t, raw, tt.wantN)
			}
		})
	}
}

func manyProtos(n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = strings.Repeat(string(rune('a'+i%26)), 200)
	}
	return p
}

// TestPeekIncomplete covers clients that stop in the middle: the peek ends
// at the deadline, at end of file, or when ctx is cancelled, and returns
// the bytes it got.
func TestPeekIncomplete(t *testing.T) {
	leaktest.Check(t)
	hello := clientHello(t, &tls.Config{ServerName: "mail.example.com"})
	half := hello[:len(hello)/2]

	t.Run("timeout", func(t *testing.T) {
		conn := feed(t, half, 0)
		pk := Peeker{Timeout: 50 * time.Millisecond}
		_, raw, err := pk.Peek(context.Background(), conn)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Equal(t, half, raw)
	})
	t.Run("context deadline", func(t *testing.T) {
		conn := feed(t, nil, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var pk Peeker
		_, raw, err := pk.Peek(ctx, conn)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		assert.Empty(t, raw)
	})
	t.Run("cancelled", func(t *testing.T) {
		conn := feed(t, half, 0)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		var pk Peeker
		_, raw, err := pk.Peek(ctx, conn)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, half, raw)
	})
	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var pk Peeker
		_, raw, err := pk.Peek(ctx, feed(t, hello, 0))
		require.ErrorIs(t, err, context.Canceled)
		assert.Empty(t, raw)
	})
	t.Run("end of file", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		go func() { b.Write(half); b.Close() }()
		var pk Peeker
		_, raw, err := pk.Peek(context.Background(), a)
		require.Error(t, err)
		assert.False(t, errors.Is(err, ErrNotTLS), "a truncated ClientHello is TLS: %v", err)
		assert.Equal(t, half, raw)
	})
	t.Run("deadline cleared", func(t *testing.T) {
		conn := feed(t, append(bytes.Clone(hello), "after"...), 0)
		pk := Peeker{Timeout: 20 * time.Millisecond}
		_, raw, err := pk.Peek(context.Background(), conn)
		require.NoError(t, err)
		rest := make([]byte, 5-(len(raw)-len(hello)))
		time.Sleep(40 * time.Millisecond) // past Timeout: a deadline left set would fail the read
		_, err = io.ReadFull(conn, rest)
		require.NoError(t, err)
		assert.Equal(t, "after", string(raw[len(hello):])+string(rest))
	})
}
