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
// (or is closed or reset), the Poller starts a new goroutine that carries
// on. An idle session parked in both directions then costs only its heap
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
// holds no runtime object of its own.
//
// The zero value is ready to use on Linux; elsewhere it parks nothing and
// sessions keep their goroutines. It starts one goroutine, blocked in
// epoll_wait, at the first park. Close stops it; sessions parked then are
// resumed on goroutines of their own and no longer park. A Poller may be
// shared by any number of sessions.
type Poller struct {
	// ParkAfter is how long a direction waits for bytes on its goroutine
	// before parking: chatty sessions never park, idle ones soon do. If
	// zero, 500ms. If negative, nothing parks.
	ParkAfter time.Duration

	mu      sync.RWMutex // arms hold it shared, so Close cannot close the epoll set under one
	sys     pollSys
	started bool
	closed  bool
	next    uint64                // token of the next entry; 0 is the wake-up pipe
	entries map[uint64]*pollEntry // armed or armable entries by token
	done    chan struct{}         // closed when the wait goroutine has returned

	clock   clock   // the timeouts of its sessions
	watches watches // the contexts of its sessions
}

// pollEntry is one direction's registration: its socket stays in the
// epoll set for the life of the session, disarmed after each wake-up
// (EPOLLONESHOT) and re-armed at each park.
type pollEntry struct {
	token uint64
	rc    syscall.RawConn
	added bool // asked to join the epoll set; owned by the direction
	s     *session
	d     *direction
}

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

// register returns a new entry for d's socket rc, not yet armed; s.wake(d)
// runs on the Poller's goroutine when rc becomes readable after an arm.
func (p *Poller) register(rc syscall.RawConn, s *session, d *direction) (*pollEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPollerClosed
	}
	if !p.started {
		if err := p.sys.open(); err != nil {
			return nil, err
		}
		p.started = true
		p.entries = make(map[uint64]*pollEntry)
		p.done = make(chan struct{})
		go p.wait()
	}
	p.next++
	e := &pollEntry{token: p.next, rc: rc, s: s, d: d}
	p.entries[e.token] = e
	return e, nil
}

// arm asks for one wake-up when e's socket is readable. If it already is,
// the wake-up comes at once. add says e joins the epoll set now. The
// caller must not touch e or its direction after a successful arm: the
// wake-up may already be running it.
func (p *Poller) arm(e *pollEntry, add bool) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errPollerClosed
	}
	var serr error
	err := e.rc.Control(func(fd uintptr) {
		serr = p.sys.arm(int(fd), e.token, add)
	})
	if err == nil {
		err = serr
	}
	return err
}

// unregister forgets e: a wake-up still on its way is dropped. The socket
// leaves the epoll set when it is closed.
func (p *Poller) unregister(e *pollEntry) {
	p.mu.Lock()
	delete(p.entries, e.token)
	p.mu.Unlock()
}

// wait is the Poller's goroutine: it hands each readable socket's entry
// back to its session until Close.
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
			e := p.entries[t]
			p.mu.RUnlock()
			if e != nil {
				e.s.wake(e.d)
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
	if !started {
		return nil
	}
	p.sys.interrupt()
	<-p.done
	p.sys.close()
	p.mu.Lock()
	entries := p.entries
	p.entries = nil
	p.mu.Unlock()
	for _, e := range entries {
		e.s.wake(e.d) // a direction not parked ignores it
	}
	return nil
}
