package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a Store that records the requests it gets and answers from
// a MemoryStore, or with err if set.
type recorder struct {
	mu   sync.Mutex
	reqs []Request
	mem  MemoryStore
	err  func(Request) error
}

func (r *recorder) Record(ctx context.Context, req Request) (Counts, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	if r.err != nil {
		if err := r.err(req); err != nil {
			return Counts{}, err
		}
	}
	return r.mem.Record(ctx, req)
}

func (r *recorder) take() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := r.reqs
	r.reqs = nil
	return reqs
}

// TestLoginRequests pins what the Limiter asks of a Store, which a shared
// Store (Redis) implements.
func TestLoginRequests(t *testing.T) {
	a := netip.MustParseAddr("::ffff:192.0.2.1")
	key := netip.MustParsePrefix("192.0.2.1/32")
	long := strings.Repeat("A", 300)
	tests := []struct {
		name string
		lim  Limits
		do   func(l *Limiter) error
		want []Request
	}{
		{
			name: "AllowLogin counts the source and reads the user",
			lim:  Limits{UserLoginFailures: 3},
			do:   func(l *Limiter) error { return l.AllowLoginAt(ctx, a, " Alice@Example.COM ", t0) },
			want: []Request{
				{Key: key, Event: Login, Now: t0, Unit: time.Minute},
				{User: "alice@example.com", Event: Login, Now: t0, Unit: time.Minute},
			},
		},
		{
			name: "without UserLoginFailures the user is not looked up",
			do:   func(l *Limiter) error { return l.AllowLoginAt(ctx, a, "alice", t0) },
			want: []Request{{Key: key, Event: Login, Now: t0, Unit: time.Minute}},
		},
		{
			name: "LoginFailed counts the source and the user in the failure window",
			lim:  Limits{UserLoginFailures: 3, Lockout: time.Hour, Unit: 10 * time.Second},
			do:   func(l *Limiter) error { return l.LoginFailedAt(ctx, a, "Alice", t0) },
			want: []Request{
				{Key: key, Event: LoginFailed, Now: t0, Unit: 10 * time.Second, Window: time.Hour},
				{User: "alice", Event: LoginFailed, Now: t0, Unit: 10 * time.Second, Window: time.Hour},
			},
		},
		{
			name: "LoginFailed counts the source even without limits; the default window",
			do:   func(l *Limiter) error { return l.LoginFailedAt(ctx, a, "alice", t0) },
			want: []Request{{Key: key, Event: LoginFailed, Now: t0, Unit: time.Minute, Window: 15 * time.Minute}},
		},
		{
			name: "a long user name is counted under a digest",
			lim:  Limits{UserLoginFailures: 3},
			do:   func(l *Limiter) error { return l.LoginFailedAt(ctx, a, long, t0) },
			want: []Request{
				{Key: key, Event: LoginFailed, Now: t0, Unit: time.Minute, Window: 15 * time.Minute},
				{User: userKey(strings.ToLower(long)), Event: LoginFailed, Now: t0, Unit: time.Minute, Window: 15 * time.Minute},
			},
		},
		{
			name: "a refused login is counted as a refusal of the source",
			lim:  Limits{LoginFailures: 1},
			do: func(l *Limiter) error {
				require.NoError(t, l.LoginFailedAt(ctx, a, "", t0))
				return l.AllowLoginAt(ctx, a, "", t0)
			},
			want: []Request{
				{Key: key, Event: LoginFailed, Now: t0, Unit: time.Minute, Window: 15 * time.Minute},
				{Key: key, Event: Login, Now: t0, Unit: time.Minute},
				{Key: key, Event: Refused, Now: t0, Unit: time.Minute},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			l := &Limiter{Limits: tt.lim, Store: rec}
			err := tt.do(l)
			if tt.lim.LoginFailures > 0 {
				assert.ErrorIs(t, err, ErrLimited)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tt.want, rec.take())
		})
	}
	assert.Len(t, userKey(long), len("sha256:")+64)
	assert.Equal(t, strings.Repeat("x", 256), userKey(strings.Repeat("X", 256)), "256 bytes are kept as they are")
}

