package ratelimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// v4 returns the i-th address of 100.64.0.0/10 onwards, distinct for any i
// below 2^32 − 100.64.0.0.
func v4(i int) netip.Addr {
	n := uint32(100<<24|64<<16) + uint32(i)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func TestMemoryStoreShape(t *testing.T) {
	tests := []struct {
		max, shards, capacity int
	}{
		{0, 64, 99968},
		{-5, 64, 99968},
		{1, 1, 1},
		{16, 1, 16},
		{100, 4, 100},
		{1000, 32, 992},
		{1_000_000, 64, 1_000_000},
		{1_000_001, 64, 1_000_000},
	}
	for _, tt := range tests {
		s := &MemoryStore{MaxSources: tt.max}
		assert.Equal(t, tt.capacity, s.capacity(), "MaxSources %d", tt.max)
		assert.Equal(t, tt.shards, len(s.shards), "MaxSources %d", tt.max)
		assert.LessOrEqual(t, s.capacity(), max(tt.max, defaultMaxSources))
	}
}

func TestEvictionOrder(t *testing.T) {
	// One shard of 16: every eviction sees the whole shard, so the order
	// is exact.
	l := &Limiter{MaxSources: 16}
	busy, regular := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	hold, err := l.AdmitAt(ctx, busy, t0)
	require.NoError(t, err)
	for i := range 10 {
		ls, err := l.AdmitAt(ctx, regular, t0.Add(time.Duration(i)*time.Millisecond))
		require.NoError(t, err)
		ls.ReleaseAt(t0)
	}
	// Fill the rest with one-shot sources, each admitted and released.
	for i := range 14 {
		ls, err := l.AdmitAt(ctx, v4(i), t0.Add(time.Second+time.Duration(i)))
		require.NoError(t, err)
		ls.ReleaseAt(t0.Add(time.Second + time.Duration(i)))
	}
	require.Equal(t, 16, l.Stats().Tracked)

	// A new source evicts the oldest one-shot source, v4(0).
	_, err = l.AdmitAt(ctx, v4(100), t0.Add(2*time.Second))
	require.NoError(t, err)
	_, ok := sourceAt(l, v4(0), t0.Add(2*time.Second))
	assert.False(t, ok, "the oldest one-shot source goes first")
	_, ok = sourceAt(l, v4(1), t0.Add(2*time.Second))
	assert.True(t, ok)

	// A flood of one-shot sources never displaces the busy or the regular one.
	for i := 200; i < 1200; i++ {
		ls, err := l.AdmitAt(ctx, v4(i), t0.Add(3*time.Second))
		require.NoError(t, err)
		ls.ReleaseAt(t0.Add(3 * time.Second))
	}
	now := t0.Add(4 * time.Second)
	st, ok := sourceAt(l, busy, now)
	require.True(t, ok, "a source with a connection in flight is never evicted")
	assert.Equal(t, 1, st.InFlight)
	_, ok = sourceAt(l, regular, now)
	assert.True(t, ok, "a regular source outlives one-shot sources")
	assert.Equal(t, 16, l.Stats().Tracked)

	hold.ReleaseAt(now)
	st, _ = sourceAt(l, busy, now)
	assert.Equal(t, 0, st.InFlight)
}

func TestExpiry(t *testing.T) {
	l := &Limiter{MaxSources: 16, Limits: Limits{ConnRate: 1}}
	a := netip.MustParseAddr("192.0.2.1")
	ls, err := l.AdmitAt(ctx, a, t0)
	require.NoError(t, err)
	ls.ReleaseAt(t0.Add(10 * time.Second))

	_, ok := sourceAt(l, a, t0.Add(70*time.Second))
	assert.True(t, ok, "idle for exactly one unit: still tracked")
	_, ok = sourceAt(l, a, t0.Add(70*time.Second+1))
	assert.False(t, ok, "idle for more than one unit: expired")
	assert.Equal(t, 1, l.Stats().Tracked, "expired entries stay until swept or reused")

	// An expired entry is reset on access: a fresh window and no peaks.
	_, err = l.AdmitAt(ctx, a, t0.Add(71*time.Second))
	require.NoError(t, err)
	st, ok := sourceAt(l, a, t0.Add(71*time.Second))
	require.True(t, ok)
	assert.Equal(t, 1, st.MaxInFlight)
	assert.Equal(t, t0.Add(71*time.Second), st.WindowStart.UTC())
}

func TestExpiredEntriesAreSweptFirst(t *testing.T) {
	l := &Limiter{MaxSources: 16}
	// Eight sources with many events, idle since t0.
	for i := range 8 {
		for range 5 {
			ls, err := l.AdmitAt(ctx, v4(i), t0)
			require.NoError(t, err)
			ls.ReleaseAt(t0)
		}
	}
	// Eight one-shot sources, fresh at t0+90s.
	later := t0.Add(90 * time.Second)
	for i := 8; i < 16; i++ {
		ls, err := l.AdmitAt(ctx, v4(i), later)
		require.NoError(t, err)
		ls.ReleaseAt(later)
	}
	// The new source sweeps all eight expired sources at once, and no
	// fresh one-shot source.
	_, err := l.AdmitAt(ctx, v4(99), later)
	require.NoError(t, err)
	assert.Equal(t, 9, l.Stats().Tracked)
	for i := 8; i < 16; i++ {
		_, ok := sourceAt(l, v4(i), later)
		assert.True(t, ok, "fresh source %v", v4(i))
	}
}

func TestFullOfBusySourcesRefusesNewSources(t *testing.T) {
	l := &Limiter{MaxSources: 16}
	var leases []Lease
	for i := range 16 {
		ls, err := l.AdmitAt(ctx, v4(i), t0)
		require.NoError(t, err)
		leases = append(leases, ls)
	}
	_, err := l.AdmitAt(ctx, v4(16), t0)
	var le *LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, Capacity, le.Kind)
	assert.Equal(t, "421 4.3.2 Error: too many clients, try again later\r\n", SMTPReply(err, ""))

	// Known sources keep working, and one release makes room.
	ls, err := l.AdmitAt(ctx, v4(3), t0)
	require.NoError(t, err)
	ls.ReleaseAt(t0)
	leases[0].ReleaseAt(t0)
	_, err = l.AdmitAt(ctx, v4(16), t0)
	assert.NoError(t, err)
	assert.Equal(t, uint64(1), l.Stats().Refused[Capacity])
}

