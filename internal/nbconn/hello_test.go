package nbconn

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/mailtest"
)

// record is a TLS record of type typ with payload body.
func record(typ byte, body []byte) []byte {
	r := []byte{typ, 3, 1, byte(len(body) >> 8), byte(len(body))}
	return append(r, body...)
}

// readsThrough writes in to the peer of a WrapServer conn (behind prefix
// as WrapPrefix's, if any), closes it, and returns what each Read of up
// to bufSize bytes returned until end of file.
func readsThrough(t testing.TB, prefix, in []byte, bufSize int) [][]byte {
	t.Helper()
	a, b, err := socketPair()
	require.NoError(t, err)
	c := WrapServer(WrapPrefix(a, prefix))
	defer c.Close()
	go func() {
		b.Write(in)
		b.Close()
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	var reads [][]byte
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			reads = append(reads, bytes.Clone(buf[:n]))
		}
		if err == io.EOF {
			return reads
		}
		require.NoError(t, err)
	}
}

// TestWrapServerFrames: a long first handshake record is served as
// records of helloFragment bytes, one per Read, then what followed it as
// it came; anything else is served unchanged.
func TestWrapServerFrames(t *testing.T) {
	hello := bytes.Repeat([]byte{0xab}, 1000)
	in := append(record(recordTypeHandshake, hello), "after"...)
	for _, pre := range []int{0, 3, 5, 700, len(in)} {
		t.Run(fmt.Sprintf("peeked %d", pre), func(t *testing.T) {
			reads := readsThrough(t, in[:pre], in[pre:], 576)
			require.GreaterOrEqual(t, len(reads), 3)
			assert.Equal(t, record(recordTypeHandshake, hello[:384]), reads[0])
			assert.Equal(t, record(recordTypeHandshake, hello[384:768]), reads[1])
			assert.Equal(t, record(recordTypeHandshake, hello[768:]), reads[2])
			assert.Equal(t, "after", string(bytes.Join(reads[3:], nil)))
		})
	}
	unchanged := map[string][]byte{
		"short hello":        record(recordTypeHandshake, bytes.Repeat([]byte{1}, maxWholeHello)),
		"not a handshake":    []byte("a LOGIN user pass\r\n" + string(bytes.Repeat([]byte{'x'}, 900))),
		"alert":              record(21, bytes.Repeat([]byte{2}, 800)),
		"over 2^14":          record(recordTypeHandshake, bytes.Repeat([]byte{3}, maxPlaintext+1)),
		"truncated":          record(recordTypeHandshake, bytes.Repeat([]byte{4}, 1000))[:700],
		"header only":        record(recordTypeHandshake, bytes.Repeat([]byte{5}, 1000))[:5],
		"shorter than a hdr": {recordTypeHandshake, 3},
	}
	for name, in := range unchanged {
		t.Run(name, func(t *testing.T) {
			reads := readsThrough(t, nil, in, 576)
			assert.Equal(t, in, bytes.Join(reads, nil), "every byte, in order")
		})
	}
}

// TestWrapServerHandshakes: handshakes and a session over a WrapServer
// conn, with the ClientHellos of Go's default (X25519MLKEM768, re-framed),
// of an X25519-only client and of TLS 1.2, also behind a peeked prefix.
func TestWrapServerHandshakes(t *testing.T) {
	ca := mailtest.NewCA(t)
	srvConf := ca.ServerConfig(t, "mail.example.com")
	clients := map[string]*tls.Config{
		"mlkem":   ca.ClientConfig("mail.example.com"),
		"x25519":  ca.ClientConfig("mail.example.com"),
		"tls 1.2": ca.ClientConfig("mail.example.com"),
	}
	clients["x25519"].CurvePreferences = []tls.CurveID{tls.X25519}
	clients["tls 1.2"].MaxVersion = tls.VersionTLS12
	for name, conf := range clients {
		for _, peek := range []int{0, 100} {
			t.Run(fmt.Sprintf("%s peeked %d", name, peek), func(t *testing.T) {
				a, b := tcpPair(t)
				defer b.Close()
				var prefix []byte
				cli := tls.Client(b, conf)
				errc := make(chan error, 1)
				go func() {
					if err := cli.Handshake(); err != nil {
						errc <- err
						return
					}
					_, err := cli.Write([]byte("a NOOP\r\n"))
					errc <- err
				}()
				if peek > 0 {
					prefix = make([]byte, peek)
					_, err := io.ReadFull(a, prefix)
					require.NoError(t, err)
				}
				srv := tls.Server(WrapServer(WrapPrefix(a, prefix)), srvConf)
				defer srv.Close()
				require.NoError(t, srv.SetDeadline(time.Now().Add(10*time.Second)))
				require.NoError(t, srv.Handshake())
				line := make([]byte, 8)
				_, err := io.ReadFull(srv, line)
				require.NoError(t, err)
				assert.Equal(t, "a NOOP\r\n", string(line))
				require.NoError(t, <-errc)
				st := srv.ConnectionState()
				if name == "mlkem" {
					assert.Equal(t, tls.X25519MLKEM768, st.CurveID, "Go's default offers the hybrid")
				}
			})
		}
	}
}