func TestLoginDenied(t *testing.T) {
	acl, err := ParseACL("deny 192.0.2.0/24")
	require.NoError(t, err)
	rec := &recorder{}
	l := &Limiter{ACL: acl, Store: rec, Limits: Limits{AuthRate: 1, LoginFailures: 1, UserLoginFailures: 1}}
	a := netip.MustParseAddr("192.0.2.1")
	err = l.AllowLoginAt(ctx, a, "alice", t0)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, &LimitError{Kind: Denied, Addr: a}, le)
	assert.ErrorIs(t, err, ErrDenied)
	assert.Empty(t, rec.take(), "a denied source reaches no Store")

	// A denied source is never tracked; the user name still is.
	require.NoError(t, l.LoginFailedAt(ctx, a, "alice", t0))
	assert.Equal(t, []Request{{User: "alice", Event: LoginFailed, Now: t0, Unit: time.Minute, Window: 15 * time.Minute}}, rec.take())
	assert.Equal(t, uint64(1), l.Stats().Refused[Denied])
}

func TestLoginStoreErrors(t *testing.T) {
	boom := errors.New("boom")
	a := netip.MustParseAddr("192.0.2.1")
	trusted := netip.MustParseAddr("10.0.0.1")
	limits := Limits{AuthRate: 10, LoginFailures: 3, UserLoginFailures: 3}
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

	t.Run("a failing Store refuses the login, as Admit does", func(t *testing.T) {
		rec := &recorder{err: func(Request) error { return boom }}
		l := &Limiter{Limits: limits, Trusted: nets, Store: rec}
		err := l.AllowLoginAt(ctx, a, "alice", t0)
		assert.ErrorIs(t, err, boom)
		assert.NotErrorIs(t, err, ErrLimited)
		assert.Equal(t, "421 4.3.0 Error: temporary failure, try again later\r\n", SMTPReply(err, ""))
		assert.Equal(t, "a1 NO [UNAVAILABLE] Temporary failure, try again later", "a1 NO "+IMAPText(err))
		assert.ErrorIs(t, l.AllowLoginAt(ctx, trusted, "alice", t0), boom, "the user lookup of a trusted source too")
		assert.NoError(t, l.AllowLoginAt(ctx, trusted, "", t0), "a trusted source without a user reaches no Store")
		assert.Len(t, rec.take(), 2)
		tot := l.Stats()
		assert.Empty(t, tot.Refused, "a failing Store is not a refusal")
		assert.Equal(t, uint64(1), tot.Logins)
	})

	t.Run("LoginFailed reports the failure and still tries the user", func(t *testing.T) {
		rec := &recorder{err: func(r Request) error {
			if r.User == "" {
				return boom
			}
			return nil
		}}
		l := &Limiter{Limits: limits, Store: rec}
		err := l.LoginFailedAt(ctx, a, "alice", t0)
		assert.ErrorIs(t, err, boom)
		assert.NotErrorIs(t, err, ErrLimited)
		assert.Len(t, rec.take(), 2)
		c, err := rec.mem.Record(ctx, Request{User: "alice", Event: Login, Now: t0, Unit: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, 1, c.LoginFailures, "the user's failure was counted")
	})

	t.Run("a full Store refuses a login with Capacity and reports a failure", func(t *testing.T) {
		l := &Limiter{Limits: limits, Store: StoreFunc(func(context.Context, Request) (Counts, error) { return Counts{}, ErrFull })}
		err := l.AllowLoginAt(ctx, a, "alice", t0)
		var le *LimitError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, Capacity, le.Kind)
		err = l.LoginFailedAt(ctx, a, "alice", t0)
		assert.ErrorIs(t, err, ErrFull)
		assert.False(t, errors.As(err, &le), "LoginFailed refuses nothing")
		assert.Equal(t, map[Kind]uint64{Capacity: 1}, l.Stats().Refused)
	})

	t.Run("a MemoryStore full of connections in flight", func(t *testing.T) {
		l := &Limiter{MaxSources: 16, Limits: limits}
		for i := range 16 {
			_, err := l.AdmitAt(ctx, v4(i), t0)
			require.NoError(t, err)
		}
		err := l.LoginFailedAt(ctx, v4(3), "alice", t0)
		assert.ErrorIs(t, err, ErrFull, "no room for the failures of a known source or of a user")
		err = l.AllowLoginAt(ctx, v4(3), "alice", t0)
		assert.NoError(t, err, "a known source may log in; an untracked user has no failures")
		var le *LimitError
		require.ErrorAs(t, l.AllowLoginAt(ctx, v4(99), "", t0), &le)
		assert.Equal(t, Capacity, le.Kind)
	})
}

