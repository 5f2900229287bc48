package testnet

import (
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every 20 ms until it holds, and fails the test with
// what if it does not within: for waits that have no event to wait on
// (a log line, a counter in another process, a key expiring in Redis).
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Clock is a settable clock for tls.Config.Time and the like, safe for
// concurrent use. Its zero value reads the zero time until Set.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the time last Set.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set sets the time Now returns.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
