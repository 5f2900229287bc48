package prefixconn

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

func TestPrefixFirst(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := New(a, []byte("early "))
	assert.Equal(t, 6, c.Buffered())
	assert.Same(t, a, c.NetConn())
	go func() { b.Write([]byte("late")); b.Close() }()
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "early late", string(got))
	assert.Zero(t, c.Buffered())
	assert.Error(t, c.CloseWrite(), "a pipe cannot half-close")
}

func TestConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		l, err := nettest.NewLocalListener("tcp")
		if err != nil {
			return nil, nil, nil, err
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() { c, _ := l.Accept(); accepted <- c }()
		d, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		s := <-accepted
		c1, c2 = New(d, nil), s
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}
