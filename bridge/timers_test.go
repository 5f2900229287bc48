package bridge

import (
	"cmp"
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitScheduled waits until n sessions are in p's clock, and returns them
// by due time.
func waitScheduled(t testing.TB, p *Poller, n int) []*session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.clock.mu.Lock()
		byDue := append([]*session(nil), p.clock.h...)
		// Sorted here, not popped: heap.Pop would move the sessions' heapIdx.
		slices.SortFunc(byDue, func(a, b *session) int { return cmp.Compare(a.dueAt, b.dueAt) })
		p.clock.mu.Unlock()
		if len(byDue) == n {
			return byDue
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions in the clock; want %d", len(byDue), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scheduled reports whether s is in p's clock, waiting for its next check.
func scheduled(p *Poller, s *session) bool {
	p.clock.mu.Lock()
	defer p.clock.mu.Unlock()
	return s.heapIdx >= 0
}

// receive returns what ch delivers; a stuck channel fails the test after a
// generous guard (a hang, never a timing threshold).
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// TestPollerClockAndWatches: sessions of one Poller share its clock and
// its watch of their context. Each ends at its own idle timeout (a real
// timer for the first; the clock run an hour ahead for the others),
// activity postpones it, a cancelled context ends its sessions only, an
// ended context ends a new session at once, and the shared structures are
// empty once the sessions are gone.
func TestPollerClockAndWatches(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPoller(t)
	short := startJoin(t, context.Background(), false, Options{Poller: p, IdleTimeout: 50 * time.Millisecond})
	r := <-short.done
	assert.Equal(t, EndIdle, r.st.End)
	assert.GreaterOrEqual(t, r.st.Duration, 50*time.Millisecond)

	busy := startJoin(t, context.Background(), false, Options{Poller: p, IdleTimeout: time.Hour})
	s := waitScheduled(t, p, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	c1 := startJoin(t, ctx, false, Options{Poller: p, IdleTimeout: -1})
	c2 := startJoin(t, ctx, true, Options{Poller: p, IdleTimeout: -1})

	// Activity at last postpones busy's timeout from an hour after its
	// start to an hour after last.
	_, err := busy.client.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(busy.backend, make([]byte, 1))
	require.NoError(t, err)
	// The copier records the activity around handing the byte on; wait
	// for it rather than race it.
	require.Eventually(t, func() bool { return s.last.Load() > 0 }, 10*time.Second, time.Millisecond)
	last := time.Duration(s.last.Load())
	p.clock.check(s.start.Add(time.Hour + last/2))
	assert.True(t, scheduled(p, s), "checked, found active and rescheduled")
	assert.Zero(t, s.reason.Load(), "not ended")
	p.clock.check(s.start.Add(time.Hour + last))
	r = <-busy.done
	assert.Equal(t, EndIdle, r.st.End)

	cancel()
	for _, l := range []*legs{c1, c2} {
		r := <-l.done
		assert.Equal(t, EndCanceled, r.st.End)
		assert.ErrorIs(t, r.err, context.Canceled)
	}
	late := startJoin(t, ctx, false, Options{Poller: p})
	r = <-late.done
	assert.Equal(t, EndCanceled, r.st.End, "an ended context ends a new session at once")

	p.clock.mu.Lock()
	assert.Empty(t, p.clock.h)
	p.clock.mu.Unlock()
	p.watches.mu.Lock()
	assert.Empty(t, p.watches.m)
	p.watches.mu.Unlock()
}

// TestPollerEndingsApart: the Poller's clock and its context watch end
// many sessions from one goroutine; a session whose Hooks.End is slow (here:
// blocked until the other session has ended) holds up no other session's
// ending. The slow session is the first the clock or the watch ends.
func TestPollerEndingsApart(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		end  func(p *Poller, cancel func())
		want End
	}{
		{"idle timeout", Options{IdleTimeout: time.Hour}, func(p *Poller, _ func()) {
			p.clock.check(time.Now().Add(2 * time.Hour)) // both are due
		}, EndIdle},
		{"context", Options{IdleTimeout: -1}, func(_ *Poller, cancel func()) { cancel() }, EndCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			testEnded := make(chan struct{}) // frees a stuck hook if the test fails
			t.Cleanup(func() { close(testEnded) })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := newPoller(t)
			otherEnded := make(chan struct{})
			other, slow := tt.opt, tt.opt
			other.Poller, slow.Poller = p, p
			other.Hooks.End = func(Stats, error) { close(otherEnded) }
			slow.Hooks.End = func(Stats, error) {
				select {
				case <-otherEnded:
				case <-testEnded:
				}
			}
			// The clock checks the earlier due first; the watch, the later
			// session of a context first.
			first, second := slow, other
			if tt.want == EndCanceled {
				first, second = other, slow
			}
			l1 := startJoin(t, ctx, false, first)
			waitScheduledOrWatched(t, p, 1)
			l2 := startJoin(t, ctx, false, second)
			for _, s := range waitScheduledOrWatched(t, p, 2) {
				waitParked(t, s) // an ending then finishes s where it runs
			}

			ended := make(chan struct{})
			go func() {
				defer close(ended)
				tt.end(p, cancel)
			}()
			receive(t, otherEnded, "end of the other session while the slow one's hook ran")
			receive(t, ended, "return from the clock's check")
			for _, l := range []*legs{l1, l2} {
				r := receive(t, l.done, "end of a session")
				assert.Equal(t, tt.want, r.st.End)
			}
		})
	}
}

// waitScheduledOrWatched waits until n sessions are in p's clock or in its
// watch of a context, and returns them.
func waitScheduledOrWatched(t testing.TB, p *Poller, n int) []*session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := make(map[*session]bool)
		p.clock.mu.Lock()
		for _, s := range p.clock.h {
			seen[s] = true
		}
		p.clock.mu.Unlock()
		p.watches.mu.Lock()
		for _, cw := range p.watches.m {
			for s := cw.head; s != nil; s = s.next {
				seen[s] = true
			}
		}
		p.watches.mu.Unlock()
		if len(seen) == n {
			var all []*session
			for s := range seen {
				all = append(all, s)
			}
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions in the clock and watches; want %d", len(seen), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
