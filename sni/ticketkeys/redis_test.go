package ticketkeys

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/redistest"
)

// go-redis logs every failed dial; the tests that stop Redis count them
// through the Rotators instead.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// redisServer is the test's private redis-server (internal/redistest),
// which it can kill and start again on the same port.
type redisServer struct {
	*redistest.Server
	t *testing.T
}

// startRedis starts a redis-server for t, or skips (see redistest.Need).
func startRedis(t *testing.T) *redisServer { return &redisServer{redistest.Start(t), t} }

// start starts the server again on its port, empty (no persistence).
func (s *redisServer) start() { s.Start() }

// stop kills the server, as a crash would.
func (s *redisServer) stop() { s.Kill() }

// client returns a new client of s, closed when the test ends: each
// replica has its own connection pool, as separate processes would.
func (s *redisServer) client() *redis.Client {
	// No retries: a poll while Redis is down fails at once, so the tests
	// that stop it count failed polls quickly.
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, DialerRetries: 1})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// now returns Redis's clock in unix milliseconds.
func (s *redisServer) now(c *redis.Client) int64 {
	tm, err := c.Time(context.Background()).Result()
	require.NoError(s.t, err)
	return tm.UnixMilli()
}

// dateHead rewrites the creation time of the newest entry of key.
func (s *redisServer) dateHead(c *redis.Client, key string, created int64) {
	ctx := context.Background()
	raw, err := c.LIndex(ctx, key, 0).Bytes()
	require.NoError(s.t, err)
	require.Len(s.t, raw, entryLen)
	binary.BigEndian.PutUint64(raw[:8], uint64(created))
	require.NoError(s.t, c.LSet(ctx, key, 0, raw).Err())
}

// entries returns the raw list.
func (s *redisServer) entries(c *redis.Client, key string) []entry {
	list, err := c.LRange(context.Background(), key, 0, -1).Result()
	require.NoError(s.t, err)
	var out []entry
	for _, v := range list {
		require.Len(s.t, v, entryLen)
		var e entry
		e.created = int64(binary.BigEndian.Uint64([]byte(v[:8])))
		copy(e.key[:], v[8:])
		out = append(out, e)
	}
	return out
}

// TestRedisOneRotationAmongConcurrentPollers: many replicas polling at once
// create one key for an empty list, and one new key when it is due.
func TestRedisOneRotationAmongConcurrentPollers(t *testing.T) {
	rs := startRedis(t)
	key := "test:" + t.Name()
	srcs := make([]*RedisSource, 3)
	for i := range srcs {
		srcs[i] = &RedisSource{Client: rs.client(), Key: key, Rotate: time.Hour}
	}
	pollAll := func() (pushes int64, results [][][32]byte) {
		var wg sync.WaitGroup
		var n atomic.Int64
		results = make([][][32]byte, 30)
		for i := range results {
			wg.Go(func() {
				keys, pushed, err := srcs[i%3].poll(context.Background())
				assert.NoError(t, err)
				if pushed {
					n.Add(1)
				}
				results[i] = keys
			})
		}
		wg.Wait()
		return n.Load(), results
	}

	pushes, results := pollAll()
	assert.EqualValues(t, 1, pushes, "pushes for an empty list")
	for _, r := range results {
		assert.Equal(t, results[0], r, "replicas disagree")
	}
	require.Len(t, results[0], 1)
	first := results[0][0]

	// Not due: nobody pushes.
	pushes, _ = pollAll()
	assert.Zero(t, pushes)

	// Due: exactly one push; the new key only decrypts during its lead.
	c := rs.client()
	rs.dateHead(c, key, rs.now(c)-2*time.Hour.Milliseconds())
	pushes, results = pollAll()
	assert.EqualValues(t, 1, pushes, "pushes for a due key")
	for _, r := range results {
		assert.Equal(t, results[0], r, "replicas disagree")
	}
	require.Len(t, results[0], 2)
	assert.Equal(t, first, results[0][0], "the new key encrypts before its lead")
	assert.Len(t, rs.entries(c, key), 2)
}

