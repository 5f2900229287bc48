package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
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

// op is one step of a scenario, as in package ratelimit's tests: at
// t0+at, do what to addr (for user), expect want (zero: allowed).
type op struct {
	at   time.Duration
	do   string // "admit", "release" (the oldest held lease of addr), "msg", "rcpt", "login", "fail"
	addr string
	want ratelimit.Kind
	user string
}

func admits(addr string, n int, at time.Duration) []op {
	ops := make([]op, n)
	for i := range ops {
		ops[i] = op{at: at, do: "admit", addr: addr}
	}
	return ops
}

func login(at time.Duration, addr, user string, want ratelimit.Kind) op {
	return op{at: at, do: "login", addr: addr, user: user, want: want}
}

func fail(at time.Duration, addr, user string) op {
	return op{at: at, do: "fail", addr: addr, user: user}
}

func tries(n int, at time.Duration, addr, user string) []op {
	var ops []op
	for range n {
		ops = append(ops, login(at, addr, user, 0), fail(at, addr, user))
	}
	return ops
}

func cat(parts ...[]op) []op {
	var out []op
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// play runs ops against l and returns the outcome of every step: "ok",
// the refusal's Kind, or the error.
func play(t *testing.T, l *ratelimit.Limiter, ops []op) []string {
	t.Helper()
	held := map[string][]ratelimit.Lease{}
	out := make([]string, len(ops))
	for i, o := range ops {
		now := t0.Add(o.at)
		var a netip.Addr
		if o.addr != "" {
			a = netip.MustParseAddr(o.addr)
		}
		var err error
		switch o.do {
		case "admit":
			var ls ratelimit.Lease
			ls, err = l.AdmitAt(ctx, a, now)
			if err == nil {
				held[o.addr] = append(held[o.addr], ls)
			}
		case "release":
			require.NotEmpty(t, held[o.addr], "step %d: nothing held for %s", i, o.addr)
			held[o.addr][0].ReleaseAt(now)
			held[o.addr] = held[o.addr][1:]
		case "msg":
			err = l.AllowMessageAt(ctx, a, now)
		case "rcpt":
			err = l.AllowRecipientAt(ctx, a, now)
		case "login":
			err = l.AllowLoginAt(ctx, a, o.user, now)
		case "fail":
			err = l.LoginFailedAt(ctx, a, o.user, now)
		default:
			t.Fatalf("step %d: unknown op %q", i, o.do)
		}
		var le *ratelimit.LimitError
		switch {
		case err == nil:
			out[i] = "ok"
		case errors.As(err, &le):
			out[i] = le.Kind.String()
		default:
			out[i] = "error: " + err.Error()
		}
	}
	return out
}

// cfg is the configuration of a scenario's Limiter.
type cfg struct {
	Limits     ratelimit.Limits
	Trusted    []netip.Prefix
	IPv6Prefix int
}

func (c cfg) limiter(s ratelimit.Store) *ratelimit.Limiter {
	return &ratelimit.Limiter{Limits: c.Limits, Trusted: c.Trusted, IPv6Prefix: c.IPv6Prefix, Store: s}
}

// scenarios are the window scenarios of package ratelimit's TestLimits and
// TestLogins, the ones that do not depend on the MemoryStore's table
// size.
func scenarios() []struct {
	name string
	lim  cfg
	ops  []op
} {
	const a, b, c, d = "192.0.2.1", "192.0.2.2", "2001:db8:1::1", "198.51.100.9"
	const trusted = "10.0.0.1"
	minute := time.Minute
	type L = ratelimit.Limits
	const (
		InFlight    = ratelimit.InFlight
		ConnRate    = ratelimit.ConnRate
		MessageRate = ratelimit.MessageRate
		RcptRate    = ratelimit.RecipientRate
		AuthRate    = ratelimit.AuthRate
		Lockout     = ratelimit.Lockout
		UserLockout = ratelimit.UserLockout
	)
	tenNet := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	return []struct {
		name string
		lim  cfg
		ops  []op
	}{
		{
			name: "in-flight refuses the (n+1)th open connection and admits after a release",
			lim:  cfg{Limits: L{InFlight: 2}},
			ops: []op{
				{do: "admit", addr: a}, {do: "admit", addr: a},
				{do: "admit", addr: a, want: InFlight},
				{do: "admit", addr: b},
				{at: time.Second, do: "release", addr: a},
				{at: time.Second, do: "admit", addr: a},
				{at: time.Second, do: "admit", addr: a, want: InFlight},
			},
		},
		{
			name: "connection rate: the 4th in a window is refused; the window edge is inclusive",
			lim:  cfg{Limits: L{ConnRate: 3}},
			ops: cat(admits(a, 3, 0), []op{
				{at: 10 * time.Second, do: "admit", addr: a, want: ConnRate},
				{at: 60 * time.Second, do: "admit", addr: a, want: ConnRate},
				{at: 60*time.Second + 1, do: "admit", addr: a},
				{at: 61 * time.Second, do: "admit", addr: a},
				{at: 62 * time.Second, do: "admit", addr: a},
				{at: 63 * time.Second, do: "admit", addr: a, want: ConnRate},
			}),
		},
		{
			name: "connection rate: the new window starts at the first event after the old one",
			lim:  cfg{Limits: L{ConnRate: 1}},
			ops: []op{
				{do: "admit", addr: a},
				{at: 90 * time.Second, do: "admit", addr: a},
				{at: 150 * time.Second, do: "admit", addr: a, want: ConnRate},
				{at: 150*time.Second + 1, do: "admit", addr: a},
			},
		},
		{
			name: "custom unit",
			lim:  cfg{Limits: L{ConnRate: 1, Unit: 10 * time.Second}},
			ops: []op{
				{do: "admit", addr: a},
				{at: 10 * time.Second, do: "admit", addr: a, want: ConnRate},
				{at: 11 * time.Second, do: "admit", addr: a},
			},
		},
		{
			name: "in-flight is checked before the rate",
			lim:  cfg{Limits: L{InFlight: 1, ConnRate: 1}},
			ops:  []op{{do: "admit", addr: a}, {do: "admit", addr: a, want: InFlight}},
		},
		{
			name: "message rate, with its window edge",
			lim:  cfg{Limits: L{MessageRate: 2}},
			ops: []op{
				{do: "msg", addr: a}, {at: time.Second, do: "msg", addr: a},
				{at: 2 * time.Second, do: "msg", addr: a, want: MessageRate},
				{at: 2 * time.Second, do: "msg", addr: b},
				{at: 60 * time.Second, do: "msg", addr: a, want: MessageRate},
				{at: 60*time.Second + 1, do: "msg", addr: a},
			},
		},
		{
			name: "recipient rate, with its window edge",
			lim:  cfg{Limits: L{RecipientRate: 3}},
			ops: []op{
				{do: "rcpt", addr: a}, {do: "rcpt", addr: a}, {do: "rcpt", addr: a},
				{at: 30 * time.Second, do: "rcpt", addr: a, want: RcptRate},
				{at: 30 * time.Second, do: "msg", addr: a},
				{at: 60*time.Second + 1, do: "rcpt", addr: a},
			},
		},
		{
			name: "one window for all rates of a source, as in anvil",
			lim:  cfg{Limits: L{ConnRate: 1, MessageRate: 1}},
			ops: []op{
				{do: "admit", addr: a},
				{at: 50 * time.Second, do: "msg", addr: a},
				{at: 55 * time.Second, do: "msg", addr: a, want: MessageRate},
				{at: 61 * time.Second, do: "msg", addr: a},
				{at: 62 * time.Second, do: "admit", addr: a},
			},
		},
		{
			name: "refused attempts count against the rate",
			lim:  cfg{Limits: L{InFlight: 1, ConnRate: 3}},
			ops: []op{
				{do: "admit", addr: a},
				{do: "admit", addr: a, want: InFlight},
				{do: "admit", addr: a, want: InFlight},
				{do: "release", addr: a},
				{do: "admit", addr: a, want: ConnRate},
			},
		},
		{
			name: "a source with a connection in flight never expires; an idle one does after a unit",
			lim:  cfg{Limits: L{InFlight: 1, ConnRate: 2}},
			ops: []op{
				{do: "admit", addr: a},
				// Ten minutes later the connection still counts; the
				// rate window restarts at +10m.
				{at: 10 * time.Minute, do: "admit", addr: a, want: InFlight},
				{at: 10 * time.Minute, do: "release", addr: a},
				{at: 11 * time.Minute, do: "admit", addr: a},
				{at: 11 * time.Minute, do: "release", addr: a},
				{at: 11 * time.Minute, do: "admit", addr: a, want: ConnRate},
				// Idle for more than a unit: forgotten.
				{at: 12*time.Minute + 1, do: "admit", addr: a},
			},
		},
		{
			name: "trusted networks are exempt from every limit",
			lim:  cfg{Limits: L{InFlight: 1, ConnRate: 1, MessageRate: 1, RecipientRate: 1}, Trusted: tenNet},
			ops: cat(admits("10.1.2.3", 5, 0), admits("::ffff:10.9.9.9", 5, 0), []op{
				{do: "msg", addr: "10.1.2.3"}, {do: "msg", addr: "10.1.2.3"},
				{do: "rcpt", addr: "10.1.2.3"}, {do: "rcpt", addr: "10.1.2.3"},
				{do: "admit", addr: "11.0.0.1"},
				{do: "admit", addr: "11.0.0.1", want: InFlight},
			}),
		},
		{
			name: "IPv6 sources are aggregated by /64",
			lim:  cfg{Limits: L{InFlight: 1}},
			ops: []op{
				{do: "admit", addr: "2001:db8:1:2::1"},
				{do: "admit", addr: "2001:db8:1:2:ffff:ffff:ffff:ffff", want: InFlight},
				{do: "admit", addr: "2001:db8:1:3::1"},
				{do: "admit", addr: "fe80::1%eth0"},
				{do: "admit", addr: "fe80::2%eth1", want: InFlight},
			},
		},
		{
			name: "IPv6 prefix /128 counts each address",
			lim:  cfg{Limits: L{InFlight: 1}, IPv6Prefix: 128},
			ops: []op{
				{do: "admit", addr: "2001:db8::1"},
				{do: "admit", addr: "2001:db8::2"},
				{do: "admit", addr: "2001:db8::1", want: InFlight},
			},
		},
		{
			name: "IPv4-mapped IPv6 is the same source as IPv4",
			lim:  cfg{Limits: L{InFlight: 1}},
			ops: []op{
				{do: "admit", addr: "::ffff:192.0.2.1"},
				{do: "admit", addr: a, want: InFlight},
				{do: "release", addr: "::ffff:192.0.2.1"},
				{do: "admit", addr: a},
			},
		},
		{
			name: "clients without an address share one source",
			lim:  cfg{Limits: L{InFlight: 1}},
			ops: []op{
				{do: "admit", addr: ""},
				{do: "admit", addr: "", want: InFlight},
				{do: "admit", addr: a},
			},
		},
		{
			name: "auth rate: the 4th in a window is refused; the window edge is inclusive",
			lim:  cfg{Limits: L{AuthRate: 3}},
			ops: []op{
				login(0, a, "alice", 0), login(time.Second, a, "bob", 0), login(2*time.Second, a, "", 0),
				login(3*time.Second, a, "carol", AuthRate),
				login(3*time.Second, b, "carol", 0),
				login(minute, a, "alice", AuthRate),
				login(minute+1, a, "alice", 0),
			},
		},
		{
			name: "auth rate shares the source's window with the other rates",
			lim:  cfg{Limits: L{ConnRate: 1, AuthRate: 1}},
			ops: []op{
				{do: "admit", addr: a},
				login(50*time.Second, a, "alice", 0),
				login(55*time.Second, a, "alice", AuthRate),
				{at: 61 * time.Second, do: "msg", addr: a},
				login(62*time.Second, a, "alice", 0),
			},
		},
		{
			name: "refused logins count against the auth rate",
			lim:  cfg{Limits: L{AuthRate: 2, LoginFailures: 1}},
			ops: []op{
				login(0, a, "alice", 0), fail(0, a, "alice"),
				login(time.Second, a, "alice", Lockout),
				login(2*time.Second, a, "alice", AuthRate),
			},
		},
		{
			name: "source lockout after N failures, until the window ends",
			lim:  cfg{Limits: L{LoginFailures: 3, Lockout: 10 * minute}},
			ops: cat(tries(2, 0, a, "alice"), []op{
				login(time.Second, a, "bob", 0), fail(2*time.Second, a, "bob"),
				login(3*time.Second, a, "carol", Lockout),
				login(3*time.Second, a, "", Lockout),
				login(3*time.Second, b, "carol", 0),
				login(10*minute, a, "carol", Lockout),
				login(10*minute+1, a, "carol", 0),
			}),
		},
		{
			name: "a failure after the window ended starts a new window",
			lim:  cfg{Limits: L{LoginFailures: 3, Lockout: 10 * minute}},
			ops: cat(tries(2, 0, a, "alice"), []op{
				fail(10*minute+1, a, "alice"),
				login(10*minute+2, a, "alice", 0),
				fail(10*minute+3, a, "alice"), fail(10*minute+4, a, "alice"),
				login(20*minute+1, a, "alice", Lockout),
				login(20*minute+2, a, "alice", 0),
			}),
		},
		{
			name: "the lockout outlives the source's idle expiry",
			lim:  cfg{Limits: L{LoginFailures: 2, Lockout: time.Hour}},
			ops: cat(tries(2, 0, a, ""), []op{
				login(30*minute, a, "", Lockout),
				login(time.Hour, a, "", Lockout),
				login(time.Hour+1, a, "", 0),
			}),
		},
		{
			name: "the default lockout is 15 minutes",
			lim:  cfg{Limits: L{LoginFailures: 1}},
			ops: []op{
				fail(0, a, "alice"),
				login(15*minute, a, "alice", Lockout),
				login(15*minute+1, a, "alice", 0),
			},
		},
		{
			name: "a lockout of centuries does not overflow",
			lim:  cfg{Limits: L{LoginFailures: 1, Lockout: math.MaxInt64}},
			ops: []op{
				fail(0, a, "alice"),
				login(200*365*24*time.Hour, a, "alice", Lockout),
			},
		},
		{
			name: "user lockout from several sources",
			lim:  cfg{Limits: L{LoginFailures: 5, UserLoginFailures: 3, Lockout: 10 * minute}},
			ops: []op{
				login(0, a, "alice", 0), fail(0, a, "alice"),
				login(time.Second, b, "alice", 0), fail(time.Second, b, "alice"),
				login(2*time.Second, c, "alice", 0), fail(2*time.Second, c, "alice"),
				login(3*time.Second, d, "alice", UserLockout),
				login(3*time.Second, a, "alice", UserLockout),
				login(3*time.Second, d, "bob", 0),
				login(3*time.Second, d, "", 0),
				login(10*minute, d, "alice", UserLockout),
				login(10*minute+1, d, "alice", 0),
			},
		},
		{
			name: "the source lockout is checked before the user lockout",
			lim:  cfg{Limits: L{LoginFailures: 1, UserLoginFailures: 1}},
			ops: []op{
				fail(0, a, "alice"),
				login(time.Second, a, "alice", Lockout),
				login(time.Second, b, "alice", UserLockout),
			},
		},
		{
			name: "a trusted source is subject to the user lockout only",
			lim: cfg{
				Limits:  L{AuthRate: 2, LoginFailures: 1, UserLoginFailures: 2},
				Trusted: tenNet,
			},
			ops: cat(tries(2, 0, trusted, "alice"), []op{
				login(time.Second, trusted, "alice", UserLockout),
				login(time.Second, trusted, "bob", 0),
				login(time.Second, trusted, "", 0),
				login(time.Second, a, "alice", UserLockout),
				login(time.Second, a, "bob", 0),
			}),
		},
		{
			name: "user names are trimmed and case-insensitive; long ones are told apart",
			lim:  cfg{Limits: L{UserLoginFailures: 3}},
			ops: []op{
				fail(0, a, "Alice"), fail(0, b, " alice\t"), fail(0, c, "ALICE"),
				login(time.Second, d, "alice", UserLockout),
				login(time.Second, d, "aLiCe ", UserLockout),
				login(time.Second, d, "alice2", 0),
				fail(0, a, strings.Repeat("x", 300)+"1"), fail(0, a, strings.Repeat("x", 300)+"1"),
				fail(0, a, strings.Repeat("x", 300)+"1"),
				login(time.Second, a, strings.Repeat("X", 300)+"1", UserLockout),
				login(time.Second, a, strings.Repeat("x", 300)+"2", 0),
			},
		},
		{
			name: "a user name with Redis's own characters is only a name",
			lim:  cfg{Limits: L{UserLoginFailures: 1}},
			ops: []op{
				fail(0, a, "{tag}:s:192.0.2.1/32"),
				login(time.Second, a, "", 0),
				login(time.Second, a, "{tag}:s:192.0.2.1/32", UserLockout),
				login(time.Second, a, "{tag}", 0),
			},
		},
		{
			name: "IPv6 sources are locked out by /64",
			lim:  cfg{Limits: L{LoginFailures: 2}},
			ops: []op{
				fail(0, "2001:db8:1:2::1", "alice"), fail(0, "2001:db8:1:2::2", "bob"),
				login(time.Second, "2001:db8:1:2::3", "carol", Lockout),
				login(time.Second, "2001:db8:1:3::1", "carol", 0),
			},
		},
	}
}

// TestScenarios plays package ratelimit's window scenarios through a
// Limiter on a MemoryStore and on a Store in Redis: every step must have
// the expected outcome on both.
func TestScenarios(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	for _, tt := range scenarios() {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]string, len(tt.ops))
			for i, o := range tt.ops {
				want[i] = "ok"
				if o.want != 0 {
					want[i] = o.want.String()
				}
			}
			mem := tt.lim.limiter(new(ratelimit.MemoryStore))
			assert.Equal(t, want, play(t, mem, tt.ops), "MemoryStore")
			red := tt.lim.limiter(newStore(t, client, Options{}))
			assert.Equal(t, want, play(t, red, tt.ops), "redisstore")
		})
	}
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
