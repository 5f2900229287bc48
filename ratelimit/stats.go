package ratelimit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are a Limiter's statistics: what anvil(8) logs ("max connection
// rate", "max connection count", "max message rate", "max recipient
// rate", "max auth rate", "max cache size"), admission and refusal counts
// since the Limiter was first used, and the counters of the sources asked
// about.
type Stats struct {
	// Admitted counts connections admitted and counted (not trusted).
	Admitted uint64
	// Trusted counts connections admitted from trusted networks, uncounted.
	Trusted uint64
	// Messages and Recipients count MAIL FROM and RCPT TO commands allowed
	// from untrusted sources.
	Messages, Recipients uint64
	// Logins counts the logins AllowLogin let through (trusted sources
	// included); LoginFailures counts the calls to LoginFailed.
	Logins, LoginFailures uint64
	// Refused counts refusals by Kind; Refused[Denied] counts ACL denials.
	Refused map[Kind]uint64
	// Tracked is the number of tracked entries (sources, and the failed
	// logins of sources and user names), or -1 if the Store cannot tell
	// (a Store other than MemoryStore).
	Tracked int
	// MaxInFlight, MaxConnRate, MaxMessageRate, MaxRecipientRate and
	// MaxAuthRate are the highest values any source reached, which source,
	// and when.
	MaxInFlight, MaxConnRate, MaxMessageRate, MaxRecipientRate, MaxAuthRate Peak
	// Sources holds, for each address given to Stats or StatsAt, the
	// statistics of the source it is counted under, if that source is
	// tracked: not trusted, denied, idle for more than a time unit or
	// evicted, and the Store is a MemoryStore.
	Sources map[netip.Addr]SourceStats
}

// Peak is the highest value a counter reached.
type Peak struct {
	// Value is the peak; zero if nothing was counted.
	Value int
	// Source is the source that reached it.
	Source netip.Prefix
	// When is the time of the event that reached it.
	When time.Time
}

// stats are the Limiter's counters. Counters are atomics; a peak is
// checked with one atomic load and locked only when it rises, which is
// rare, so the hot path stays uncontended.
type stats struct {
	admitted, trusted atomic.Uint64
	allowed           [2]atomic.Uint64 // Message, Recipient
	logins, failures  atomic.Uint64
	refused           [numKinds]atomic.Uint64
	inFlight, conn    peak
	mail, rcpt        peak
	auth              peak // updated by AllowLogin only, off the hot path
}

type peak struct {
	v    atomic.Int64
	mu   sync.Mutex
	src  netip.Prefix
	when time.Time
}

// update raises p to v if v is higher. The check is small enough to be
// inlined, so that the common case (no new peak) costs one atomic load and
// passes no arguments.
func (p *peak) update(v int, src netip.Prefix, now time.Time) {
	if int64(v) > p.v.Load() {
		p.raise(v, src, now)
	}
}

// raise is update's slow path: it sets the peak under the lock, unless
// another goroutine has raised it past v meanwhile.
func (p *peak) raise(v int, src netip.Prefix, now time.Time) {
	p.mu.Lock()
	if int64(v) > p.v.Load() {
		p.v.Store(int64(v))
		p.src, p.when = src, now
	}
	p.mu.Unlock()
}

func (p *peak) get() Peak {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Peak{Value: int(p.v.Load()), Source: p.src, When: p.when}
}

// observe raises the peaks to c's counters. c is a pointer so that the
// call passes every argument in registers.
func (s *stats) observe(key netip.Prefix, c *Counts, now time.Time) {
	s.inFlight.update(c.InFlight, key, now)
	s.conn.update(c.ConnRate, key, now)
	s.mail.update(c.MessageRate, key, now)
	s.rcpt.update(c.RecipientRate, key, now)
}

// Stats is StatsAt at time.Now().
func (l *Limiter) Stats(addrs ...netip.Addr) Stats {
	return l.StatsAt(time.Now(), addrs...)
}

// StatsAt returns the Limiter's statistics as of now, with the counters of
// the sources that addrs are counted under in Stats.Sources. It is safe to
// call at any time.
func (l *Limiter) StatsAt(now time.Time, addrs ...netip.Addr) Stats {
	t := Stats{
		Admitted:         l.stats.admitted.Load(),
		Trusted:          l.stats.trusted.Load(),
		Messages:         l.stats.allowed[0].Load(),
		Recipients:       l.stats.allowed[1].Load(),
		Logins:           l.stats.logins.Load(),
		LoginFailures:    l.stats.failures.Load(),
		Refused:          make(map[Kind]uint64),
		Tracked:          -1,
		MaxInFlight:      l.stats.inFlight.get(),
		MaxConnRate:      l.stats.conn.get(),
		MaxMessageRate:   l.stats.mail.get(),
		MaxRecipientRate: l.stats.rcpt.get(),
		MaxAuthRate:      l.stats.auth.get(),
	}
	for k := Denied; k < numKinds; k++ {
		if n := l.stats.refused[k].Load(); n > 0 {
			t.Refused[k] = n
		}
	}
	in, ok := l.store().(inspector)
	if !ok {
		return t
	}
	t.Tracked = in.size()
	for _, a := range addrs {
		if st, ok := in.lookup(l.SourceOf(a), now, l.Limits.unit()); ok {
			if t.Sources == nil {
				t.Sources = make(map[netip.Addr]SourceStats, len(addrs))
			}
			t.Sources[a] = st
		}
	}
	return t
}
