package redisstore

import "sync/atomic"

// counters are the Store's statistics.
type counters struct {
	calls, errors, timeouts, fallbacks, unavailable atomic.Uint64
	outages, recoveries, renewals                   atomic.Uint64
	lastErr                                         atomic.Pointer[error]
}

// Stats are a Store's counters since New, for a gateway's metrics.
type Stats struct {
	// Calls counts Record calls.
	Calls uint64
	// Errors counts round trips to Redis that failed (Record's and the
	// heartbeat's), Timeouts those of them that ran out of time. A call
	// that the caller's own context ended is not counted.
	Errors, Timeouts uint64
	// Fallbacks counts Record calls answered by the fallback (FailOpen),
	// Unavailable those that returned ErrUnavailable (FailClosed).
	Fallbacks, Unavailable uint64
	// Outages counts the times Redis stopped answering, Recoveries the
	// times it answered again.
	Outages, Recoveries uint64
	// Renewals counts the times this replica renewed its lease under a
	// new token and rewrote its in-flight counts: after its lease expired
	// or Redis lost it, or after an in-flight write failed.
	Renewals uint64
	// Up is false while Redis is considered down (from a failed round
	// trip to the next successful one).
	Up bool
	// LastError is the error that started the last outage, nil if none.
	LastError error
	// Sources is the number of sources with connections in flight on this
	// replica.
	Sources int
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Calls:       s.stats.calls.Load(),
		Errors:      s.stats.errors.Load(),
		Timeouts:    s.stats.timeouts.Load(),
		Fallbacks:   s.stats.fallbacks.Load(),
		Unavailable: s.stats.unavailable.Load(),
		Outages:     s.stats.outages.Load(),
		Recoveries:  s.stats.recoveries.Load(),
		Renewals:    s.stats.renewals.Load(),
		Up:          !s.down.Load(),
	}
	if e := s.stats.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	for i := range s.led.shards {
		sh := &s.led.shards[i]
		sh.mu.Lock()
		st.Sources += len(sh.m)
		sh.mu.Unlock()
	}
	return st
}
