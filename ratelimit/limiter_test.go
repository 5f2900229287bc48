package ratelimit

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// ctx is the context of the tests' calls: the MemoryStore never blocks.
var ctx = context.Background()

// sourceAt returns the statistics of addr's source at now, as StatsAt
// reports them.
func sourceAt(l *Limiter, addr netip.Addr, now time.Time) (SourceStats, bool) {
	st, ok := l.StatsAt(now, addr).Sources[addr]
	return st, ok
}

// sourceNow is sourceAt at time.Now().
func sourceNow(l *Limiter, addr netip.Addr) (SourceStats, bool) {
	return sourceAt(l, addr, time.Now())
}

// op is one step of a scenario: at t0+at, do what to addr (for user),
// expect want (zero: allowed).
type op struct {
	at   time.Duration
	do   string // "admit", "release" (the oldest held lease of addr), "msg", "rcpt", "login", "fail"
	addr string
	want Kind
	user string // for "login" and "fail"
}

// run plays ops against l and checks every outcome.
func run(t *testing.T, l *Limiter, ops []op) {
	t.Helper()
	held := map[string][]Lease{}
	for i, o := range ops {
		now := t0.Add(o.at)
		var a netip.Addr
		if o.addr != "" {
			a = netip.MustParseAddr(o.addr)
		}
		var err error
		switch o.do {
		case "admit":
			var ls Lease
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
			require.NoError(t, l.LoginFailedAt(ctx, a, o.user, now), "step %d", i)
		default:
			t.Fatalf("step %d: unknown op %q", i, o.do)
		}
		if o.want == 0 {
			assert.NoError(t, err, "step %d: %s %s %s at +%v", i, o.do, o.addr, o.user, o.at)
			continue
		}
		var le *LimitError
		if assert.ErrorAs(t, err, &le, "step %d: %s %s %s at +%v: got %v; want %v", i, o.do, o.addr, o.user, o.at, err, o.want) {
			assert.Equal(t, o.want, le.Kind, "step %d: %s %s %s at +%v", i, o.do, o.addr, o.user, o.at)
		}
	}
}

