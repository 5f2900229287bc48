package bridge

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// defaultParkAfter is how long a direction waits for bytes on a goroutine
// of its own before it parks in a Poller, when Poller.ParkAfter is zero.
const defaultParkAfter = 500 * time.Millisecond

// errPollerClosed reports a park refused because the Poller was closed.
var errPollerClosed = errors.New("bridge: poller closed")

// A Poller holds idle sessions without a goroutine. A direction of a
// session that has had nothing to read for ParkAfter registers its socket
// with the Poller and its goroutine exits; when the socket becomes readable
// (or is closed or reset), the direction carries on on a goroutine of the
// Poller's runners (below). An idle session parked in both directions then costs only its heap
// objects: no goroutine stack, no buffer. Join and Start use a Poller when
// Options.Poller is set.
//
// A direction can park when its source is a plain TCP or Unix socket, or a
// *tls.Conn over one wrapped by the conn the starttls and backend packages
// put under every *tls.Conn they make. Other sources (a wrapper that reads
// ahead, a *tls.Conn made elsewhere) keep their goroutine as without a
// Poller.
//
// Sessions started with a Poller also share its clock (one runtime timer
// for all their idle and maximum-duration timeouts) and its watch of their
// context (one context.AfterFunc per distinct context), so a parked session
// holds no runtime object of its own. The clock and the watch only check:
// a session they end ends on a goroutine of its own (closing its conns,
// Hooks.End), so a slow Hooks.End of one session never delays another's
// timeout.
//
// Start runs the directions of a session with a Poller, and the Poller
// resumes parked ones, on reused goroutines (runners): a runner whose
// direction is done waits for the next while at most 16 wait, so that the
// stack a session's end grows (closing its conns, Hooks.End and what the
// application does in it) is grown once per runner, not once per session.
// An idle runner holds its stack and no session.
//
// The zero value is ready to use on Linux; elsewhere it parks nothing and
// sessions keep their goroutines. It starts one goroutine, blocked in
// epoll_wait, at the first park. Close stops it and the idle runners;
// sessions parked then are resumed on goroutines of their own and no
// longer park. A Poller may be shared by any number of sessions.
type Poller struct {
	// ParkAfter is how long a direction waits for bytes on its goroutine
	// before parking: chatty sessions never park, idle ones soon do. If
	// zero, 500ms. If negative, nothing parks.
	ParkAfter time.Duration

	mu       sync.RWMutex // arms hold it shared, so Close cannot close the epoll set under one
	sys      pollSys
	started  bool
	closed   bool
	next     uint64              // token of the next session registered
	sessions map[uint64]*session // sessions registered, by token
	done     chan struct{}       // closed when the wait goroutine has returned

	clock   clock   // the timeouts of its sessions
	watches watches // the contexts of its sessions
	runners runners // the goroutines its sessions' directions run on
}

// A session registers with the Poller once, when a direction first parks:
// it gets a token, and each of its sockets joins the epoll set with the
// token and the direction as its data (token<<1 | direction; 0 is the
// wake-up pipe). A socket stays in the set for the life of the session,
// disarmed after each wake-up (EPOLLONESHOT) and re-armed at each park.

func (p *Poller) parkAfter() time.Duration {
	if p.ParkAfter == 0 {
		return defaultParkAfter
	}
	return p.ParkAfter
}

// enabled reports whether sessions may park in p.
func (p *Poller) enabled() bool {
	return p != nil && pollSupported && p.ParkAfter >= 0
}

// register gives s its token, once, starting the Poller's goroutine at the
// first session.
func (p *Poller) register(s *session) error {
	if s.token.Load() != 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errPollerClosed
	}
	if s.token.Load() != 0 { // the other direction got here first
		return nil
	}
	if !p.started {
		if err := p.sys.open(); err != nil {
			return err
		}
		p.started = true
		p.sessions = make(map[uint64]*session)
		p.done = make(chan struct{})
		go p.wait()
	}
	p.next++
	p.sessions[p.next] = s
	s.token.Store(p.next)
	return nil
}

// arm asks for one wake-up of direction dir of s when the socket behind rc
// is readable. If it already is, the wake-up comes at once. add says the
// socket joins the epoll set now. The caller must not touch the direction
// after a successful arm: the wake-up may already be running it.
func (p *Poller) arm(s *session, dir Direction, rc syscall.RawConn, add bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errPollerClosed
	}
	data := s.token.Load()<<1 | uint64(dir)
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = p.sys.arm(int(fd), data, add)
	})
	if err == nil {
		err = serr
	}
	return err
}

// unregister forgets s: a wake-up still on its way is dropped. Its sockets
// leave the epoll set when they are closed.
func (p *Poller) unregister(s *session) {
	if t := s.token.Load(); t != 0 {
		p.mu.Lock()
		delete(p.sessions, t)
		p.mu.Unlock()
	}
}

// wait is the Poller's goroutine: it hands each readable socket back to its
// session's direction until Close.
func (p *Poller) wait() {
	defer close(p.done)
	var tokens []uint64
	for {
		var err error
		tokens, err = p.sys.wait(tokens[:0])
		if err != nil {
			return // closed under us: nothing more to wait for
		}
		for _, t := range tokens {
			if t == 0 {
				return // Close
			}
			p.mu.RLock()
			s := p.sessions[t>>1]
			p.mu.RUnlock()
			if s != nil {
				s.wake(&s.dirs[t&1])
			}
		}
	}
}

// Close stops the Poller's goroutine and wakes every parked session, which
// then carries on with goroutines of its own. Later parks are refused.
// Close waits for the goroutine to return; it is safe to call more than
// once.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	started := p.started
	p.mu.Unlock()
	p.runners.stop()
	if !started {
		return nil
	}
	p.sys.interrupt()
	<-p.done
	p.sys.close()
	p.mu.Lock()
	sessions := p.sessions
	p.sessions = nil
	p.mu.Unlock()
	for _, s := range sessions {
		s.wake(&s.dirs[0]) // a direction not parked ignores it
		s.wake(&s.dirs[1])
	}
	return nil
}
