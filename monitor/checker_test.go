package monitor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// epoch is the fake clock's start; result i happens at epoch + i seconds.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func result(i int, ok bool) Result {
	r := Result{OK: ok, At: epoch.Add(time.Duration(i) * time.Second)}
	if !ok {
		r.Err = &Error{Kind: ErrConnect, Reason: "connect: refused"}
	}
	return r
}

func TestCheckerStateMachine(t *testing.T) {
	const U, D = true, false
	tests := []struct {
		name       string
		rise, fall int
		results    []bool
		up         []bool // Up after each result
		changes    []int  // indexes of results that changed the state
	}{
		{name: "first success decides up", rise: 2, fall: 3,
			results: []bool{U, U}, up: []bool{U, U}, changes: []int{0}},
		{name: "first failure decides down", rise: 2, fall: 3,
			results: []bool{D, D}, up: []bool{D, D}, changes: []int{0}},
		{name: "fall 3 needs three failures in a row", rise: 2, fall: 3,
			results: []bool{U, D, D, U, D, D, D, D},
			up:      []bool{U, U, U, U, U, U, D, D}, changes: []int{0, 6}},
		{name: "rise 2 needs two successes in a row", rise: 2, fall: 3,
			results: []bool{D, U, D, U, U, U},
			up:      []bool{D, D, D, D, U, U}, changes: []int{0, 4}},
		{name: "defaults rise 1 fall 3", rise: 0, fall: 0,
			results: []bool{U, D, D, D, U},
			up:      []bool{U, U, U, D, U}, changes: []int{0, 3, 4}},
		{name: "fall 1 flaps with every result", rise: 1, fall: 1,
			results: []bool{U, D, U, D},
			up:      []bool{U, D, U, D}, changes: []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Status
			c := &Checker{Name: "m1", Rise: tt.rise, Fall: tt.fall, OnChange: func(st Status) { got = append(got, st) }}
			for i, ok := range tt.results {
				st := c.Record(result(i, ok))
				assert.Equal(t, tt.up[i], st.Up, "Up after result %d", i)
				assert.Equal(t, uint64(i+1), st.Probes)
			}
			var idx []int
			for _, st := range got {
				idx = append(idx, int(st.Since.Sub(epoch)/time.Second))
				assert.Equal(t, "m1", st.Name)
			}
			assert.Equal(t, tt.changes, idx, "OnChange called exactly on transitions")
		})
	}
}

func TestCheckerStatusFields(t *testing.T) {
	c := &Checker{Name: "m1", Addr: "10.0.0.1:25", Fall: 2}
	assert.False(t, c.Status().Known)
	c.Record(result(0, true))
	c.Record(result(1, true))
	st := c.Record(result(2, false))
	assert.True(t, st.Up)
	assert.Equal(t, 1, st.Consecutive, "failure streak")
	assert.Equal(t, epoch, st.Since)
	assert.ErrorIs(t, st.Last.Err, ErrConnect)
	st = c.Record(result(3, false))
	assert.False(t, st.Up)
	assert.Equal(t, 2, st.Consecutive)
	assert.Equal(t, epoch.Add(3*time.Second), st.Since)
	assert.Equal(t, st, c.Status())
	assert.Equal(t, "10.0.0.1:25", c.Status().Addr)
}

func TestCheckerDelay(t *testing.T) {
	known := func(up bool) Status { return Status{Known: true, Up: up} }
	tests := []struct {
		name string
		c    *Checker
		st   Status
		u    float64
		want time.Duration
	}{
		{name: "up uses interval, centre", c: &Checker{}, st: known(true), u: 0.5, want: 5 * time.Second},
		{name: "down uses down time", c: &Checker{}, st: known(false), u: 0.5, want: 30 * time.Second},
		{name: "jitter low end", c: &Checker{}, st: known(true), u: 0, want: 4500 * time.Millisecond},
		{name: "jitter high end", c: &Checker{}, st: known(true), u: 1, want: 5500 * time.Millisecond},
		{name: "no jitter", c: &Checker{Jitter: -1}, st: known(true), u: 0, want: 5 * time.Second},
		{name: "jitter capped at half", c: &Checker{Jitter: 3}, st: known(true), u: 0, want: 2500 * time.Millisecond},
		{name: "negative down time means interval", c: &Checker{Interval: time.Second, DownTime: -1, Jitter: -1}, st: known(false), want: time.Second},
		{name: "custom down time", c: &Checker{DownTime: time.Minute, Jitter: -1}, st: known(false), want: time.Minute},
		{name: "first probe spread", c: &Checker{}, st: Status{}, u: 0.5, want: 250 * time.Millisecond},
		{name: "first probe at once without jitter", c: &Checker{Jitter: -1}, st: Status{}, u: 0.9, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.c.Delay(tt.st, tt.u))
		})
	}
}

