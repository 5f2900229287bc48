package ratelimit

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchLimiter is port 25 of Mailu behind Traefik (InFlightConn 15 per
// source), with a connection rate high enough that the benchmarks measure
// the admitted path.
func benchLimiter() *Limiter {
	return &Limiter{
		Limits:  Limits{InFlight: 15, ConnRate: 1 << 30, MessageRate: 1 << 30, RecipientRate: 1 << 30},
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
}

func BenchmarkAdmitRelease(b *testing.B) {
	l := benchLimiter()
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = v4(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ls, err := l.Admit(ctx, addrs[i&1023])
		if err != nil {
			b.Fatal(err)
		}
		ls.Release()
	}
}

func BenchmarkAdmitReleaseParallel(b *testing.B) {
	l := benchLimiter()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base := int(next.Add(1)) << 12
		for i := 0; pb.Next(); i++ {
			ls, err := l.Admit(ctx, v4(base+i&1023))
			if err != nil {
				b.Error(err)
				return
			}
			ls.Release()
		}
	})
}

func BenchmarkAdmitTrusted(b *testing.B) {
	l := benchLimiter()
	a := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		ls, err := l.Admit(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		ls.Release()
	}
}

func BenchmarkAllowMessage(b *testing.B) {
	l := benchLimiter()
	a := netip.MustParseAddr("2001:db8::1")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.AllowMessageAt(ctx, a, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefusal measures the refused path (it allocates the error).
func BenchmarkRefusal(b *testing.B) {
	l := &Limiter{Limits: Limits{ConnRate: 1}}
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	_, _ = l.AdmitAt(ctx, a, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.AdmitAt(ctx, a, now); err == nil {
			b.Fatal("admitted")
		}
	}
}

// BenchmarkMemory1M tracks 1,000,000 distinct sources and reports the heap
// they take, per source. Run it with -benchtime 1x.
func BenchmarkMemory1M(b *testing.B) {
	const n = 1_000_000
	var perSource float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := &Limiter{MaxSources: 2 * n} // room to spare: no evictions
		now := time.Now()
		for i := range n {
			ls, err := l.AdmitAt(ctx, v4(i), now)
			if err != nil {
				b.Fatal(err)
			}
			ls.ReleaseAt(now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := l.Stats().Tracked; got != n {
			b.Fatalf("tracked %d sources; want %d", got, n)
		}
		perSource = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perSource, "B/source")
}

// BenchmarkAdmitAtReleaseAt is BenchmarkAdmitRelease with the time passed
// in, which shows what the two clock reads cost.
func BenchmarkAdmitAtReleaseAt(b *testing.B) {
	l := benchLimiter()
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ls, err := l.AdmitAt(ctx, v4(i&1023), now)
		if err != nil {
			b.Fatal(err)
		}
		ls.ReleaseAt(now)
	}
}

func BenchmarkClock(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}

// BenchmarkAllowLogin measures a login admitted after the source and the
// user name are checked, with failures on record for both.
func BenchmarkAllowLogin(b *testing.B) {
	l := &Limiter{Limits: Limits{AuthRate: 1 << 30, LoginFailures: 1 << 30, UserLoginFailures: 1 << 30}}
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	if err := l.LoginFailedAt(ctx, a, "alice@example.com", now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.AllowLoginAt(ctx, a, "alice@example.com", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoginFailed measures counting a failed login for a source and a
// user name already on record.
func BenchmarkLoginFailed(b *testing.B) {
	l := &Limiter{Limits: Limits{UserLoginFailures: 1 << 30}}
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.LoginFailedAt(ctx, a, "alice@example.com", now); err != nil {
			b.Fatal(err)
		}
	}
}
