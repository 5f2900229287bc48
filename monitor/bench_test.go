//go:build unix

package monitor

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCheckers runs 1,000 Checkers, one goroutine each, until b.N
// probes in total have run, and reports process CPU per probe, goroutines
// and stack memory per checker, and the probe rate. "func" probes with a
// ProbeFunc that returns at once (the Checker's own cost: timers, state,
// scheduling); "greeting" probes a local greeting server (the CPU includes
// that in-process server's side of every connection).
func BenchmarkCheckers(b *testing.B) {
	b.Run("func", func(b *testing.B) {
		runCheckers(b, 1000, 100*time.Millisecond, ProbeFunc(func(context.Context, string) Result {
			return Result{OK: true}
		}), "")
	})
	b.Run("greeting", func(b *testing.B) {
		addr := serveFunc(b, nil, greets("220 bench.example.test ESMTP\r\n"))
		runCheckers(b, 1000, time.Second, Greeting{}, addr)
	})
}

func runCheckers(b *testing.B, n int, interval time.Duration, probe Probe, addr string) {
	var count atomic.Int64
	var failed atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	counted := ProbeFunc(func(ctx context.Context, a string) Result {
		r := probe.Probe(ctx, a)
		if !r.OK && ctx.Err() == nil {
			failed.Add(1)
		}
		if count.Add(1) == target {
			close(done)
		}
		return r
	})
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, t0 := cpuTime(b), time.Now()
	for range n {
		c := &Checker{Addr: addr, Probe: counted, Interval: interval, Timeout: 2 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Run(ctx)
		}()
	}
	goroutines := runtime.NumGoroutine() - g0
	runtime.ReadMemStats(&ms1)
	<-done
	cancel()
	wg.Wait()
	cpu, elapsed := cpuTime(b)-cpu0, time.Since(t0)
	b.StopTimer()
	probes := count.Load()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(probes), "cpu-ns/probe")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/checker")
	b.ReportMetric(float64(ms1.StackInuse-ms0.StackInuse)/1024/float64(n), "stack-KiB/checker")
	b.ReportMetric(float64(probes)/elapsed.Seconds(), "probes/s")
	b.ReportMetric(100*float64(cpu)/float64(elapsed)/float64(runtime.NumCPU()), "cpu-%")
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d probes failed", f, probes)
	}
}
