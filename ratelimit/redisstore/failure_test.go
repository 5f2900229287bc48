package redisstore

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hook records the OnError calls.
type hook struct {
	mu   sync.Mutex
	errs []error
}

func (h *hook) OnError(err error) {
	h.mu.Lock()
	h.errs = append(h.errs, err)
	h.mu.Unlock()
}

// states returns "down" or "up" for each call so far.
func (h *hook) states() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []string
	for _, err := range h.errs {
		if err == nil {
			s = append(s, "up")
		} else {
			s = append(s, "down")
		}
	}
	return s
}

// timed runs f and fails the test if it took longer than max.
func timed(t *testing.T, max time.Duration, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if d := time.Since(start); d > max {
		t.Errorf("%s took %v, more than %v", what, d, max)
	}
}

// TestRedisKilled: Redis dies in the middle of a run. Connections fail
// closed (refused with a temporary error, in the protocols' words),
// messages fail open (counted by the fallback), every call returns within
// Timeout, OnError hears of it once; when Redis is back on the same port,
// the Stores use it again without a restart, and the replicas' in-flight
// counts are rewritten into the new, empty Redis.
func TestRedisKilled(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	var ha, hb hook
	opt := Options{Prefix: "kill:", Connections: FailClosed, Messages: FailOpen, Logins: FailClosed, RetryInterval: 50 * time.Millisecond}
	optA, optB := opt, opt
	optA.OnError, optB.OnError = ha.OnError, hb.OnError
	a := newStore(t, client, optA)
	b := newStore(t, client, optB)
	limits := ratelimit.Limits{InFlight: 10, MessageRate: 3, LoginFailures: 2}
	la := &ratelimit.Limiter{Limits: limits, Store: a}
	lb := &ratelimit.Limiter{Limits: limits, Store: b}
	addr := netip.MustParseAddr("192.0.2.1")
	held, err := la.Admit(ctx, addr)
	require.NoError(t, err)
	_, err = lb.Admit(ctx, addr)
	require.NoError(t, err)
	require.NoError(t, la.AllowMessage(ctx, addr))

	srv.Kill()
	require.NoError(t, lb.AllowMessage(ctx, addr), "b fails open too")
	const bound = time.Second // Timeout is 50 ms; the rest is a loaded CI machine's slack
	timed(t, bound, "Admit with Redis dead", func() {
		_, err = la.Admit(ctx, addr)
	})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.NotErrorIs(t, err, ratelimit.ErrLimited)
	assert.Equal(t, "421 4.3.0 mx.example.com Error: temporary failure, try again later\r\n", ratelimit.SMTPReply(err, "mx.example.com"))
	assert.Equal(t, "* BYE [UNAVAILABLE] Temporary failure, try again later\r\n", ratelimit.IMAPReply(err))
	assert.Equal(t, "-ERR [SYS/TEMP] Temporary failure, try again later\r\n", ratelimit.POP3Reply(err))
	timed(t, bound, "a login with Redis dead", func() {
		err = la.AllowLogin(ctx, addr, "alice")
	})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, la.LoginFailed(ctx, addr, "alice"), ErrUnavailable, "the failure is reported, not counted")

	// Messages fail open: the fallback counts them, the limit holds per
	// replica.
	for i := range 3 {
		timed(t, bound, "a message with Redis dead", func() {
			err = la.AllowMessage(ctx, addr)
		})
		assert.NoError(t, err, "message %d", i)
	}
	var le *ratelimit.LimitError
	require.ErrorAs(t, la.AllowMessage(ctx, addr), &le)
	assert.Equal(t, ratelimit.MessageRate, le.Kind)
	c, err := a.Record(ctx, ratelimit.Request{Key: src, Event: ratelimit.Message, Now: time.Now(), Unit: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, 1, c.InFlight, "a's own connection, from its ledger")
	held.Release() // recorded in the ledger only, for now
	assert.Equal(t, 0, a.Stats().Sources)

	st := a.Stats()
	assert.False(t, st.Up)
	assert.Equal(t, uint64(1), st.Outages)
	assert.NotZero(t, st.Errors)
	assert.NotZero(t, st.Fallbacks)
	assert.Equal(t, uint64(4), st.Unavailable, "Admit, AllowLogin, LoginFailed and the Release (whose error the Limiter ignores)")
	assert.Error(t, st.LastError)
	assert.Equal(t, []string{"down"}, ha.states())
	ha.mu.Lock()
	assert.ErrorIs(t, ha.errs[0], ErrUnavailable)
	ha.mu.Unlock()

	// Redis comes back, empty: each replica renews its lease and rewrites
	// its counts (b's one connection; a has none left).
	srv.Start()
	testnet.WaitFor(t, 10*time.Second, "both replicas use Redis again", func() bool {
		return a.Stats().Up && b.Stats().Up
	})
	testnet.WaitFor(t, 10*time.Second, "b's connection counts again", func() bool {
		c, err := a.Record(ctx, ratelimit.Request{Key: src, Event: ratelimit.Refused, Now: time.Now(), Unit: time.Minute})
		return err == nil && c.InFlight == 1
	})
	_, err = la.Admit(ctx, addr)
	require.NoError(t, err)
	c, err = b.Record(ctx, ratelimit.Request{Key: src, Event: ratelimit.Connect, Now: time.Now(), Unit: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, 3, c.InFlight, "shared counting resumes")
	assert.Equal(t, 2, c.ConnRate, "Redis's rates start over")
	assert.Equal(t, []string{"down", "up"}, ha.states())
	assert.Equal(t, []string{"down", "up"}, hb.states())
	assert.Equal(t, uint64(1), a.Stats().Recoveries)
	assert.NotZero(t, b.Stats().Renewals, "the lease was lost with Redis's data")
}

// TestRedisHangs: Redis stops answering (SIGSTOP) with connections open:
// calls time out after Timeout rather than the client's ReadTimeout, fail
// open from the fallback, and the Store recovers when Redis resumes; the
// in-flight writes that timed out are not counted twice, and are not lost.
func TestRedisHangs(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	var h hook
	s := newStore(t, client, Options{Prefix: "hang:", OnError: h.OnError, RetryInterval: 50 * time.Millisecond})
	other := newStore(t, client, Options{Prefix: "hang:"})
	rec(t, s, ratelimit.Connect)

	srv.Stop()
	timed(t, time.Second, "a Connect with Redis hung", func() {
		c := rec(t, s, ratelimit.Connect)
		assert.Equal(t, 2, c.InFlight, "from the ledger")
		assert.Equal(t, 1, c.ConnRate, "from the fallback")
	})
	st := s.Stats()
	assert.Equal(t, uint64(1), st.Timeouts)
	assert.False(t, st.Up)
	// Down: the next calls do not wait for Redis at all.
	timed(t, 20*time.Millisecond, "a Message once Redis is known down", func() {
		rec(t, s, ratelimit.Message)
	})
	rec(t, s, ratelimit.Disconnect) // the fallback's connection
	srv.Cont()
	resumed := time.Now()
	testnet.WaitFor(t, 10*time.Second, "the Store uses Redis again", func() bool { return s.Stats().Up })
	t.Logf("up again %v after SIGCONT", time.Since(resumed))
	testnet.WaitFor(t, 10*time.Second, "the other replica sees exactly s's one connection", func() bool {
		return inFlight(t, other) == 1
	})
	assert.Equal(t, []string{"down", "up"}, h.states())
	rec(t, s, ratelimit.Disconnect)
	assert.Equal(t, 0, inFlight(t, other))
	assert.Zero(t, s.Stats().Sources)
}

// TestCallerContext: a caller's context that ends first ends the call; it
// is not held against Redis.
func TestCallerContext(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	s := newStore(t, client, Options{Prefix: "ctx:", Messages: FailClosed})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := s.Record(cctx, ratelimit.Request{Key: src, Event: ratelimit.Message, Now: time.Now(), Unit: time.Minute})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	st := s.Stats()
	assert.True(t, st.Up)
	assert.Zero(t, st.Errors)
	assert.Equal(t, 1, rec(t, s, ratelimit.Message).MessageRate)
}

// TestFallbackFull: a fallback that cannot count a connection refuses it
// as the Limiter refuses a full MemoryStore, and the ledger does not keep
// it.
func TestFallbackFull(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	full := ratelimit.StoreFunc(func(_ context.Context, r ratelimit.Request) (ratelimit.Counts, error) {
		return ratelimit.Counts{}, ratelimit.ErrFull
	})
	s := newStore(t, client, Options{Prefix: "full:", Fallback: full})
	srv.Kill()
	l := &ratelimit.Limiter{Store: s}
	_, err := l.Admit(ctx, netip.MustParseAddr("192.0.2.1"))
	var le *ratelimit.LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, ratelimit.Capacity, le.Kind)
	assert.Zero(t, s.Stats().Sources)
}