// TestRedisGraceAndLead checks trimming to 1+Grace keys (plus the next
// key when there is a Lead), the order of Keys, the list's expiry and the
// lead's end.
func TestRedisGraceAndLead(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
	ctx := context.Background()
	for _, tc := range []struct {
		grace int
		lead  time.Duration
		keep  int
	}{
		{grace: 1, lead: -1, keep: 2},
		{grace: 0, lead: 0, keep: 4}, // the defaults: Grace 2 and a lead
		{grace: 3, lead: -1, keep: 4},
		{grace: 1, lead: time.Minute, keep: 3},
	} {
		t.Run(fmt.Sprintf("grace=%d,lead=%v", tc.grace, tc.lead), func(t *testing.T) {
			const rotate = time.Hour
			key := "test:" + t.Name()
			src := &RedisSource{Client: c, Key: key, Rotate: rotate, Grace: tc.grace, Lead: tc.lead}
			var pushed [][32]byte
			for i := range 8 {
				if i > 0 {
					rs.dateHead(c, key, rs.now(c)-rotate.Milliseconds())
				}
				_, ok, err := src.poll(ctx)
				require.NoError(t, err)
				require.True(t, ok, "poll %d did not rotate a due key", i)
				pushed = append(pushed, rs.entries(c, key)[0].key)
			}
			list := rs.entries(c, key)
			require.Len(t, list, tc.keep)
			for i, e := range list {
				assert.Equal(t, pushed[len(pushed)-1-i], e.key, "entry %d", i)
			}
			ttl, err := c.PTTL(ctx, key).Result()
			require.NoError(t, err)
			assert.Greater(t, ttl, time.Duration(0))
			assert.LessOrEqual(t, ttl, time.Duration(tc.keep+1)*rotate)

			keys, err := src.Keys(ctx)
			require.NoError(t, err)
			require.Len(t, keys, tc.keep)
			newest, rest := list[0].key, list[1:]
			if tc.lead < 0 {
				assert.Equal(t, newest, keys[0], "without a lead the newest key encrypts")
				return
			}
			// During the lead: the previous key encrypts, the newest is second.
			assert.Equal(t, rest[0].key, keys[0])
			assert.Equal(t, newest, keys[1])
			for i, e := range rest[1:] {
				assert.Equal(t, e.key, keys[2+i])
			}
			// After it: the newest encrypts.
			lead := tc.lead
			if lead == 0 {
				lead = maxLead
			}
			rs.dateHead(c, key, rs.now(c)-lead.Milliseconds())
			keys, err = src.Keys(ctx)
			require.NoError(t, err)
			assert.Equal(t, newest, keys[0])
			assert.Equal(t, rest[0].key, keys[1])
		})
	}
}

// TestRedisErrors: configuration errors, a key of another type, malformed
// entries (named by position, never shown), and the defaults.
func TestRedisErrors(t *testing.T) {
	ctx := context.Background()
	_, err := (&RedisSource{}).Keys(ctx)
	assert.ErrorContains(t, err, "Client is nil")
	for _, tc := range []struct {
		src  RedisSource
		want string
	}{
		{RedisSource{Rotate: time.Microsecond}, "under a millisecond"},
		{RedisSource{Grace: -1}, "Grace -1 is negative"},
		{RedisSource{Rotate: time.Minute, Lead: time.Minute}, "Lead 1m0s is not shorter than Rotate 1m0s"},
	} {
		tc.src.Client = redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
		_, err := tc.src.Keys(ctx)
		assert.ErrorContains(t, err, tc.want)
		tc.src.Client.Close()
	}
	rotate, grace, lead, err := (&RedisSource{}).params()
	require.NoError(t, err)
	assert.Equal(t, []any{DefaultRotate, DefaultGrace, maxLead}, []any{rotate, grace, lead})
	_, _, lead, err = (&RedisSource{Rotate: time.Minute}).params()
	require.NoError(t, err)
	assert.Equal(t, 15*time.Second, lead)
	assert.Equal(t, DefaultRedisKey, (&RedisSource{}).key())

	rs := startRedis(t)
	c := rs.client()
	require.NoError(t, c.Set(ctx, "test:string", "x", 0).Err())
	_, err = (&RedisSource{Client: c, Key: "test:string"}).Keys(ctx)
	assert.ErrorContains(t, err, "WRONGTYPE")

	secret := strings.Repeat("s3cr3t", 7)[:40]
	require.NoError(t, c.RPush(ctx, "test:bad-head", "short-secret").Err())
	_, err = (&RedisSource{Client: c, Key: "test:bad-head"}).Keys(ctx)
	assert.ErrorContains(t, err, "malformed newest entry")
	assert.NotContains(t, err.Error(), "secret")

	src := &RedisSource{Client: c, Key: "test:bad-tail"}
	_, err = src.Keys(ctx)
	require.NoError(t, err)
	require.NoError(t, c.RPush(ctx, "test:bad-tail", secret[:39]).Err())
	_, err = src.Keys(ctx)
	assert.ErrorContains(t, err, "entry 1 of the list is not 40 bytes")
	assertNoPiece(t, err.Error(), secret[:39])
}

