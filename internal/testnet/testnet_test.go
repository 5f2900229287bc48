package testnet

import (
	"bufio"
	"io"
	"net"
	"strconv"
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

// FreePorts returns distinct ports outside the kernel's ephemeral range
// that a server can bind at once.
func TestFreePorts(t *testing.T) {
	ports, err := FreePorts("127.0.0.1", 20)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := ephemeralRange()
	seen := make(map[int]bool)
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d returned twice", p)
		}
		seen[p] = true
		if p < minPort || (p >= lo && p <= hi) {
			t.Errorf("port %d is below %d or in the ephemeral range %d-%d", p, minPort, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d: %v", p, err)
			continue
		}
		l.Close()
	}
}
