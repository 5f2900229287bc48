package monitor

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of a zero Checker. Interval, Timeout and DownTime are those of the
// NetScaler SMTP monitor set up for SMTP load balancing (interval 5 s,
// response time-out 2 s, down time 30 s). Fall is 3, on which HAProxy
// ("fall 3") and NetScaler ("retries 3") agree; Rise is NetScaler's
// successRetries of 1 rather than HAProxy's "rise 2", because with a 30 s
// DownTime every extra confirmation keeps a recovered backend out of the pool
// for another 30 s.
const (
	DefaultInterval = 5 * time.Second
	DefaultDownTime = 30 * time.Second
	DefaultRise     = 1
	DefaultFall     = 3
	DefaultJitter   = 0.1
	maxJitter       = 0.5
)

// Status is a backend's health as a [Checker] sees it.
type Status struct {
	// Name and Addr are the Checker's.
	Name, Addr string
	// Up is the current state. It is false until the first result.
	Up bool
	// Known is false until the first probe result has been recorded.
	Known bool
	// Since is when Up last changed; the first result counts as a change.
	Since time.Time
	// Last is the most recent probe result (its Err says why it failed).
	Last Result
	// Consecutive counts the results in a row, ending with Last, that
	// agree with Last.OK: the current success or failure streak.
	Consecutive int
	// Probes is the number of results recorded.
	Probes uint64
}

// Checker runs a Probe against one backend on a schedule and turns the
// results into an up/down state. Its zero value, given Addr and Probe, is
// ready to use; it must not be copied after first use.
//
// Until the first result the state is unknown (Status.Known false, Up
// false) and the first result decides it at once, whatever Rise and Fall
// say: HAProxy starts a server up and NetScaler starts it down, and both
// guesses are wrong half the time, so a pool fed by OnChange learns the real
// state after one probe instead. After that, Fall failures in a row take an
// up backend down and Rise successes in a row bring a down one up.
type Checker struct {
	// Name identifies the backend in Status and to OnChange (for example
	// the pool member's name).
	Name string
	// Addr is the address probed, "host:port".
	Addr string
	// Probe checks the backend.
	Probe Probe
	// Interval is the wait between probes while up. If zero, 5 s.
	Interval time.Duration
	// Timeout bounds each probe (the "response time-out"). If zero, 2 s.
	Timeout time.Duration
	// DownTime is the wait between probes while down (NetScaler's "down
	// time"). If zero, 30 s. If negative, Interval.
	DownTime time.Duration
	// Rise is how many successes in a row bring a down backend up. If
	// zero, 1.
	Rise int
	// Fall is how many failures in a row take an up backend down. If zero,
	// 3.
	Fall int
	// Jitter spreads each wait uniformly over ±Jitter of itself, and the
	// first probe over [0, Jitter·Interval), so many checkers do not probe
	// in lockstep. If zero, 0.1. If negative, none. Values above 0.5 count
	// as 0.5.
	Jitter float64
	// OnChange, if not nil, is called with the new Status on every change
	// of state, including the first result. Calls are made one at a time,
	// in order, from the goroutine that recorded the result (Run's); it
	// should return quickly. [MarkPool] adapts a pool's SetUp method.
	OnChange func(Status)

	step sync.Mutex   // serialises Record, so OnChange calls stay in order
	mu   sync.RWMutex // guards st for Status
	st   Status
}

func (c *Checker) interval() time.Duration { return orDefault(c.Interval, DefaultInterval) }
func (c *Checker) timeout() time.Duration  { return orDefault(c.Timeout, DefaultTimeout) }

func (c *Checker) downTime() time.Duration {
	if c.DownTime < 0 {
		return c.interval()
	}
	return orDefault(c.DownTime, DefaultDownTime)
}

func (c *Checker) rise() int { return max(orDefault(c.Rise, DefaultRise), 1) }
func (c *Checker) fall() int { return max(orDefault(c.Fall, DefaultFall), 1) }

