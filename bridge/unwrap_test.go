package bridge

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// aheadConn is a wrapper like backend.Conn: it may hold bytes read ahead,
// and counts its Close calls. Like backend.Conn it is safe for concurrent
// use: the bridge asks Buffered from both directions.
type aheadConn struct {
	net.Conn
	mu     sync.Mutex
	ahead  []byte
	closed atomic.Int32
}

func (c *aheadConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}
func (c *aheadConn) Buffered() int     { c.mu.Lock(); defer c.mu.Unlock(); return len(c.ahead) }
func (c *aheadConn) NetConn() net.Conn { return c.Conn }
func (c *aheadConn) Close() error      { c.closed.Add(1); return c.Conn.Close() }
func (c *aheadConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func TestJoinUnwrapsEmptyWrapper(t *testing.T) {
	for _, tt := range []struct {
		name  string
		ahead string
	}{
		{"nothing read ahead: socket used directly", ""},
		{"bytes read ahead: delivered first through the wrapper", "* OK early\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			client, proxyC := tcpPair(t)
			proxyS, backend := tcpPair(t)
			w := &aheadConn{Conn: proxyS, ahead: []byte(tt.ahead)}
			if tt.ahead == "" {
				assert.Same(t, proxyS, ioConn(w))
			} else {
				assert.Same(t, w, ioConn(w))
			}
			done := make(chan Stats, 1)
			go func() {
				st, err := Join(context.Background(), proxyC, w, Options{})
				assert.NoError(t, err)
				done <- st
			}()
			_, err := backend.Write([]byte("hello"))
			require.NoError(t, err)
			require.NoError(t, backend.CloseWrite())
			_, err = client.Write([]byte("bye"))
			require.NoError(t, err)
			require.NoError(t, client.CloseWrite())
			got, err := io.ReadAll(client)
			require.NoError(t, err)
			assert.Equal(t, tt.ahead+"hello", string(got))
			got, err = io.ReadAll(backend)
			require.NoError(t, err)
			assert.Equal(t, "bye", string(got))
			st := <-done
			assert.Equal(t, int64(len(tt.ahead)+5), st.ServerToClient)
			assert.Equal(t, int32(1), w.closed.Load(), "closed through the wrapper, once")
			client.Close()
			backend.Close()
		})
	}
}
