package ticketkeys

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is Rotator.Interval's default.
const DefaultInterval = time.Minute

// minPollBound is the shortest bound on a poll of Run: short Intervals must not
// make a poll fail because the machine is busy.
const minPollBound = 10 * time.Second

// Rotator polls a Source and applies its keys to TLS server configs, so
// that they issue tickets with the shared encrypting key and accept
// tickets of every shared key. When a poll fails it keeps the keys it
// applied last and reports the failure once, until a poll succeeds again.
//
// The zero value polls nothing: Source is required. Configs are added with
// Add, at any time.
type Rotator struct {
	// Source gives the keys.
	Source Source
	// Interval is the time between polls in Run. If zero, DefaultInterval
	// (a minute). Each poll of Run may take at most Interval or ten
	// seconds, whichever is longer; one that takes longer fails.
	Interval time.Duration
	// Apply, if not nil, is called after the added configs got new keys,
	// with a copy of them, each time the keys change (not on every poll).
	// It is for anything else that needs the keys; calls do not overlap.
	Apply func(keys [][32]byte)
	// OnError, if not nil, is called with the Source's error (or why its
	// keys were refused) when a poll fails after a success or as the first
	// poll; later failures are not reported again until a poll succeeds.
	// If nil, the error is logged with the log package.
	OnError func(err error)
	// OnRecover, if not nil, is called when a poll succeeds after a
	// failure. If nil, the recovery is logged with the log package.
	OnRecover func()

	poll sync.Mutex // serializes polls, so that keys apply in poll order

	mu      sync.Mutex // guards the fields below
	configs []*tls.Config
	keys    [][32]byte
	failing bool
	err     error
	updated time.Time
	checked time.Time
}

// Status is what a Rotator knows, for a status page or a readiness check.
type Status struct {
	// Keys is the number of keys applied, 0 before the first successful
	// poll.
	Keys int
	// Fingerprint is the Fingerprint of the encrypting key, "" before the
	// first successful poll. Replicas that share keys show the same one.
	Fingerprint string
	// Updated is when the keys last changed, zero before the first
	// successful poll.
	Updated time.Time
	// Checked is the time of the last successful poll.
	Checked time.Time
	// Err is the error of the last poll, nil if it succeeded or if none
	// ran yet. While it is not nil the configs keep the keys of Updated.
	Err error
}

// Add registers configs and, if keys were loaded already, sets them on
// configs at once. The Rotator keeps them for every later change; a config
// should be added once. See the package documentation for which configs
// need adding.
func (r *Rotator) Add(configs ...*tls.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range configs {
		if c == nil {
			continue
		}
		if r.keys != nil {
			c.SetSessionTicketKeys(r.keys)
		}
		r.configs = append(r.configs, c)
	}
}

// Status returns the Rotator's state.
func (r *Rotator) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Keys: len(r.keys), Updated: r.updated, Checked: r.checked, Err: r.err}
	if len(r.keys) > 0 {
		st.Fingerprint = Fingerprint(r.keys[0])
	}
	return st
}

// Refresh polls the Source once and applies its keys if they changed. A
// poll cut short by the cancellation of ctx returns its error without
// counting as a failure (a deadline does count). On failure it returns the error and the configs keep their last keys, or,
// before any were loaded, crypto/tls's automatic per-config keys: TLS
// works, and resumption holds only on this replica. A caller that wants a
// replica to start only with the fleet's keys treats a failing first
// Refresh as fatal; one that prefers to serve starts anyway and lets Run
// catch up.
func (r *Rotator) Refresh(ctx context.Context) error {
	r.poll.Lock()
	defer r.poll.Unlock()
	if r.Source == nil {
		return r.fail(errors.New("ticketkeys: Rotator.Source is nil"))
	}
	keys, err := r.Source.Keys(ctx)
	if err == nil && len(keys) == 0 {
		err = ErrNoKeys
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return err // the caller gave up: not the source's failure
		}
		return r.fail(err)
	}
	keys = slices.Clone(keys)

	r.mu.Lock()
	changed := !slices.Equal(keys, r.keys)
	if changed {
		for _, c := range r.configs {
			c.SetSessionTicketKeys(keys)
		}
		r.keys = keys
		r.updated = time.Now()
	}
	r.checked = time.Now()
	recovered := r.failing
	r.failing, r.err = false, nil
	r.mu.Unlock()

	if changed && r.Apply != nil {
		r.Apply(slices.Clone(keys))
	}
	if recovered {
		if r.OnRecover != nil {
			r.OnRecover()
		} else {
			log.Printf("ticketkeys: the source answers again; keys %s", Fingerprint(keys[0]))
		}
	}
	return nil
}

// fail records a failed poll and reports it if it is the first of a run
// of failures. It returns err.
func (r *Rotator) fail(err error) error {
	r.mu.Lock()
	first := !r.failing
	r.failing, r.err = true, err
	loaded := r.keys != nil
	r.mu.Unlock()
	if first {
		if r.OnError != nil {
			r.OnError(err)
		} else {
			msg := err.Error()
			if !strings.HasPrefix(msg, "ticketkeys: ") {
				msg = "ticketkeys: " + msg
			}
			if loaded {
				log.Printf("%s (keeping the last keys)", msg)
			} else {
				log.Printf("%s (no shared keys yet: sessions resume on this replica only)", msg)
			}
		}
	}
	return err
}

// Run polls the Source at once and then every Interval, each poll bounded
// as Interval says, until ctx ends; it returns ctx's error. Failures are
// reported through OnError as Refresh describes and do not stop it. Run
// one Run per Rotator, in a goroutine of the caller's.
func (r *Rotator) Run(ctx context.Context) error {
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	bound := max(interval, minPollBound)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, bound)
		_ = r.Refresh(pctx)
		cancel()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