func (c *Checker) jitter() float64 {
	switch {
	case c.Jitter < 0:
		return 0
	case c.Jitter == 0:
		return DefaultJitter
	}
	return min(c.Jitter, maxJitter)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Status returns the current status. It is safe to call at any time from
// any goroutine.
func (c *Checker) Status() Status {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.st
	st.Name, st.Addr = c.Name, c.Addr
	return st
}

// Delay returns how long Run waits before the next probe of a backend in
// state st: Interval while up, DownTime while down, times a factor drawn
// from u in [0, 1) that spreads it over [1−Jitter, 1+Jitter). Before the
// first result it is u·Jitter·Interval, so checkers started together spread
// their first probes. Run passes a random u; tests pass their own.
func (c *Checker) Delay(st Status, u float64) time.Duration {
	j := c.jitter()
	if !st.Known {
		return time.Duration(u * j * float64(c.interval()))
	}
	base := c.interval()
	if !st.Up {
		base = c.downTime()
	}
	return time.Duration(float64(base) * (1 + j*(2*u-1)))
}

// CheckOnce runs the probe once with the Timeout and records the result.
// If ctx ends during the probe the result is not recorded (a shutting-down
// monitor must not mark backends down) and the current status is returned.
func (c *Checker) CheckOnce(ctx context.Context) Status {
	r := c.probe(ctx)
	if ctx.Err() != nil {
		return c.Status()
	}
	return c.Record(r)
}

// probe runs the probe with the per-probe timeout and fills in what a
// ProbeFunc may have left out.
func (c *Checker) probe(ctx context.Context) Result {
	start := time.Now()
	if c.Probe == nil {
		return Result{At: start, Err: &Error{Kind: ErrNoProbe, Reason: "no probe configured"}}
	}
	pctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	r := c.Probe.Probe(pctx, c.Addr)
	if r.At.IsZero() {
		r.At = start
	}
	if r.Latency == 0 {
		r.Latency = time.Since(start)
	}
	if !r.OK && r.Err == nil {
		r.Err = &Error{Kind: ErrProtocol, Reason: "probe failed without a reason"}
	}
	return r
}

// Record feeds one result into the state machine, as if a probe had just
// returned it at r.At, and calls OnChange if the state changed. It is the
// time-injected step under CheckOnce and Run: tests drive the state machine
// with results of their own, no network and no clock.
func (c *Checker) Record(r Result) Status {
	c.step.Lock()
	defer c.step.Unlock()
	c.mu.Lock()
	st, changed := transition(c.st, r, c.rise(), c.fall())
	c.st = st
	c.mu.Unlock()
	st.Name, st.Addr = c.Name, c.Addr
	if changed && c.OnChange != nil {
		c.OnChange(st)
	}
	return st
}

// transition is the state machine: the status after result r, and whether
// Up changed (or became known).
func transition(st Status, r Result, rise, fall int) (Status, bool) {
	if st.Known && st.Last.OK == r.OK {
		st.Consecutive++
	} else {
		st.Consecutive = 1
	}
	st.Last = r
	st.Probes++
	switch {
	case !st.Known:
		st.Known, st.Up = true, r.OK
	case st.Up && !r.OK && st.Consecutive >= fall:
		st.Up = false
	case !st.Up && r.OK && st.Consecutive >= rise:
		st.Up = true
	default:
		return st, false
	}
	st.Since = r.At
	return st, true
}

// Run probes until ctx ends, waiting Delay between probes, and returns
// ctx's error. It starts no goroutine of its own (a probe may, and waits for
// it), so when Run returns nothing it started is left running. Run one Run
// per Checker at a time.
func (c *Checker) Run(ctx context.Context) error {
	if c.Probe == nil {
		return ErrNoProbe
	}
	t := time.NewTimer(c.Delay(c.Status(), rand.Float64()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		st := c.CheckOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t.Reset(c.Delay(st, rand.Float64()))
	}
}

// Marker takes health marks for named members, as backend.Pool's SetUp
// does. It lets a Checker feed a pool without this package importing it.
type Marker interface {
	SetUp(name string, up bool)
}

// MarkPool returns an OnChange callback that marks the checked member up or
// down in m, a backend.Pool or anything with its SetUp method: every change
// becomes m.SetUp(st.Name, st.Up).
func MarkPool(m Marker) func(Status) {
	return func(st Status) { m.SetUp(st.Name, st.Up) }
}
