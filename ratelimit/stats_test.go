package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStats(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	acl, err := ParseACL("deny 198.51.100.0/24")
	require.NoError(t, err)
	l := &Limiter{
		Limits:  Limits{InFlight: 2, MessageRate: 1, RecipientRate: 2},
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		ACL:     acl,
	}
	var leases []Lease
	for i := range 3 {
		ls, _ := l.AdmitAt(ctx, a, t0.Add(time.Duration(i)*time.Second))
		leases = append(leases, ls)
	}
	_, _ = l.AdmitAt(ctx, b, t0)
	_, _ = l.AdmitAt(ctx, netip.MustParseAddr("10.0.0.1"), t0)
	_, _ = l.AdmitAt(ctx, netip.MustParseAddr("198.51.100.1"), t0)
	for range 2 {
		_ = l.AllowMessageAt(ctx, a, t0.Add(5*time.Second))
	}
	for range 3 {
		_ = l.AllowRecipientAt(ctx, a, t0.Add(6*time.Second))
	}
	leases[0].ReleaseAt(t0.Add(7 * time.Second))

	tot := l.Stats()
	assert.Equal(t, uint64(3), tot.Admitted)
	assert.Equal(t, uint64(1), tot.Trusted)
	assert.Equal(t, uint64(1), tot.Messages)
	assert.Equal(t, uint64(2), tot.Recipients)
	assert.Equal(t, map[Kind]uint64{Denied: 1, InFlight: 1, MessageRate: 1, RecipientRate: 1}, tot.Refused)
	assert.Equal(t, 2, tot.Tracked)
	assert.Equal(t, Peak{Value: 3, Source: netip.MustParsePrefix("192.0.2.1/32"), When: t0.Add(2 * time.Second)}, tot.MaxInFlight)
	assert.Equal(t, 3, tot.MaxConnRate.Value)
	assert.Equal(t, 2, tot.MaxMessageRate.Value)
	assert.Equal(t, 3, tot.MaxRecipientRate.Value)

	st, ok := sourceAt(l, a, t0.Add(8*time.Second))
	require.True(t, ok)
	assert.Equal(t, SourceStats{
		Source:           netip.MustParsePrefix("192.0.2.1/32"),
		Counts:           Counts{InFlight: 1, ConnRate: 3, MessageRate: 2, RecipientRate: 3},
		MaxInFlight:      3,
		MaxConnRate:      3,
		MaxMessageRate:   2,
		MaxRecipientRate: 3,
		Refusals:         3,
		WindowStart:      t0,
		LastSeen:         t0.Add(7 * time.Second),
	}, stripMono(st))

	st, ok = sourceAt(l, a, t0.Add(2*time.Minute))
	require.True(t, ok, "a source with a connection in flight stays tracked")
	assert.Equal(t, Counts{InFlight: 1}, st.Counts, "stale rates are reported as zero")

	_, ok = sourceAt(l, b, t0.Add(2*time.Minute))
	assert.True(t, ok)
	_, ok = sourceAt(l, netip.MustParseAddr("10.0.0.1"), t0)
	assert.False(t, ok, "trusted sources are never tracked")

	// One call answers for several addresses; those not tracked are absent.
	trusted := netip.MustParseAddr("10.0.0.1")
	all := l.StatsAt(t0.Add(8*time.Second), a, b, trusted)
	assert.Len(t, all.Sources, 2)
	assert.Equal(t, 1, all.Sources[a].InFlight)
	assert.Equal(t, 1, all.Sources[b].InFlight)
	assert.NotContains(t, all.Sources, trusted)
	assert.Nil(t, l.Stats().Sources, "no address asked about")
}

// TestStoreGetsContext: the context given to the Limiter reaches the
// Store, so a remote Store can be bounded by it.
func TestStoreGetsContext(t *testing.T) {
	type key struct{}
	var seen []any
	l := &Limiter{Store: StoreFunc(func(ctx context.Context, r Request) (Counts, error) {
		seen = append(seen, ctx.Value(key{}))
		return Counts{InFlight: 1}, nil
	})}
	ctx := context.WithValue(context.Background(), key{}, "call")
	a := netip.MustParseAddr("192.0.2.1")
	lease, err := l.AdmitAt(ctx, a, t0)
	require.NoError(t, err)
	require.NoError(t, l.AllowMessageAt(ctx, a, t0))
	require.NoError(t, l.AllowRecipientAt(ctx, a, t0))
	lease.ReleaseAt(t0)
	assert.Equal(t, []any{"call", "call", "call", nil}, seen, "Admit, MAIL, RCPT with the caller's context; Release with its own")
}

// stripMono makes times comparable with assert.Equal.
func stripMono(st SourceStats) SourceStats {
	st.WindowStart = st.WindowStart.UTC()
	st.LastSeen = st.LastSeen.UTC()
	return st
}

func TestStoreErrors(t *testing.T) {
	boom := errors.New("boom")
	l := &Limiter{Store: StoreFunc(func(context.Context, Request) (Counts, error) { return Counts{}, boom })}
	a := netip.MustParseAddr("192.0.2.1")
	_, err := l.AdmitAt(ctx, a, t0)
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, ErrLimited)
	assert.ErrorIs(t, l.AllowMessageAt(ctx, a, t0), boom)
	assert.Equal(t, -1, l.Stats().Tracked, "a Store that cannot tell")
	_, ok := sourceNow(l, a)
	assert.False(t, ok)

	full := &Limiter{Store: StoreFunc(func(context.Context, Request) (Counts, error) { return Counts{}, ErrFull })}
	_, err = full.AdmitAt(ctx, a, t0)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, Capacity, le.Kind)
	assert.ErrorIs(t, err, ErrLimited)
}
