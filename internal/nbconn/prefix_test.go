package nbconn

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/mailedge/mailedge/internal/prefixconn"
)

// TestWrapPrefix: the prefix comes first, in blocking and non-blocking
// mode; Buffered counts it down; ErrWouldBlock comes only once the prefix
// is spent and the socket is empty.
func TestWrapPrefix(t *testing.T) {
	t.Run("blocking", func(t *testing.T) {
		a, b := tcpPair(t)
		defer b.Close()
		c := WrapPrefix(a, []byte("hello ")).(*Conn)
		defer c.Close()
		assert.Equal(t, 6, c.Buffered())
		_, err := b.Write([]byte("world"))
		require.NoError(t, err)
		got := make([]byte, 11)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, "hello world", string(got))
		assert.Zero(t, c.Buffered())
	})
	t.Run("non-blocking", func(t *testing.T) {
		a, b := tcpPair(t)
		defer b.Close()
		c := WrapPrefix(a, []byte("abcdef")).(*Conn)
		defer c.Close()
		c.SetNonblocking(true)
		buf := make([]byte, 4)
		n, err := c.Read(buf)
		require.NoError(t, err, "the prefix is there without the socket")
		assert.Equal(t, "abcd", string(buf[:n]))
		assert.Equal(t, 2, c.Buffered())
		n, err = c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "ef", string(buf[:n]))
		_, err = c.Read(buf)
		require.ErrorIs(t, err, ErrWouldBlock, "prefix spent, socket empty")
		_, err = b.Write([]byte("gh"))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			n, err := c.Read(buf)
			return err == nil && string(buf[:n]) == "gh"
		}, 5*time.Second, time.Millisecond)
	})
	t.Run("empty prefix", func(t *testing.T) {
		a, b := tcpPair(t)
		defer b.Close()
		c := WrapPrefix(a, nil).(*Conn)
		defer c.Close()
		assert.Same(t, a, c.NetConn())
		assert.Zero(t, c.Buffered())
	})
	t.Run("not a socket", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		pc, ok := WrapPrefix(a, []byte("x")).(*prefixconn.Conn)
		require.True(t, ok, "a pipe is read through prefixconn")
		assert.Equal(t, 1, pc.Buffered())
	})
	t.Run("already wrapped", func(t *testing.T) {
		a, b := tcpPair(t)
		defer b.Close()
		inner := WrapPrefix(a, []byte("1"))
		defer inner.Close()
		outer := WrapPrefix(inner, []byte("2"))
		_, ok := outer.(*prefixconn.Conn)
		require.True(t, ok, "a Conn's prefix is not replaced")
		got := make([]byte, 2)
		_, err := io.ReadFull(outer, got)
		require.NoError(t, err)
		assert.Equal(t, "21", string(got))
	})
}

// TestConformancePrefix runs the net.Conn conformance suite on a conn of
// WrapPrefix whose prefix was spent.
func TestConformancePrefix(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := tcpPair(t)
		c1, c2 = WrapPrefix(a, []byte("x")), b
		if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil {
			return nil, nil, nil, err
		}
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}
