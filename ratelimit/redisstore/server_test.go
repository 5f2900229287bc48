package redisstore

import (
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/redistest"
)

// redisServer is the test's private redis-server (internal/redistest).
type redisServer = redistest.Server

// startRedis starts one for the test, or skips (see redistest.Need).
func startRedis(t testing.TB) *redisServer { return redistest.Start(t) }

// waitFor polls cond every 20 ms until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