// FuzzWrapServer: whatever the client sends, a WrapServer conn serves the
// same bytes: unchanged, or with its first record re-framed into records
// of the same type and version that carry the same payload in order.
func FuzzWrapServer(f *testing.F) {
	f.Add(append(record(recordTypeHandshake, bytes.Repeat([]byte{1}, 1400)), "x"...), uint16(576), uint8(0))
	f.Add(record(recordTypeHandshake, bytes.Repeat([]byte{1}, 567)), uint16(100), uint8(3))
	f.Add([]byte("a1 CAPABILITY\r\n"), uint16(576), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, bufSize uint16, peek uint8) {
		if bufSize == 0 || len(in) > 3*maxPlaintext {
			return
		}
		pre := min(int(peek), len(in))
		reads := readsThrough(t, in[:pre], in[pre:], int(bufSize))
		out := bytes.Join(reads, nil)
		size := 0
		if len(in) >= recordHeaderLen {
			size = int(binary.BigEndian.Uint16(in[3:5]))
		}
		if len(in) < recordHeaderLen || in[0] != recordTypeHandshake || size <= maxWholeHello ||
			size > maxPlaintext || len(in) < recordHeaderLen+size {
			require.Equal(t, in, out)
			return
		}
		var payload []byte
		for len(payload) < size {
			require.GreaterOrEqual(t, len(out), recordHeaderLen)
			require.Equal(t, in[:3], out[:3], "type and version")
			k := int(binary.BigEndian.Uint16(out[3:5]))
			require.LessOrEqual(t, k, helloFragment)
			require.NotZero(t, k)
			payload = append(payload, out[recordHeaderLen:recordHeaderLen+k]...)
			out = out[recordHeaderLen+k:]
		}
		require.Equal(t, in[recordHeaderLen:recordHeaderLen+size], payload)
		require.Equal(t, in[recordHeaderLen+size:], out)
	})
}

// BenchmarkIdleHello reports the heap each server side of a session
// keeps (socket, wrapper and *tls.Conn) after an X25519MLKEM768 handshake
// and one command, over Wrap and over WrapServer: retained-B/conn.
func BenchmarkIdleHello(b *testing.B) {
	ca := mailtest.NewCA(b)
	srvConf := ca.ServerConfig(b, "mail.example.com")
	cliConf := ca.ClientConfig("mail.example.com")
	for _, wrap := range []struct {
		name string
		fn   func(net.Conn) net.Conn
	}{{"Wrap", Wrap}, {"WrapServer", WrapServer}} {
		b.Run(wrap.name, func(b *testing.B) {
			const n = 200
			var per float64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				servers := make([]*tls.Conn, 0, n)
				for range n {
					a, c := tcpPair(b)
					cli := tls.Client(c, cliConf)
					done := make(chan struct{})
					go func() {
						defer close(done)
						if cli.Handshake() == nil {
							cli.Write([]byte("a NOOP\r\n"))
						}
					}()
					srv := tls.Server(wrap.fn(a), srvConf)
					if _, err := io.ReadFull(srv, make([]byte, 8)); err != nil {
						b.Fatal(err)
					}
					<-done
					cli.Close()
					servers = append(servers, srv)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				per = float64(after.HeapAlloc-before.HeapAlloc) / n
				for _, s := range servers {
					s.Close()
				}
			}
			b.ReportMetric(per, "retained-B/conn")
		})
	}
}
