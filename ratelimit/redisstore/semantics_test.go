package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/ratelimit/storetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

var ctx = context.Background()

// prefixes makes every Store of a test run use keys of its own.
var prefixes atomic.Int64

// newStore returns a Store on client with its own key prefix, closed when
// the test ends.
func newStore(t testing.TB, client redis.Scripter, opt Options) *Store {
	t.Helper()
	if opt.Prefix == "" {
		opt.Prefix = fmt.Sprintf("test%d:", prefixes.Add(1))
	}
	s, err := New(ctx, client, opt)
	require.NoError(t, err)
	require.True(t, s.Stats().Up, "Redis does not answer: %v", s.Stats().LastError)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestScenarios runs the Store conformance suite (ratelimit/storetest) on
// a Store in Redis: every step of package ratelimit's window scenarios must
// have the outcome it has on a MemoryStore.
func TestScenarios(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	storetest.Run(t, func(t *testing.T) ratelimit.Store { return newStore(t, client, Options{}) })
}

// TestSameCounts feeds the same random requests to a MemoryStore and to a
// Store in Redis and compares every Counts they return: the windows'
// edges (one nanosecond either side of Unit and Window), expiry with and
// without connections in flight, failure windows of sources and user
// names, and events for sources never seen.
func TestSameCounts(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	const unit, window = time.Minute, 5 * time.Minute
	keys := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32"),
		netip.MustParsePrefix("2001:db8::/64"), {},
	}
	users := []string{"alice", "bob"}
	events := []ratelimit.Event{
		ratelimit.Connect, ratelimit.Connect, ratelimit.Disconnect, ratelimit.Disconnect,
		ratelimit.ConnectRefused, ratelimit.Message, ratelimit.Message, ratelimit.Recipient,
		ratelimit.Refused, ratelimit.Login, ratelimit.Login, ratelimit.LoginFailed,
	}
	steps := []time.Duration{0, 0, 1, time.Second, 10 * time.Second, unit - 1, unit, unit + 1, window, window + 1, 2 * unit}
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 42))
		mem := new(ratelimit.MemoryStore)
		red := newStore(t, client, Options{})
		now := t0
		for i := range 1500 {
			r := ratelimit.Request{Event: events[rng.IntN(len(events))], Unit: unit}
			if rng.IntN(8) == 0 && (r.Event == ratelimit.Login || r.Event == ratelimit.LoginFailed) {
				r.User = users[rng.IntN(len(users))]
			} else {
				r.Key = keys[rng.IntN(len(keys))]
			}
			if r.Event == ratelimit.LoginFailed {
				r.Window = window
			}
			if rng.IntN(4) == 0 {
				now = now.Add(steps[rng.IntN(len(steps))])
			}
			r.Now = now
			want, err := mem.Record(ctx, r)
			require.NoError(t, err)
			got, err := red.Record(ctx, r)
			require.NoError(t, err)
			if !assert.Equal(t, want, got, "seed %d step %d: %+v at +%v", seed, i, r, now.Sub(t0)) {
				return
			}
		}
		assert.Equal(t, uint64(0), red.Stats().Errors)
	}
}