// TestStoreGetsContextOnLogin: the caller's context reaches the Store from
// the login calls too.
func TestStoreGetsContextOnLogin(t *testing.T) {
	type key struct{}
	var seen []any
	l := &Limiter{Limits: Limits{UserLoginFailures: 1}, Store: StoreFunc(func(ctx context.Context, r Request) (Counts, error) {
		seen = append(seen, ctx.Value(key{}))
		return Counts{}, nil
	})}
	ctx := context.WithValue(context.Background(), key{}, "call")
	a := netip.MustParseAddr("192.0.2.1")
	require.NoError(t, l.AllowLoginAt(ctx, a, "alice", t0))
	require.NoError(t, l.LoginFailedAt(ctx, a, "alice", t0))
	assert.Equal(t, []any{"call", "call", "call", "call"}, seen)
}

func TestLoginLimitError(t *testing.T) {
	l := &Limiter{Limits: Limits{LoginFailures: 2, UserLoginFailures: 2}}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range 2 {
		require.NoError(t, l.LoginFailedAt(ctx, a, "Alice", t0))
	}
	err := l.AllowLoginAt(ctx, a, "Alice", t0)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, &LimitError{Kind: Lockout, Addr: a, Source: netip.MustParsePrefix("192.0.2.1/32"),
		User: "alice", Limit: 2, Count: 2}, le)
	assert.ErrorIs(t, err, ErrLimited)
	assert.True(t, le.Temporary())
	assert.Equal(t, "ratelimit: login locked out for 192.0.2.1 after 2 failed logins, limit 2", err.Error())

	err = l.AllowLoginAt(ctx, b, "alice\r\n", t0)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, &LimitError{Kind: UserLockout, Addr: b, Source: netip.MustParsePrefix("192.0.2.2/32"),
		User: "alice", Limit: 2, Count: 2}, le)
	assert.Equal(t, `ratelimit: login locked out for user "alice" after 2 failed logins, limit 2 (from 192.0.2.2)`, err.Error())
	assert.Equal(t, `ratelimit: login locked out for user "a\nb" after 3 failed logins, limit 3 (from unknown)`,
		(&LimitError{Kind: UserLockout, User: "a\nb", Limit: 3, Count: 3}).Error(), "a user name is quoted")
	assert.Equal(t, "ratelimit: auth rate limit exceeded for 192.0.2.1: 4, limit 3",
		(&LimitError{Kind: AuthRate, Addr: a, Limit: 3, Count: 4}).Error())
	assert.Equal(t, "auth rate", AuthRate.String())
	assert.Equal(t, "lockout", Lockout.String())
	assert.Equal(t, "user lockout", UserLockout.String())
}

