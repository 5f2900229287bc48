package bridge

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// countRunners returns how many goroutines are runners.
func countRunners() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "bridge.(*runners).run(")
}

// TestRunners: the sessions Start runs with a Poller run on runners that
// outlive them, at most maxIdleRunners of them idle once every session
// has ended, and Close makes them return (leaktest).
func TestRunners(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	poller := new(Poller)
	const sessions = 3 * maxIdleRunners
	ended := make(chan error, sessions)
	for range sessions {
		client, proxyC := tcpPair(t)
		proxyS, server := tcpPair(t)
		Start(context.Background(), proxyC, proxyS, Options{Poller: poller, Hooks: Hooks{End: func(_ Stats, err error) { ended <- err }}})
		_, err := client.Write([]byte("ping"))
		require.NoError(t, err)
		got := make([]byte, 4)
		_, err = io.ReadFull(server, got)
		require.NoError(t, err)
		require.NoError(t, server.Close())
		require.NoError(t, client.Close())
	}
	for range sessions {
		assert.NoError(t, <-ended)
	}
	assert.Positive(t, countRunners(), "the directions ran on runners")
	require.Eventually(t, func() bool { return countRunners() <= maxIdleRunners },
		10*time.Second, 5*time.Millisecond, "idle runners are bounded; %d run", countRunners())
	require.NoError(t, poller.Close())
	// A session started after Close runs on goroutines of its own.
	l := startJoin(t, context.Background(), false, Options{Poller: poller})
	require.NoError(t, l.client.Close())
	require.NoError(t, l.backend.Close())
	<-l.done
}
