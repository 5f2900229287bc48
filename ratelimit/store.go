package ratelimit

import (
	"context"
	"net/netip"
	"time"
)

// Event is one thing a Store counts for a source. The events mirror the
// requests of Postfix's anvil(8) server (connect, disconnect, message, rcpt),
// plus two that keep refusal statistics.
type Event uint8

// The events the Limiter records.
const (
	// Connect registers a new connection: in-flight +1, connection rate +1.
	Connect Event = iota + 1
	// Disconnect registers the end of an admitted connection: in-flight −1.
	Disconnect
	// Message registers a MAIL FROM: message rate +1.
	Message
	// Recipient registers a RCPT TO: recipient rate +1.
	Recipient
	// ConnectRefused undoes the in-flight +1 of a Connect the Limiter has
	// just refused and counts one refusal. The connection rate keeps the
	// attempt, as anvil does: refused attempts count against the rate.
	ConnectRefused
	// Refused counts one refused message or recipient.
	Refused
)

// Request is one event for a Store to record.
type Request struct {
	// Key is the source: an IPv4 /32, an IPv6 prefix, or the zero Prefix
	// for every client without an IP address.
	Key netip.Prefix
	// Event is what happened.
	Event Event
	// Now is the time of the event.
	Now time.Time
	// Unit is the rate time unit (anvil_rate_time_unit); always positive.
	Unit time.Duration
}

// Counts are a source's counters after an event, as anvil returns them.
type Counts struct {
	// InFlight is the number of admitted connections not yet released.
	InFlight int
	// ConnRate, MessageRate and RecipientRate count the connections (admitted
	// or refused), MAIL FROM and RCPT TO commands in the current window.
	ConnRate, MessageRate, RecipientRate int
}

// Store keeps the counters behind a Limiter. The Limiter decides; the Store
// only counts, like anvil(8), so a store shared by a fleet of gateways (for
// example in Redis, with one hash per key and the window logic in a script)
// can implement it without knowing the limits.
//
// Record must be safe for concurrent use. ctx bounds the call: a remote
// Store must return when it ends (with its error); Lease.Release records
// its Disconnect with a context that never ends, so a remote Store must
// also bound its calls itself. The window rules are anvil's: the first
// rate event starts a window; a rate event more than Unit after the
// window's start resets ConnRate, MessageRate and RecipientRate to zero and
// starts a new window at its own time, then counts itself. A Store may
// forget a source with nothing in flight, but never one with InFlight > 0.
// When it cannot track a new source it returns ErrFull.
type Store interface {
	Record(ctx context.Context, r Request) (Counts, error)
}

// StoreFunc adapts an ordinary function to the Store interface.
type StoreFunc func(ctx context.Context, r Request) (Counts, error)

// Record calls f(ctx, r).
func (f StoreFunc) Record(ctx context.Context, r Request) (Counts, error) { return f(ctx, r) }

// inspector is implemented by a Store that can report what it tracks
// (MemoryStore); the Limiter's Stats use it when the Store has it.
type inspector interface {
	// lookup returns the statistics of key at now, or false if key is not
	// tracked (never seen, idle for more than unit, or evicted).
	lookup(key netip.Prefix, now time.Time, unit time.Duration) (SourceStats, bool)
	// size returns the number of tracked sources, counting idle ones not
	// yet swept.
	size() int
}

// SourceStats are the statistics of one tracked source.
type SourceStats struct {
	// Source is the key the counters are kept under.
	Source netip.Prefix
	// Counts are the current counters; the rates are zero when the window
	// has expired.
	Counts
	// MaxInFlight, MaxConnRate, MaxMessageRate and MaxRecipientRate are the
	// peaks since the source was first tracked (anvil's "max ... count" and
	// "max ... rate" statistics, per source). Like anvil's, they count the
	// refused attempts too: a source refused at InFlight 15 may show 16.
	MaxInFlight, MaxConnRate, MaxMessageRate, MaxRecipientRate int
	// Refusals counts the refused connections, messages and recipients.
	Refusals int
	// WindowStart is when the current rate window began.
	WindowStart time.Time
	// LastSeen is the time of the last event.
	LastSeen time.Time
}