// TestOrder checks the choice of the encrypting key without Redis.
func TestOrder(t *testing.T) {
	k := func(i byte) [32]byte { return testKey(i) }
	es := []entry{{1000, k(3)}, {500, k(2)}, {0, k(1)}}
	assert.Equal(t, [][32]byte{k(3), k(2), k(1)}, order(1000, es, 0))
	assert.Equal(t, [][32]byte{k(2), k(3), k(1)}, order(1000, es, time.Millisecond))
	assert.Equal(t, [][32]byte{k(3), k(2), k(1)}, order(1100, es, 100*time.Millisecond))
	assert.Equal(t, [][32]byte{k(1), k(3), k(2)}, order(1000, es, 700*time.Millisecond))
	// All younger than the lead (a new list): the oldest encrypts.
	assert.Equal(t, [][32]byte{k(1), k(3), k(2)}, order(1000, es, time.Hour))
	assert.Equal(t, [][32]byte{k(5)}, order(0, []entry{{0, k(5)}}, time.Hour))
}

// countingSource counts a RedisSource's polls, failures and pushes.
type countingSource struct {
	*RedisSource
	polls, fails, pushes atomic.Int64
}

func (s *countingSource) Keys(ctx context.Context) ([][32]byte, error) {
	keys, pushed, err := s.poll(ctx)
	s.polls.Add(1)
	if err != nil {
		s.fails.Add(1)
	}
	if pushed {
		s.pushes.Add(1)
	}
	return keys, err
}

// redisFleet starts three replicas with Rotators over one Redis list, each
// replica with its own client.
func redisFleet(t *testing.T, rs *redisServer, rotate, lead time.Duration) ([]*replica, []*countingSource) {
	srcs := make([]*countingSource, 3)
	for i := range srcs {
		srcs[i] = &countingSource{RedisSource: &RedisSource{Client: rs.client(), Key: "test:" + t.Name(), Rotate: rotate, Lead: lead}}
	}
	fleet := startFleet(t, 3, 5*time.Millisecond, func(i int) Source { return srcs[i] })
	return fleet, srcs
}

// fleetAgrees reports whether every replica encrypts with the same key,
// and which.
func fleetAgrees(fleet []*replica) (string, bool) {
	fp := fleet[0].rot.Status().Fingerprint
	for _, r := range fleet[1:] {
		if r.rot.Status().Fingerprint != fp {
			return "", false
		}
	}
	return fp, fp != ""
}

// TestRedisRotationsAcrossFleet runs three Rotators against one Redis with
// a short Rotate: exactly one key is pushed per period (the keys in the
// list are at least Rotate apart, and the pushes counted by the three
// replicas add up to the keys seen), and a client going round robin over
// the replicas resumes across the rotations.
func TestRedisRotationsAcrossFleet(t *testing.T) {
	rs := startRedis(t)
	const rotate, lead = 700 * time.Millisecond, 250 * time.Millisecond
	fleet, srcs := redisFleet(t, rs, rotate, lead)
	cfg := clientConfig(t, 0)

	seen := map[string]bool{}
	require.Zero(t, roundRobin(t, fleet, cfg, 0, 1))
	resumed, n, start := 0, 0, 1
	for rotations := 0; rotations < 3 || n < 100; {
		if fp, ok := fleetAgrees(fleet); ok && !seen[fp] {
			seen[fp] = true
			rotations = len(seen) - 1
		}
		resumed += roundRobin(t, fleet, cfg, start, 9)
		n += 9
		start += 9
		if n > 20000 {
			t.Fatalf("no three rotations in %d handshakes", n)
		}
	}
	assertShare(t, fmt.Sprintf("Redis, round robin across %d rotations", len(seen)-1), resumed, n)

	var pushes int64
	for _, s := range srcs {
		pushes += s.pushes.Load()
		assert.Zero(t, s.fails.Load())
	}
	c := rs.client()
	list := rs.entries(c, "test:"+t.Name())
	assert.Len(t, list, 4, "Grace 2, the current key and the next")
	for i := 1; i < len(list); i++ {
		assert.GreaterOrEqual(t, list[i-1].created-list[i].created, rotate.Milliseconds(), "two keys within one period")
	}
	// Every key pushed was seen as an encrypting key by the fleet, or is
	// still within its lead, so the pushes add up: one per period.
	assert.GreaterOrEqual(t, pushes, int64(len(seen)))
	assert.LessOrEqual(t, pushes, int64(len(seen))+1)
	t.Logf("%d pushes by 3 replicas polling every 5ms, %d keys seen encrypting", pushes, len(seen))
}

