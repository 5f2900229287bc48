package bridge

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// A session's idle timeout, maximum duration and context cancellation are
// watched in one of two ways. Without a Poller it has a runtime timer and a
// context.AfterFunc of its own. With one, it is an entry in the Poller's
// clock (one runtime timer for all its sessions) and in the Poller's watch
// of its context (one context.AfterFunc per distinct context): an idle
// session then holds a few words in shared structures instead of two
// runtime objects of its own, which is most of what remains per session
// once its goroutines are gone.

// startTimers arms the session's timeouts and cancellation. Nothing runs
// until a timeout is due or the context ends.
func (s *session) startTimers() {
	s.heapIdx = -1
	if s.poller != nil {
		s.poller.clock.schedule(s)
		if s.ctx.Done() != nil {
			s.poller.watches.add(s)
		}
		return
	}
	if due := s.nextDue(); due >= 0 {
		s.timerMu.Lock() // onTimer may run before the assignment otherwise
		s.timer = time.AfterFunc(due, s.onTimer)
		s.timerMu.Unlock()
	}
	s.stopCtx = noStop
	if s.ctx.Done() != nil { // context.Background and the like never end
		s.stopCtx = context.AfterFunc(s.ctx, s.canceled)
	}
}

// stopTimers disarms everything startTimers armed; checks already running
// see stopped and do nothing.
func (s *session) stopTimers() {
	s.timerMu.Lock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerMu.Unlock()
	if s.poller != nil {
		s.poller.clock.unschedule(s)
		s.poller.watches.remove(s) // s.watch is read under the watches' lock
		return
	}
	s.stopCtx()
}

func (s *session) canceled() { s.abort(EndCanceled) }

func noStop() bool { return false }

// nextDue returns when, counted from the session's start, its next timeout
// check is due, or -1 if it has none.
func (s *session) nextDue() time.Duration {
	due := time.Duration(-1)
	if idle := s.idleNow(); idle > 0 {
		due = time.Duration(s.last.Load()) + idle
	}
	if m := s.opt.MaxDuration; m > 0 && (due < 0 || m < due) {
		due = m
	}
	return due
}

// expired returns the timeout that has passed at now (counted from the
// session's start), or 0.
func (s *session) expired(now time.Duration) End {
	if m := s.opt.MaxDuration; m > 0 && now >= m {
		return EndMaxDuration
	}
	if idle := s.idleNow(); idle > 0 && now-time.Duration(s.last.Load()) >= idle {
		return EndIdle
	}
	return 0
}

// onTimer runs when the session's own timer fires, on a goroutine of its
// own: it ends the session on a timeout that passed, or re-arms the timer
// for the next check.
func (s *session) onTimer() {
	now := time.Since(s.start)
	rearm := func() { s.timer.Reset(s.nextDue() - now) }
	if reason := s.checkTimeouts(now, rearm); reason != 0 {
		s.abort(reason)
	}
}

// onClock is onTimer for a session in a Poller's clock, at now. The clock
// checks many sessions on one goroutine, so the ending goes to a goroutine
// of its own.
func (s *session) onClock(c *clock, now time.Time) {
	if reason := s.checkTimeouts(now.Sub(s.start), func() { c.schedule(s) }); reason != 0 {
		s.endApart(reason)
	}
}

// checkTimeouts returns the timeout that has passed at now, or else calls
// rearm and returns 0, under timerMu so that stopTimers comes after a
// re-arm or stops the next check.
func (s *session) checkTimeouts(now time.Duration, rearm func()) End {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.stopped {
		return 0
	}
	reason := s.expired(now)
	if reason == 0 {
		rearm()
	}
	return reason
}

// endApart ends the session for reason on a goroutine of its own. The
// Poller's clock and its watch of a context end many sessions from one
// goroutine, and ending a session whose directions are parked finishes it
// there, Hooks.End (an application's logging, a limiter's release, a store
// write) included: one slow ending must not hold up the next session's.
// The goroutine holds the session (see hold), so the session finishes,
// and Join returns, only once the goroutine is done with it.
func (s *session) endApart(reason End) {
	if s.hold() {
		go s.ending(reason)
	}
}

// ending is endApart's goroutine, named for stack dumps.
func (s *session) ending(reason End) {
	s.abort(reason)
	s.release()
}