// TestFlood admits and releases 1,000,000 distinct addresses through a
// table of 1,000 while one known source holds a connection and another
// visits regularly: the table stays bounded and neither is evicted.
func TestFlood(t *testing.T) {
	const flood, maxSources = 1_000_000, 1000
	l := &Limiter{MaxSources: maxSources, Limits: Limits{InFlight: 15, ConnRate: 60}}
	busy, regular := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	hold, err := l.AdmitAt(ctx, busy, t0)
	require.NoError(t, err)
	for range 5 { // the regular client has been here before
		ls, err := l.AdmitAt(ctx, regular, t0)
		require.NoError(t, err)
		ls.ReleaseAt(t0)
	}
	for i := range flood {
		now := t0.Add(time.Duration(i) * 50 * time.Nanosecond) // 50 ms in all
		if i%100_000 == 0 {
			ls, err := l.AdmitAt(ctx, regular, now)
			require.NoError(t, err)
			ls.ReleaseAt(now)
		}
		ls, err := l.AdmitAt(ctx, v4(i), now)
		if err != nil {
			require.NoError(t, err, "flood address %d", i)
		}
		ls.ReleaseAt(now)
	}
	end := t0.Add(time.Second)
	tot := l.Stats()
	assert.LessOrEqual(t, tot.Tracked, maxSources)
	assert.Equal(t, uint64(flood+16), tot.Admitted)
	st, ok := sourceAt(l, busy, end)
	require.True(t, ok, "the busy source was evicted")
	assert.Equal(t, 1, st.InFlight)
	st, ok = sourceAt(l, regular, end)
	require.True(t, ok, "the regular source was evicted")
	assert.Equal(t, 15, st.ConnRate)
	hold.ReleaseAt(end)
	st, _ = sourceAt(l, busy, end)
	assert.Equal(t, 0, st.InFlight)
}

