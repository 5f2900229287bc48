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
