package bridge

import (
	"sync"
	"sync/atomic"
)

// maxIdleRunners bounds the goroutines a Poller keeps waiting for the next
// direction to run.
const maxIdleRunners = 16

// runners are the goroutines a Poller's sessions run their directions on,
// reused as the root package's workers are: a direction's goroutine grows
// its stack when the session ends (closing the conns, Hooks.End, the
// application's logging and metrics under it), and a goroutine started per
// direction grew it, and copied it, once per session. A direction handed
// to an idle runner runs on a stack grown already. A runner that finishes
// its direction waits for the next one while fewer than maxIdleRunners
// wait, and returns otherwise, or at the Poller's Close.
type runners struct {
	once sync.Once
	jobs chan job      // unbuffered: a send succeeds only to an idle runner
	quit chan struct{} // closed by Poller.Close
	idle atomic.Int32
}

// job is a direction to run.
type job struct {
	s *session
	d *direction
}

func (r *runners) init() {
	r.once.Do(func() {
		r.jobs = make(chan job)
		r.quit = make(chan struct{})
	})
}

// goRun runs d of s on an idle runner, or on a new goroutine that becomes
// a runner when d is done.
func (p *Poller) goRun(s *session, d *direction) {
	r := &p.runners
	r.init()
	select {
	case <-r.quit: // closed: no runner waits any more
		go s.run(d)
		return
	default:
	}
	select {
	case r.jobs <- job{s, d}:
	default:
		go r.run(job{s, d})
	}
}

// run is a runner: it runs j, then the jobs handed to it while it is one
// of at most maxIdleRunners idle runners, until the Poller closes. It is
// named, rather than a closure, so stack dumps say what a goroutine does.
func (r *runners) run(j job) {
	for {
		j.s.run(j.d)
		j = job{} // an idle runner holds no session
		if r.idle.Add(1) > maxIdleRunners {
			r.idle.Add(-1)
			return
		}
		select {
		case j = <-r.jobs:
			r.idle.Add(-1)
		case <-r.quit:
			r.idle.Add(-1)
			return
		}
	}
}

// stop makes the idle runners return, and the busy ones when their
// direction is done.
func (r *runners) stop() {
	r.init()
	select {
	case <-r.quit:
	default:
		close(r.quit)
	}
}