// TestRedisDown stops Redis under a fleet: every replica reports it once,
// keeps its keys and goes on resuming its peers' sessions; Redis back
// (empty), the fleet agrees on a new key, resumes again, and rotates.
func TestRedisDown(t *testing.T) {
	rs := startRedis(t)
	const rotate, lead = 800 * time.Millisecond, 200 * time.Millisecond
	fleet, srcs := redisFleet(t, rs, rotate, lead)
	cfg := clientConfig(t, 0)
	const n = 30

	waitFor(t, "the fleet on one key", func() bool { _, ok := fleetAgrees(fleet); return ok })
	require.Zero(t, roundRobin(t, fleet, cfg, 0, 1))
	assertShare(t, "Redis up", roundRobin(t, fleet, cfg, 1, n), n)

	// Stop Redis. Whatever each replica saw last, including a new key
	// still in its lead, it keeps: the keys that encrypt are in every
	// replica's list.
	errsBefore := make([]int, len(fleet))
	for i, r := range fleet {
		errsBefore[i], _, _ = r.ev.counts()
	}
	rs.stop()
	waitFails := func(what string) {
		t.Helper()
		at := make([]int64, len(srcs))
		for i, s := range srcs {
			at[i] = s.fails.Load()
		}
		waitFor(t, what, func() bool {
			for i, s := range srcs {
				if s.fails.Load() < at[i]+5 {
					return false
				}
			}
			return true
		})
	}
	waitFails("five failed polls on each replica")
	kept := make([]Status, len(fleet))
	for i, r := range fleet {
		kept[i] = r.rot.Status()
		assert.Error(t, kept[i].Err, "replica %d", i)
		assert.NotZero(t, kept[i].Keys, "replica %d", i)
	}
	waitFails("five more failed polls on each replica")
	for i, r := range fleet {
		st := r.rot.Status()
		assert.Equal(t, kept[i].Fingerprint, st.Fingerprint, "replica %d changed keys without Redis", i)
		assert.Equal(t, kept[i].Updated, st.Updated, "replica %d changed keys without Redis", i)
		errs, _, _ := r.ev.counts()
		assert.Equal(t, errsBefore[i]+1, errs, "replica %d: one report per outage", i)
	}
	assertShare(t, "Redis down, last keys kept", roundRobin(t, fleet, cfg, 2, n), n)

	// Redis back, empty: a new list, one key, the fleet on it.
	rs.start()
	waitFor(t, "the fleet on a new key", func() bool {
		fp, ok := fleetAgrees(fleet)
		if !ok || fp == kept[0].Fingerprint {
			return false
		}
		for _, r := range fleet {
			if r.rot.Status().Err != nil {
				return false
			}
		}
		return true
	})
	for i, r := range fleet {
		_, recovers, _ := r.ev.counts()
		assert.GreaterOrEqual(t, recovers, 1, "replica %d: recovery not reported", i)
	}
	// The client's ticket is of the lost list: one full handshake.
	roundRobin(t, fleet, cfg, 0, 1)
	assertShare(t, "Redis back", roundRobin(t, fleet, cfg, 1, n), n)

	after, _ := fleetAgrees(fleet)
	waitFor(t, "a rotation after the restart", func() bool {
		fp, ok := fleetAgrees(fleet)
		return ok && fp != after
	})
	assertShare(t, "Redis back, across a rotation", roundRobin(t, fleet, cfg, 2, n), n)
}
