package ratelimit

import (
	"context"
	"net/netip"
	"time"
)

// Event is one thing a Store counts for a source or a user name. The events
// mirror the requests of Postfix's anvil(8) server (connect, disconnect,
// message, rcpt, auth), plus two that keep refusal statistics and one that
// counts failed logins.
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
	// Refused counts one refused message, recipient or login.
	Refused
	// Login registers a login attempt (an SMTP AUTH, IMAP LOGIN or
	// AUTHENTICATE, POP3 USER/PASS or AUTH): for a source, auth rate +1 in
	// the source's rate window (anvil's auth request,
	// smtpd_client_auth_rate_limit). The Counts returned carry the
	// current LoginFailures too, so one call answers both questions. For
	// a user name (Request.User set) it only reads: the Limiter limits the
	// auth rate per source, so a Store need not create an entry, nor count
	// AuthRate, for a user.
	Login
	// LoginFailed registers a failed login: failures +1 in the failure
	// window of Request.Window (see Store). The Counts returned carry
	// LoginFailures; the other counters may be zero.
	LoginFailed
)

// Request is one event for a Store to record. The pair (Key, User) is the
// key the event is counted under.
type Request struct {
	// Key is the source: an IPv4 /32, an IPv6 prefix, or the zero Prefix
	// for every client without an IP address. It is the zero Prefix when
	// User is set.
	Key netip.Prefix
	// User, when not empty, is the user name a Login or LoginFailed is
	// counted under instead of a source. The Limiter hands it over trimmed
	// and lower-cased (so "Alice" and "alice" are one user); the Store
	// must use it as given. User names are not secrets; passwords never
	// reach a Store.
	User string
	// Event is what happened.
	Event Event
	// Now is the time of the event.
	Now time.Time
	// Unit is the rate time unit (anvil_rate_time_unit); always positive.
	Unit time.Duration
	// Window is the failure window of LoginFailed (Limits.Lockout); always
	// positive for LoginFailed and zero for the other events.
	Window time.Duration
}

// Counts are the counters of a source (or a user name) after an event, as
// anvil returns them.
type Counts struct {
	// InFlight is the number of admitted connections not yet released.
	InFlight int
	// ConnRate, MessageRate and RecipientRate count the connections (admitted
	// or refused), MAIL FROM and RCPT TO commands in the current window.
	ConnRate, MessageRate, RecipientRate int
	// AuthRate counts the login attempts (admitted or refused) in the
	// current window, the same window as the other rates.
	AuthRate int
	// LoginFailures counts the failed logins in the current failure
	// window; zero once that window has ended.
	LoginFailures int
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
// window's start resets ConnRate, MessageRate, RecipientRate and AuthRate
// to zero and starts a new window at its own time, then counts itself.
//
// Record must treat the pair (Key, User) as the key: a source's counters
// are kept under (Key, ""), a user name's under (zero Prefix, User), and
// the two never mix. The Limiter sends only Login and LoginFailed with a
// User. Failed logins have a window of their own, per key, with the same
// rule: the first LoginFailed starts a window of length Request.Window; a
// LoginFailed more than Window after the window's start resets the count
// and starts a new window at its own time, then counts itself; once the
// window has ended, Login reports LoginFailures as zero. The failure
// window is independent of the rate window: a source's failures outlive
// its rates when Window is longer than Unit.
//
// A Store may forget a source or a user with nothing in flight, but never
// a source with InFlight > 0 (a user name never has anything in flight).
// When it cannot track a new source or user it returns ErrFull.
//
// Package ratelimit/storetest checks an implementation against these
// rules: storetest.Run plays the Limiter's window scenarios through it.
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
	// size returns the number of tracked entries (sources, and the
	// failed logins of sources and user names), counting idle ones not
	// yet swept.
	size() int
}

// SourceStats are the statistics of one tracked source.
type SourceStats struct {
	// Source is the key the counters are kept under.
	Source netip.Prefix
	// Counts are the current counters; the rates are zero when the window
	// has expired, LoginFailures when the failure window has.
	Counts
	// MaxInFlight, MaxConnRate, MaxMessageRate, MaxRecipientRate and
	// MaxAuthRate are the peaks since the source was first tracked (anvil's
	// "max ... count" and "max ... rate" statistics, per source). Like
	// anvil's, they count the refused attempts too: a source refused at
	// InFlight 15 may show 16.
	MaxInFlight, MaxConnRate, MaxMessageRate, MaxRecipientRate, MaxAuthRate int
	// Refusals counts the refused connections, messages, recipients and
	// logins.
	Refusals int
	// WindowStart is when the current rate window began.
	WindowStart time.Time
	// FailureWindowEnd is when the current failure window ends (and with
	// it a lockout of the source); the zero Time if the source has no
	// failed login in a window that has not ended.
	FailureWindowEnd time.Time
	// LastSeen is the time of the last event.
	LastSeen time.Time
}