// hold keeps the session from finishing until the matching release, and
// reports false, holding nothing, if it has finished already.
func (s *session) hold() bool {
	for {
		n := s.live.Load()
		if n == 0 {
			return false
		}
		if s.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a hold or a finished direction's part: the last one
// finishes the session, on its goroutine.
func (s *session) release() {
	if s.live.Add(-1) == 0 {
		s.finish()
	}
}

// clock runs the timeout checks of a Poller's sessions on one runtime
// timer set for the earliest of them. Activity does not touch it: a check
// that finds the session active schedules the next one, as onTimer does.
type clock struct {
	mu    sync.Mutex
	epoch time.Time
	h     dueHeap
	timer *time.Timer
	armed int64 // dueAt the timer is set for; 0 when stopped or unset
}

// schedule puts s in the clock at its next due time, if it has one.
func (c *clock) schedule(s *session) {
	due := s.nextDue()
	if due < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.IsZero() {
		c.epoch = time.Now()
	}
	s.dueAt = int64(s.start.Sub(c.epoch) + due)
	if s.dueAt <= 0 {
		s.dueAt = 1
	}
	if s.heapIdx >= 0 {
		heap.Fix(&c.h, s.heapIdx)
	} else {
		heap.Push(&c.h, s)
	}
	c.arm()
}

// unschedule takes s out of the clock.
func (c *clock) unschedule(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.heapIdx >= 0 {
		heap.Remove(&c.h, s.heapIdx)
	}
}

// arm sets the timer for the earliest entry, if that changed. c.mu is held.
func (c *clock) arm() {
	if len(c.h) == 0 {
		return // a timer already set fires and finds nothing: harmless
	}
	first := c.h[0].dueAt
	if c.armed != 0 && c.armed <= first {
		return // it fires in time for first, and re-arms then
	}
	c.armed = first
	d := time.Duration(first) - time.Since(c.epoch)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.fire)
	} else {
		c.timer.Reset(d)
	}
}

// fire runs the checks that are due, on the timer's goroutine, and sets
// the timer for the next one.
func (c *clock) fire() { c.check(time.Now()) }

// check runs the checks due at now and sets the timer for the next one.
// Each check is quick: a session that timed out ends on a goroutine of
// its own.
func (c *clock) check(now time.Time) {
	c.mu.Lock()
	at := int64(now.Sub(c.epoch))
	var due []*session
	for len(c.h) > 0 && c.h[0].dueAt <= at {
		due = append(due, heap.Pop(&c.h).(*session))
	}
	c.armed = 0
	c.arm()
	c.mu.Unlock()
	for _, s := range due {
		s.onClock(c, now)
	}
}

// dueHeap orders sessions by dueAt for container/heap.
type dueHeap []*session

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].dueAt < h[j].dueAt }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *dueHeap) Push(x any) {
	s := x.(*session)
	s.heapIdx = len(*h)
	*h = append(*h, s)
}
func (h *dueHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.heapIdx = -1
	return s
}

// watches cancels a Poller's sessions when their context ends, with one
// context.AfterFunc per distinct context (by its Done channel) rather than
// one per session.
type watches struct {
	mu sync.Mutex
	m  map[<-chan struct{}]*ctxWatch
}

// ctxWatch is the list of the sessions of one context.
type ctxWatch struct {
	done <-chan struct{}
	stop func() bool
	head *session
}

// add puts s in the watch of its context. A context that has already ended
// ends s at once.
func (w *watches) add(s *session) {
	done := s.ctx.Done()
	w.mu.Lock()
	cw := w.m[done]
	if cw == nil {
		if w.m == nil {
			w.m = make(map[<-chan struct{}]*ctxWatch)
		}
		cw = &ctxWatch{done: done}
		w.m[done] = cw
		cw.stop = context.AfterFunc(s.ctx, func() { w.cancel(done) })
	}
	s.watch, s.next = cw, cw.head
	if cw.head != nil {
		cw.head.prev = s
	}
	cw.head = s
	w.mu.Unlock()
	if s.ctx.Err() != nil { // ended before the watch could see s
		s.canceled()
	}
}

// remove takes s out of its watch, and drops the watch with its last
// session.
func (w *watches) remove(s *session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cw := s.watch
	if cw == nil {
		return
	}
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		cw.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.watch, s.prev, s.next = nil, nil, nil
	if cw.head == nil {
		cw.stop()
		delete(w.m, cw.done)
	}
}

// cancel ends every session of the context whose Done channel is done,
// each on a goroutine of its own (see endApart).
func (w *watches) cancel(done <-chan struct{}) {
	w.mu.Lock()
	var all []*session
	if cw := w.m[done]; cw != nil {
		for s := cw.head; s != nil; s = s.next {
			all = append(all, s)
		}
	}
	w.mu.Unlock()
	for _, s := range all {
		s.endApart(EndCanceled)
	}
}