func admits(addr string, n int, at time.Duration) []op {
	ops := make([]op, n)
	for i := range ops {
		ops[i] = op{at: at, do: "admit", addr: addr}
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

func TestLimits(t *testing.T) {
	const a, b = "192.0.2.1", "192.0.2.2"
	tests := []struct {
		name string
		lim  Limiter
		ops  []op
	}{
		{
			name: "in-flight refuses the (n+1)th open connection and admits after a release",
			lim:  Limiter{Limits: Limits{InFlight: 2}},
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
			lim:  Limiter{Limits: Limits{ConnRate: 3}},
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
			lim:  Limiter{Limits: Limits{ConnRate: 1}},
			ops: []op{
				{do: "admit", addr: a},
				{at: 90 * time.Second, do: "admit", addr: a},
				// The window began at +90s, not at +60s or +120s.
				{at: 150 * time.Second, do: "admit", addr: a, want: ConnRate},
				{at: 150*time.Second + 1, do: "admit", addr: a},
			},
		},
		{
			name: "custom unit",
			lim:  Limiter{Limits: Limits{ConnRate: 1, Unit: 10 * time.Second}},
			ops: []op{
				{do: "admit", addr: a},
				{at: 10 * time.Second, do: "admit", addr: a, want: ConnRate},
				{at: 11 * time.Second, do: "admit", addr: a},
			},
		},
		{
			name: "in-flight is checked before the rate",
			lim:  Limiter{Limits: Limits{InFlight: 1, ConnRate: 1}},
			ops: []op{
				{do: "admit", addr: a},
				{do: "admit", addr: a, want: InFlight},
			},
		},
		{
			name: "message rate, with its window edge",
			lim:  Limiter{Limits: Limits{MessageRate: 2}},
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
			lim:  Limiter{Limits: Limits{RecipientRate: 3}},
			ops: []op{
				{do: "rcpt", addr: a}, {do: "rcpt", addr: a}, {do: "rcpt", addr: a},
				{at: 30 * time.Second, do: "rcpt", addr: a, want: RecipientRate},
				{at: 30 * time.Second, do: "msg", addr: a},
				{at: 60*time.Second + 1, do: "rcpt", addr: a},
			},
		},
		{
			name: "one window for all rates of a source, as in anvil",
			lim:  Limiter{Limits: Limits{ConnRate: 1, MessageRate: 1}},
			ops: []op{
				{do: "admit", addr: a},
				{at: 50 * time.Second, do: "msg", addr: a},
				{at: 55 * time.Second, do: "msg", addr: a, want: MessageRate},
				// The message at +61s resets the window for connections too.
				{at: 61 * time.Second, do: "msg", addr: a},
				{at: 62 * time.Second, do: "admit", addr: a},
			},
		},
		{
			name: "refused attempts count against the rate",
			lim:  Limiter{Limits: Limits{InFlight: 1, ConnRate: 3}},
			ops: []op{
				{do: "admit", addr: a},
				{do: "admit", addr: a, want: InFlight},
				{do: "admit", addr: a, want: InFlight},
				{do: "release", addr: a},
				{do: "admit", addr: a, want: ConnRate},
			},
		},
		{
			name: "trusted networks are exempt from every limit",
			lim:  Limiter{Limits: Limits{InFlight: 1, ConnRate: 1, MessageRate: 1, RecipientRate: 1}, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			ops: cat(admits("10.1.2.3", 5, 0), admits("::ffff:10.9.9.9", 5, 0), []op{
				{do: "msg", addr: "10.1.2.3"}, {do: "msg", addr: "10.1.2.3"},
				{do: "rcpt", addr: "10.1.2.3"}, {do: "rcpt", addr: "10.1.2.3"},
				{do: "admit", addr: "11.0.0.1"},
				{do: "admit", addr: "11.0.0.1", want: InFlight},
			}),
		},
		{
			name: "IPv6 sources are aggregated by /64",
			lim:  Limiter{Limits: Limits{InFlight: 1}},
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
			lim:  Limiter{Limits: Limits{InFlight: 1}, IPv6Prefix: 128},
			ops: []op{
				{do: "admit", addr: "2001:db8::1"},
				{do: "admit", addr: "2001:db8::2"},
				{do: "admit", addr: "2001:db8::1", want: InFlight},
			},
		},
		{
			name: "IPv4-mapped IPv6 is the same source as IPv4",
			lim:  Limiter{Limits: Limits{InFlight: 1}},
			ops: []op{
				{do: "admit", addr: "::ffff:192.0.2.1"},
				{do: "admit", addr: a, want: InFlight},
				{do: "release", addr: "::ffff:192.0.2.1"},
				{do: "admit", addr: a},
			},
		},
		{
			name: "clients without an address share one source",
			lim:  Limiter{Limits: Limits{InFlight: 1}},
			ops: []op{
				{do: "admit", addr: ""},
				{do: "admit", addr: "", want: InFlight},
				{do: "admit", addr: a},
			},
		},
		{
			name: "the zero Limiter admits everything",
			ops:  cat(admits(a, 100, 0), []op{{do: "msg", addr: a}, {do: "rcpt", addr: a}, {do: "admit", addr: ""}}),
		},
	}
	for i := range tests {
		tt := &tests[i]
		t.Run(tt.name, func(t *testing.T) {
			run(t, &tt.lim, tt.ops)
		})
	}
}

func TestLimitError(t *testing.T) {
	l := &Limiter{Limits: Limits{InFlight: 1}}
	_, err := l.AdmitAt(ctx, netip.MustParseAddr("::ffff:192.0.2.1"), t0)
	require.NoError(t, err)
	_, err = l.AdmitAt(ctx, netip.MustParseAddr("192.0.2.1"), t0)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, &LimitError{Kind: InFlight, Addr: netip.MustParseAddr("192.0.2.1"),
		Source: netip.MustParsePrefix("192.0.2.1/32"), Limit: 1, Count: 2}, le)
	assert.ErrorIs(t, err, ErrLimited)
	assert.True(t, le.Temporary())
	assert.Equal(t, "ratelimit: in-flight limit exceeded for 192.0.2.1: 2, limit 1", err.Error())
	assert.Equal(t, "ratelimit: access denied for unknown", (&LimitError{Kind: Denied}).Error())
	assert.False(t, (&LimitError{Kind: Denied}).Temporary())
	assert.Equal(t, "Kind(99)", Kind(99).String())
}

func TestLeaseReleaseIsIdempotent(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	l := &Limiter{Limits: Limits{InFlight: 2}}
	l1, err := l.AdmitAt(ctx, a, t0)
	require.NoError(t, err)
	_, err = l.AdmitAt(ctx, a, t0)
	require.NoError(t, err)

	cp := l1
	l1.ReleaseAt(t0)
	l1.ReleaseAt(t0)
	cp.ReleaseAt(t0)
	st, ok := sourceAt(l, a, t0)
	require.True(t, ok)
	assert.Equal(t, 1, st.InFlight, "three releases of one lease must decrement once")

	// l3 may reuse l1's pooled ticket; a stale release must not free it.
	_, err = l.AdmitAt(ctx, a, t0)
	require.NoError(t, err)
	l1.ReleaseAt(t0)
	cp.ReleaseAt(t0)
	st, _ = sourceAt(l, a, t0)
	assert.Equal(t, 2, st.InFlight)
	_, err = l.AdmitAt(ctx, a, t0)
	assert.ErrorIs(t, err, ErrLimited)

	Lease{}.Release() // the zero Lease releases nothing
}

func TestSourceOf(t *testing.T) {
	tests := []struct {
		name string
		bits int
		addr string
		want string
	}{
		{"IPv4", 0, "192.0.2.1", "192.0.2.1/32"},
		{"mapped", 0, "::ffff:192.0.2.1", "192.0.2.1/32"},
		{"IPv6 default /64", 0, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6 zone dropped", 0, "fe80::1%eth0", "fe80::/64"},
		{"IPv6 /48", 48, "2001:db8:1:2::1", "2001:db8:1::/48"},
		{"IPv6 out of range is /64", 129, "2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"no address", 0, "", "invalid Prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Limiter{IPv6Prefix: tt.bits}
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			assert.Equal(t, tt.want, l.SourceOf(a).String())
		})
	}
}
