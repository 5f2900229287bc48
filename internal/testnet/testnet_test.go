package testnet

import (
	"bufio"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServe(t *testing.T) {
	addr := Serve(t, func(c net.Conn) { io.WriteString(c, "hello\r\n") })
	for range 3 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "hello\r\n", line)
		c.Close()
	}
}