// TestCheckerJitterBounds sweeps u over [0, 1) and checks every delay stays
// within ±Jitter of the base.
func TestCheckerJitterBounds(t *testing.T) {
	for _, j := range []float64{0, 0.05, 0.1, 0.25, 0.5} {
		c := &Checker{Interval: time.Second, DownTime: 10 * time.Second, Jitter: j}
		eff := c.jitter()
		for _, up := range []bool{true, false} {
			base := c.Interval
			if !up {
				base = c.DownTime
			}
			lo := time.Duration(float64(base) * (1 - eff))
			hi := time.Duration(float64(base) * (1 + eff))
			for i := range 1000 {
				d := c.Delay(Status{Known: true, Up: up}, float64(i)/1000)
				require.GreaterOrEqual(t, d, lo)
				require.LessOrEqual(t, d, hi)
			}
		}
	}
}

func TestCheckerConcurrentStatus(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	c := &Checker{Name: "m1", Fall: 1}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					st := c.Status()
					assert.LessOrEqual(t, st.Consecutive, int(st.Probes))
				}
			}
		}()
	}
	for i := range 2000 {
		c.Record(result(i, i%3 != 0))
	}
	close(stop)
	wg.Wait()
	assert.Equal(t, uint64(2000), c.Status().Probes)
}

func TestCheckOnce(t *testing.T) {
	var sawDeadline atomic.Bool
	probe := ProbeFunc(func(ctx context.Context, addr string) Result {
		_, ok := ctx.Deadline()
		sawDeadline.Store(ok)
		if addr == "bad:1" {
			return Result{} // a careless ProbeFunc: no OK, no reason
		}
		return Result{OK: true}
	})
	c := &Checker{Addr: "good:1", Probe: probe}
	st := c.CheckOnce(context.Background())
	assert.True(t, st.Up)
	assert.True(t, sawDeadline.Load(), "per-probe timeout applied")
	assert.False(t, st.Last.At.IsZero(), "At filled in")

	c2 := &Checker{Addr: "bad:1", Probe: probe}
	st = c2.CheckOnce(context.Background())
	assert.False(t, st.Up)
	assert.ErrorIs(t, st.Last.Err, ErrProtocol)

	var none Checker
	st = none.CheckOnce(context.Background())
	assert.ErrorIs(t, st.Last.Err, ErrNoProbe)
	assert.ErrorIs(t, none.Run(context.Background()), ErrNoProbe)
}

// TestCheckOnceCancelled: a probe cut short by the caller's context is not
// recorded, so shutting down never marks a backend down.
func TestCheckOnceCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{Probe: ProbeFunc(func(ctx context.Context, _ string) Result {
		cancel()
		<-ctx.Done()
		return Result{Err: ctx.Err()}
	})}
	st := c.CheckOnce(ctx)
	assert.False(t, st.Known)
	assert.Equal(t, uint64(0), st.Probes)
}

// TestCheckerRun drives Run with a scripted probe: up, three failures,
// then up again; OnChange sees exactly the three transitions, and Run
// returns the context's error with nothing left running.
func TestCheckerRun(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	script := []bool{true, false, false, false, true}
	var n atomic.Int32
	changes := make(chan Status, 10)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{
		Name:     "m1",
		Interval: time.Millisecond,
		DownTime: time.Millisecond,
		Probe: ProbeFunc(func(context.Context, string) Result {
			i := int(n.Add(1)) - 1
			if i >= len(script) {
				return Result{OK: true}
			}
			return result(i, script[i])
		}),
		OnChange: func(st Status) { changes <- st },
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var ups []bool
	for range 3 {
		ups = append(ups, (<-changes).Up)
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, []bool{true, false, true}, ups)
	assert.Empty(t, changes, "no change beyond the transitions")
}

type markPool struct {
	mu sync.Mutex
	up map[string]bool
}

func (p *markPool) SetUp(name string, up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up[name] = up
}

func TestMarkPool(t *testing.T) {
	p := &markPool{up: map[string]bool{}}
	c := &Checker{Name: "a", OnChange: MarkPool(p)}
	c.Record(result(0, true))
	assert.Equal(t, map[string]bool{"a": true}, p.up)
	c.Fall = 1
	c.Record(result(1, false))
	assert.Equal(t, map[string]bool{"a": false}, p.up)
}

func TestErrorUnwrap(t *testing.T) {
	inner := errors.New("boom")
	e := &Error{Kind: ErrTLS, Reason: "TLS handshake failed: boom", Err: inner}
	assert.ErrorIs(t, e, ErrTLS)
	assert.ErrorIs(t, e, inner)
	assert.NotErrorIs(t, e, ErrConnect)
	assert.Equal(t, "TLS handshake failed: boom", e.Error())
	assert.ErrorIs(t, &Error{Kind: ErrAuth}, ErrAuth)
}
