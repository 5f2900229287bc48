package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadableCounts: the readiness peek reports every byte queued (a
// wrong FIONREAD number made it 1, and every splice move one byte), end of
// file as 0.
func TestReadableCounts(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	rc, err := b.SyscallConn()
	require.NoError(t, err)
	_, ready, err := peekReadable(rc)
	require.NoError(t, err)
	assert.False(t, ready, "nothing queued yet")

	msg := make([]byte, 5000)
	_, err = a.Write(msg)
	require.NoError(t, err)
	// Wait until the whole write is queued: loopback delivers it as one
	// segment, but the count is read in a separate system call.
	var avail int
	for avail < len(msg) {
		avail, err = waitReadable(rc)
		require.NoError(t, err)
	}
	assert.Equal(t, len(msg), avail)

	drain := make([]byte, len(msg))
	_, err = b.Read(drain)
	require.NoError(t, err)
	require.NoError(t, a.CloseWrite())
	avail, err = waitReadable(rc)
	require.NoError(t, err)
	assert.Zero(t, avail, "end of file")
}
