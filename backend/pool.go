package backend

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Policy chooses which member of a Pool gets the next connection.
type Policy int

const (
	// RoundRobin takes the members in turn: the zero value.
	RoundRobin Policy = iota
	// LeastConn takes the member with the fewest active connections
	// relative to its weight (active/weight), ties in round-robin order.
	LeastConn
	// Weighted is smooth weighted round robin as nginx does it: a member of
	// weight 5 among members of weight 1 gets 5 of every 7 connections,
	// spread out rather than in a burst.
	Weighted
)

// String returns "roundrobin", "leastconn" or "weighted".
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "roundrobin"
	case LeastConn:
		return "leastconn"
	case Weighted:
		return "weighted"
	}
	return "unknown"
}

// Member is one backend server of a Pool (a NetScaler service group member).
type Member struct {
	// Name identifies the member in SetUp, Drain, Remove and Members, and
	// in Conn.Member. If empty, Dialer.Addr.
	Name string
	// Dialer connects to the member. It must not be nil.
	Dialer *Dialer
	// Weight is the member's share for Weighted and LeastConn. If zero, 1.
	// Negative weights are an error.
	Weight int
}

// MemberStatus is a snapshot of one member's state and counters.
type MemberStatus struct {
	Name     string
	Addr     string
	Weight   int
	Up       bool   // as last set by SetUp; members start up
	Draining bool   // takes no new connections
	Active   int    // connections dialled and not yet closed
	Dials    uint64 // dial attempts
	Failures uint64 // dial attempts that failed
}

// member is a Member with its mutable state, guarded by Pool.mu.
type member struct {
	name     string
	dialer   *Dialer
	weight   int
	up       bool
	draining bool
	active   int
	dials    uint64
	failures uint64
	current  int // smooth weighted round robin state
}

func (m *member) eligible() bool { return m.up && !m.draining }

// Pool spreads connections over members by its Policy, skipping members
// that are down or draining, and fails over to the next member when a dial
// fails. The zero value is an empty round-robin pool; add members with Add.
// A Pool is safe for concurrent use; set Policy before the first Dial.
//
// A Pool does not probe its members: the monitor package (or an operator)
// marks them with SetUp. Dial failures are counted, not acted upon, so one
// client's unlucky dial never takes a member out for everyone.
type Pool struct {
	// Policy chooses among the eligible members. If zero, RoundRobin.
	Policy Policy

	mu      sync.Mutex
	members []*member
	next    int // round-robin cursor
}

// NewPool returns a pool with the given policy and members.
func NewPool(policy Policy, members ...Member) (*Pool, error) {
	p := &Pool{Policy: policy}
	for _, m := range members {
		if err := p.Add(m); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Add adds a member, up and not draining. Names must be unique.
func (p *Pool) Add(m Member) error {
	if m.Dialer == nil {
		return fmt.Errorf("%w: member %q has no Dialer", ErrConfig, m.Name)
	}
	if m.Weight < 0 {
		return fmt.Errorf("%w: member %q has negative weight", ErrConfig, m.Name)
	}
	if m.Name == "" {
		m.Name = m.Dialer.Addr
	}
	if m.Weight == 0 {
		m.Weight = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.find(m.Name) != nil {
		return fmt.Errorf("%w: duplicate member %q", ErrConfig, m.Name)
	}
	p.members = append(p.members, &member{name: m.Name, dialer: m.Dialer, weight: m.Weight, up: true})
	return nil
}

// Remove takes a member out of the pool. Its open connections stay open
// and are no longer counted anywhere. It reports whether name was found.
// Drain first and wait for Active to reach 0 for a clean removal.
func (p *Pool) Remove(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, m := range p.members {
		if m.name == name {
			p.members = append(p.members[:i], p.members[i+1:]...)
			return true
		}
	}
	return false
}

// SetUp marks a member up or down; a down member gets no new connections.
// The monitor calls it on state changes. Unknown names are ignored.
func (p *Pool) SetUp(name string, up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.find(name); m != nil {
		m.up = up
	}
}

// Drain starts or ends draining a member: while draining it gets no new
// connections and its existing ones run to their end, for maintenance and
// rollback. Unknown names are ignored.
func (p *Pool) Drain(name string, draining bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.find(name); m != nil {
		m.draining = draining
	}
}

// Members returns a snapshot of every member, in the order added.
func (p *Pool) Members() []MemberStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]MemberStatus, len(p.members))
	for i, m := range p.members {
		out[i] = m.status()
	}
	return out
}

// Member returns the status of the named member and whether it exists.
func (p *Pool) Member(name string) (MemberStatus, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.find(name); m != nil {
		return m.status(), true
	}
	return MemberStatus{}, false
}

func (m *member) status() MemberStatus {
	return MemberStatus{
		Name: m.name, Addr: m.dialer.Addr, Weight: m.weight, Up: m.up, Draining: m.draining,
		Active: m.active, Dials: m.dials, Failures: m.failures,
	}
}

// find returns the named member; p.mu must be held.
func (p *Pool) find(name string) *member {
	for _, m := range p.members {
		if m.name == name {
			return m
		}
	}
	return nil
}

// Dial connects to a member chosen by Policy. If the dial fails (connection
// refused, timeout, TLS failure, refusal greeting, XCLIENT refused) it tries
// the next eligible member not yet tried, as long as ctx is not done. With
// no eligible member left it returns an error wrapping ErrNoBackend and the
// last dial error; with none at all, at once. Closing the returned Conn
// releases its slot for LeastConn.
//
// Each attempt is bounded by its member's ConnectTimeout and
// HandshakeTimeout, and all of them by ctx: a member that accepts and never
// greets costs up to its HandshakeTimeout of the caller's deadline. Keep
// HandshakeTimeout well below the caller's deadline so failover has time to
// reach a healthy member; once ctx is done Dial returns ctx's error.
func (p *Pool) Dial(ctx context.Context, ci ClientInfo) (*Conn, error) {
	var buf [8]*member
	tried := buf[:0]
	var last error
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m := p.acquire(tried)
		if m == nil {
			if last == nil {
				return nil, ErrNoBackend
			}
			return nil, fmt.Errorf("%w: %w", ErrNoBackend, last)
		}
		tried = append(tried, m)
		c, err := m.dialer.Dial(ctx, ci)
		if err == nil {
			c.Member = m.name
			c.release = func() { p.done(m, false) }
			return c, nil
		}
		// When the caller's time is up no member is to blame: no failure
		// is counted and no other member tried.
		// (A member's own ConnectTimeout also reports DeadlineExceeded, so
		// the errors cannot tell; the context can.)
		callerDone := ctxDone(ctx)
		p.done(m, !callerDone)
		if callerDone {
			return nil, err
		}
		last = err
	}
}

// acquire picks a member not in tried and counts the attempt as an active
// connection, so concurrent LeastConn picks see it at once.
func (p *Pool) acquire(tried []*member) *member {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.pick(tried)
	if m != nil {
		m.active++
		m.dials++
	}
	return m
}

// done undoes acquire's active count, and counts a failure.
func (p *Pool) done(m *member, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.active--
	if failed {
		m.failures++
	}
}

// ctxDone reports whether ctx is cancelled or its deadline has passed,
// even if its timer has not fired yet.
func ctxDone(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