func TestLoginStats(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	trusted := netip.MustParseAddr("10.0.0.1")
	l := &Limiter{
		Limits:  Limits{AuthRate: 3, LoginFailures: 2, UserLoginFailures: 3, Lockout: 10 * time.Minute},
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for i := range 2 {
		require.NoError(t, l.AllowLoginAt(ctx, a, "alice", at(i)))
		require.NoError(t, l.LoginFailedAt(ctx, a, "alice", at(i)))
	}
	assert.Error(t, l.AllowLoginAt(ctx, a, "alice", at(2))) // Lockout, auth rate 3
	assert.Error(t, l.AllowLoginAt(ctx, a, "alice", at(3))) // AuthRate, 4
	assert.NoError(t, l.AllowLoginAt(ctx, trusted, "bob", at(3)))
	require.NoError(t, l.LoginFailedAt(ctx, trusted, "alice", at(4)))
	assert.Error(t, l.AllowLoginAt(ctx, b, "alice", at(5))) // UserLockout
	require.NoError(t, l.AllowLoginAt(ctx, b, "bob", at(6)))

	tot := l.StatsAt(at(7), a, b, trusted)
	assert.Equal(t, uint64(4), tot.Logins)
	assert.Equal(t, uint64(3), tot.LoginFailures)
	assert.Equal(t, map[Kind]uint64{AuthRate: 1, Lockout: 1, UserLockout: 1}, tot.Refused)
	assert.Equal(t, Peak{Value: 4, Source: netip.MustParsePrefix("192.0.2.1/32"), When: at(3)}, tot.MaxAuthRate)
	assert.Equal(t, 0, tot.MaxConnRate.Value, "logins are not connections")
	assert.Equal(t, 4, tot.Tracked, "two sources, the failures of one source and of one user")

	require.Contains(t, tot.Sources, a)
	assert.Equal(t, SourceStats{
		Source:           netip.MustParsePrefix("192.0.2.1/32"),
		Counts:           Counts{AuthRate: 4, LoginFailures: 2},
		MaxAuthRate:      4,
		Refusals:         2,
		WindowStart:      t0,
		FailureWindowEnd: t0.Add(10 * time.Minute),
		LastSeen:         at(3),
	}, stripAll(tot.Sources[a]))
	assert.Equal(t, Counts{AuthRate: 2}, tot.Sources[b].Counts)
	assert.Equal(t, 1, tot.Sources[b].Refusals)
	assert.NotContains(t, tot.Sources, trusted)

	// Later the rates are stale and the source entry idle, but the
	// failures are still within their window.
	st, ok := sourceAt(l, a, t0.Add(5*time.Minute))
	require.True(t, ok)
	assert.Equal(t, SourceStats{
		Source:           netip.MustParsePrefix("192.0.2.1/32"),
		Counts:           Counts{LoginFailures: 2},
		FailureWindowEnd: t0.Add(10 * time.Minute),
		LastSeen:         at(1),
	}, stripAll(st))
	_, ok = sourceAt(l, a, t0.Add(10*time.Minute+1))
	assert.False(t, ok, "nothing left once the failure window ended")
}

// stripAll is stripMono for FailureWindowEnd too.
func stripAll(st SourceStats) SourceStats {
	st = stripMono(st)
	st.FailureWindowEnd = st.FailureWindowEnd.UTC()
	return st
}

// TestFailureEntries checks that failures share the table's bound and its
// eviction rules with the sources.
func TestFailureEntries(t *testing.T) {
	t.Run("user names count against MaxSources and are evicted one-shot first", func(t *testing.T) {
		l := &Limiter{MaxSources: 16, Limits: Limits{UserLoginFailures: 3, Lockout: time.Hour}}
		a := netip.MustParseAddr("192.0.2.1")
		for range 3 {
			require.NoError(t, l.LoginFailedAt(ctx, a, "victim", t0))
		}
		hold, err := l.AdmitAt(ctx, netip.MustParseAddr("192.0.2.2"), t0)
		require.NoError(t, err)
		// A flood of one-shot user names from one source.
		for i := range 1000 {
			require.NoError(t, l.LoginFailedAt(ctx, a, fmt.Sprintf("user%d", i), t0.Add(time.Second)))
		}
		assert.Equal(t, 16, l.Stats().Tracked)
		var le *LimitError
		require.ErrorAs(t, l.AllowLoginAt(ctx, netip.MustParseAddr("198.51.100.1"), "victim", t0.Add(time.Minute)), &le)
		assert.Equal(t, UserLockout, le.Kind, "a locked-out user outlives a flood of one-shot names")
		st, ok := sourceAt(l, netip.MustParseAddr("192.0.2.2"), t0.Add(time.Minute))
		require.True(t, ok, "a source with a connection in flight is never evicted")
		assert.Equal(t, 1, st.InFlight)
		hold.ReleaseAt(t0)
	})

	t.Run("failure entries expire with their window and are swept first", func(t *testing.T) {
		s := &MemoryStore{MaxSources: 16}
		for i := range 16 {
			_, err := s.Record(ctx, Request{User: fmt.Sprint("u", i), Event: LoginFailed, Now: t0, Unit: time.Minute, Window: time.Minute})
			require.NoError(t, err)
		}
		require.Equal(t, 16, s.size())
		c, err := s.Record(ctx, Request{User: "u3", Event: Login, Now: t0.Add(time.Minute), Unit: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, 1, c.LoginFailures, "the window's end is inclusive")
		c, err = s.Record(ctx, Request{User: "u3", Event: Login, Now: t0.Add(time.Minute + 1), Unit: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, 0, c.LoginFailures)
		// A new source sweeps every expired failure entry.
		_, err = s.Record(ctx, Request{Key: netip.MustParsePrefix("192.0.2.1/32"), Event: Connect, Now: t0.Add(2 * time.Minute), Unit: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, 1, s.size())
	})

	t.Run("a Login for an unknown user creates nothing", func(t *testing.T) {
		s := &MemoryStore{}
		for i := range 100 {
			c, err := s.Record(ctx, Request{User: fmt.Sprint("u", i), Event: Login, Now: t0, Unit: time.Minute})
			require.NoError(t, err)
			assert.Equal(t, Counts{}, c)
		}
		assert.Equal(t, 0, s.size())
	})

	t.Run("a source and a user of the same name never mix", func(t *testing.T) {
		s := &MemoryStore{}
		p := netip.MustParsePrefix("192.0.2.1/32")
		for _, r := range []Request{
			{Key: p, Event: LoginFailed},
			{Key: p, Event: LoginFailed},
			{User: "192.0.2.1", Event: LoginFailed},
			{User: "x", Event: LoginFailed},
			{Key: p, User: "x", Event: LoginFailed},
			{Key: p, User: "x", Event: LoginFailed},
			{Key: p, User: "x", Event: LoginFailed},
		} {
			r.Now, r.Unit, r.Window = t0, time.Minute, time.Minute
			_, err := s.Record(ctx, r)
			require.NoError(t, err)
		}
		for _, tt := range []struct {
			r    Request
			want int
		}{
			{Request{Key: p}, 2},
			{Request{User: "192.0.2.1"}, 1},
			{Request{User: "x"}, 1},
			{Request{Key: p, User: "x"}, 3},
			{Request{}, 0},
		} {
			tt.r.Event, tt.r.Now, tt.r.Unit = Login, t0, time.Minute
			c, err := s.Record(ctx, tt.r)
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.LoginFailures, "%+v", tt.r)
		}
		c, err := s.Record(ctx, Request{Key: p, Event: Login, Now: t0, Unit: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, Counts{AuthRate: 2, LoginFailures: 2}, c, "the source's Login counts its auth rate too")
	})
}

// TestConcurrentLogins hammers a few sources and user names from many
// goroutines and checks that no failure is lost.
func TestConcurrentLogins(t *testing.T) {
	leaktest.Check(t)
	const (
		workers = 16
		rounds  = 300
	)
	addrs := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("10.0.0.1"),
	}
	users := []string{"alice", "Bob", "carol", ""}
	l := &Limiter{
		Limits:  Limits{AuthRate: 1 << 30, LoginFailures: 1 << 30, UserLoginFailures: 1 << 30, Lockout: time.Hour},
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	now := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				a, u := addrs[(w+r)%len(addrs)], users[(w*7+r)%len(users)]
				if err := l.AllowLoginAt(ctx, a, u, now); err != nil {
					t.Error(err)
					return
				}
				if err := l.LoginFailedAt(ctx, a, u, now); err != nil {
					t.Error(err)
					return
				}
				_ = l.StatsAt(now, a)
			}
		}()
	}
	wg.Wait()
	tot := l.StatsAt(now, addrs...)
	assert.Equal(t, uint64(workers*rounds), tot.Logins)
	assert.Equal(t, uint64(workers*rounds), tot.LoginFailures)
	assert.Empty(t, tot.Refused)
	perAddr := workers * rounds / len(addrs)
	for _, a := range addrs[:3] {
		assert.Equal(t, perAddr, tot.Sources[a].LoginFailures, "%v", a)
		assert.Equal(t, perAddr, tot.Sources[a].AuthRate, "%v", a)
	}
	perUser := workers * rounds / len(users)
	for _, u := range users[:3] {
		c, err := l.store().Record(ctx, Request{User: userKey(u), Event: Login, Now: now, Unit: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, perUser, c.LoginFailures, "%s", u)
	}
}