// TestConcurrentAdmitRelease hammers a few sources from many goroutines
// and checks that the in-flight limit is never exceeded and that every
// count returns to zero.
func TestConcurrentAdmitRelease(t *testing.T) {
	leaktest.Check(t)
	const (
		workers = 32
		rounds  = 2000
		limit   = 4
	)
	addrs := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), // one /64
		netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("10.0.0.1"),
	}
	l := &Limiter{
		Limits:  Limits{InFlight: limit, MessageRate: 1 << 30},
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	var held [4]atomic.Int32 // by source: 192.0.2.1, 192.0.2.2, 2001:db8::/64, trusted
	slot := []int{0, 1, 2, 2, 0, 3}
	var over, admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				i := (w + r) % len(addrs)
				ls, err := l.Admit(ctx, addrs[i])
				if err != nil {
					refused.Add(1)
					continue
				}
				admitted.Add(1)
				if n := held[slot[i]].Add(1); n > limit && slot[i] != 3 {
					over.Add(1)
				}
				_ = l.AllowMessage(ctx, addrs[i])
				held[slot[i]].Add(-1)
				ls.Release()
				ls.Release()
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, over.Load(), "in-flight limit exceeded")
	assert.Equal(t, int64(workers*rounds), admitted.Load()+refused.Load())
	for _, a := range addrs[:5] {
		st, ok := sourceNow(l, a)
		require.True(t, ok, "%v", a)
		assert.Equal(t, 0, st.InFlight, "%v", a)
		// Peaks count refused attempts too, as anvil's do.
		assert.GreaterOrEqual(t, st.MaxInFlight, 1, "%v", a)
	}
	tot := l.Stats()
	assert.Equal(t, uint64(admitted.Load()), tot.Admitted+tot.Trusted)
	assert.Equal(t, uint64(refused.Load()), tot.Refused[InFlight])
}

// TestShardsAreBalanced checks that sequential IPv4 addresses and adjacent
// IPv6 /64s spread evenly over the shards, so the per-shard caps add up to
// MaxSources in practice.
func TestShardsAreBalanced(t *testing.T) {
	s := &MemoryStore{MaxSources: 64 * 1024}
	l := &Limiter{Store: s}
	const n = 32_000
	for i := range n / 2 {
		require.NoError(t, l.AllowMessageAt(ctx, v4(i), t0))
		v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 8), byte(i), 15: 1})
		require.NoError(t, l.AllowMessageAt(ctx, v6, t0))
	}
	require.Equal(t, n, s.size(), "no source may have been evicted")
	avg := n / len(s.shards)
	for i := range s.shards {
		got := len(s.shards[i].m)
		assert.InDelta(t, avg, got, float64(avg)/4, "shard %d holds %d; average %d", i, got, avg)
	}
}

// TestConcurrentDoubleRelease releases every lease from two goroutines at
// once: exactly one of them may count.
func TestConcurrentDoubleRelease(t *testing.T) {
	leaktest.Check(t)
	a := netip.MustParseAddr("192.0.2.1")
	l := &Limiter{}
	sentinel, err := l.Admit(ctx, a)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 200 {
		ls, err := l.Admit(ctx, a)
		require.NoError(t, err)
		start := make(chan struct{})
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ls.Release()
			}()
		}
		close(start)
	}
	wg.Wait()
	st, ok := sourceNow(l, a)
	require.True(t, ok)
	assert.Equal(t, 1, st.InFlight, "only the sentinel may remain")
	sentinel.Release()
	st, _ = sourceNow(l, a)
	assert.Equal(t, 0, st.InFlight)
}
