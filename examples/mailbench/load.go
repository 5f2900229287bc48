package main

import (
	"context"
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"
)

// worker is one load-generating goroutine's state.
type worker struct {
	cfg     *tls.Config // a clone per worker, with its own session cache
	s       *session    // held across operations (bulk, rtt); nil otherwise
	lat     latencies
	resumed int64
}

// job is one test: setup runs untimed before the clock starts (and, when
// it opens a held session, again if an operation broke it), op is timed
// and repeated until the duration ends; held sessions are closed after.
type job struct {
	setup func(ctx context.Context, w *worker) error
	holds bool // setup opens w.s, which op uses
	op    func(ctx context.Context, w *worker) (bytes int64, err error)
}

// measured is what one run of a job produced.
type measured struct {
	ops, errs int64
	firstErr  string
	bytes     int64
	resumed   int64
	elapsed   time.Duration
	lat       []time.Duration // sorted
	cpu       time.Duration   // proxy CPU over the timed window; -1 without -pid
}

// errCount records failures from all workers and keeps the first message.
type errCount struct {
	n     atomic.Int64
	first sync.Once
	msg   string
}

func (e *errCount) add(err error) {
	e.n.Add(1)
	e.first.Do(func() { e.msg = err.Error() })
}

// run drives j with c workers for d and measures it.
func (b *bench) run(ctx context.Context, j job, c int, d time.Duration) measured {
	workers := make([]*worker, c)
	var errs errCount
	parallel(c, func(i int) {
		w := &worker{cfg: b.tlsConfig()}
		workers[i] = w
		if j.setup != nil {
			if err := j.setup(ctx, w); err != nil {
				errs.add(err)
			}
		}
	})
	before := b.sampleCPU()
	start := time.Now()
	end := start.Add(d)
	var ops, bytes atomic.Int64
	parallel(c, func(i int) {
		w := workers[i]
		for time.Now().Before(end) && ctx.Err() == nil {
			if j.holds && w.s == nil {
				if err := j.setup(ctx, w); err != nil {
					errs.add(err)
					continue
				}
			}
			t0 := time.Now()
			n, err := j.op(ctx, w)
			if err != nil {
				errs.add(err)
				if w.s != nil {
					w.s.close()
					w.s = nil
				}
				continue
			}
			w.lat = append(w.lat, time.Since(t0))
			ops.Add(1)
			bytes.Add(n)
		}
	})
	m := measured{ops: ops.Load(), bytes: bytes.Load(), elapsed: time.Since(start), errs: errs.n.Load(), firstErr: errs.msg}
	m.cpu = cpuDelta(before, b.sampleCPU())
	parts := make([]latencies, c)
	for i, w := range workers {
		parts[i] = w.lat
		m.resumed += w.resumed
		if w.s != nil {
			w.s.close()
		}
	}
	m.lat = merge(parts)
	return m
}

// parallel runs f(0..n-1) on n goroutines and waits for them all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// cpuSample is the proxy CPU at a moment, ok false without -pid or on a
// read error (the process may have died).
type cpuSample struct {
	cpu time.Duration
	ok  bool
}

func (b *bench) sampleCPU() cpuSample {
	s, err := b.proc.sample()
	return cpuSample{cpu: s.CPU, ok: err == nil}
}

func cpuDelta(a, z cpuSample) time.Duration {
	if !a.ok || !z.ok {
		return -1
	}
	return z.cpu - a.cpu
}
