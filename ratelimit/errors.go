package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrLimited is wrapped by every refusal caused by a limit: too many
// connections in flight, a rate over its limit, a lockout after failed
// logins, or a full source table. Such refusals are temporary; the client
// may retry later.
var ErrLimited = errors.New("ratelimit: limit exceeded")

// ErrDenied is wrapped by every refusal caused by the access list. Such
// refusals are permanent for the source address.
var ErrDenied = errors.New("ratelimit: access denied")

// ErrFull is returned by a Store that cannot track one more source (or user
// name) because every tracked source has connections in flight. The
// Limiter turns it into a *LimitError of Kind Capacity, except in
// LoginFailed, which returns it wrapped (nothing is refused there).
var ErrFull = errors.New("ratelimit: source table full")

// ErrUnavailable is wrapped by the error of a Store whose shared state
// cannot be reached, such as a fleet's Redis that does not answer when the
// Store is set to fail closed. The Limiter returns it wrapped; its replies
// (SMTPReply, IMAPReply, POP3Reply) answer it as a temporary failure. A
// Store that returns it reports the outage itself, once per outage, so a
// caller need not log each refused connection or login.
var ErrUnavailable = errors.New("ratelimit: store unavailable")

// Kind says which check refused a source.
type Kind uint8

// The kinds of refusal, in the order the Limiter checks them (Capacity is
// reported whenever the Store is full; the login kinds come after it, in
// the order AllowLoginAt checks them, and only from it).
const (
	// Denied: the access list refused the address.
	Denied Kind = iota + 1
	// InFlight: the source already has Limits.InFlight connections open
	// (Traefik InFlightConn, Postfix smtpd_client_connection_count_limit).
	InFlight
	// ConnRate: the source opened more than Limits.ConnRate connections in
	// the current time unit (smtpd_client_connection_rate_limit).
	ConnRate
	// MessageRate: the source sent more than Limits.MessageRate MAIL FROM
	// commands in the current time unit (smtpd_client_message_rate_limit).
	MessageRate
	// RecipientRate: the source sent more than Limits.RecipientRate RCPT TO
	// commands in the current time unit (smtpd_client_recipient_rate_limit).
	RecipientRate
	// Capacity: the source table is full of sources with connections in
	// flight, so a new source cannot be tracked and is refused.
	Capacity
	// AuthRate: the source made more than Limits.AuthRate login attempts
	// in the current time unit (smtpd_client_auth_rate_limit).
	AuthRate
	// Lockout: the source had Limits.LoginFailures failed logins in the
	// current failure window (Limits.Lockout) and may not log in until the
	// window ends (what fail2ban's maxretry and findtime, or a Dovecot
	// auth policy server, do for a mail server).
	Lockout
	// UserLockout: the user name had Limits.UserLoginFailures failed
	// logins, from any sources, in the current failure window and may not
	// log in until the window ends.
	UserLockout

	numKinds
)

var kindNames = [...]string{
	Denied:        "denied",
	InFlight:      "in-flight",
	ConnRate:      "connection rate",
	MessageRate:   "message rate",
	RecipientRate: "recipient rate",
	Capacity:      "capacity",
	AuthRate:      "auth rate",
	Lockout:       "lockout",
	UserLockout:   "user lockout",
}

// String returns a short lower-case name for k, such as "connection rate".
func (k Kind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// LimitError is the error the Limiter returns when it refuses a connection,
// a message, a recipient or a login. It wraps ErrDenied (Kind Denied) or ErrLimited
// (every other Kind), so callers can branch with errors.Is; SMTPReply,
// IMAPReply and POP3Reply turn it into the protocol's own words.
type LimitError struct {
	// Kind says which check refused.
	Kind Kind
	// Addr is the client address, unmapped (IPv4-mapped IPv6 becomes IPv4)
	// and without zone. It is the zero Addr for a client without an IP
	// address (a Unix socket, net.Pipe).
	Addr netip.Addr
	// Source is the key the limits were counted under: Addr/32 for IPv4,
	// the Limiter's IPv6 prefix for IPv6, the zero Prefix for Denied, for
	// a client without an IP address, and for a UserLockout of a trusted
	// source.
	Source netip.Prefix
	// User is the user name of a refused login, trimmed and lower-cased as
	// the Limiter counts it; empty for the other refusals. It comes from
	// the client: quote it before logging it (Error does). The replies of
	// this package never include it.
	User string
	// Limit is the limit that was exceeded; zero for Denied and Capacity.
	Limit int
	// Count is the in-flight count or the rate that exceeded Limit,
	// counting the refused event itself (as anvil does); for Lockout and
	// UserLockout, the failed logins in the window, at least Limit.
	Count int
}

// Error describes the refusal, for logs.
func (e *LimitError) Error() string {
	who := addrString(e.Addr)
	switch e.Kind {
	case Denied:
		return "ratelimit: access denied for " + who
	case Capacity:
		return "ratelimit: source table full, refusing " + who
	case Lockout:
		return fmt.Sprintf("ratelimit: login locked out for %s after %d failed logins, limit %d", who, e.Count, e.Limit)
	case UserLockout:
		return fmt.Sprintf("ratelimit: login locked out for user %q after %d failed logins, limit %d (from %s)", e.User, e.Count, e.Limit, who)
	}
	return fmt.Sprintf("ratelimit: %s limit exceeded for %s: %d, limit %d", e.Kind, who, e.Count, e.Limit)
}

// Unwrap returns ErrDenied for Kind Denied and ErrLimited otherwise.
func (e *LimitError) Unwrap() error {
	if e.Kind == Denied {
		return ErrDenied
	}
	return ErrLimited
}

// Temporary reports whether the client may succeed by retrying later: true
// for every Kind except Denied.
func (e *LimitError) Temporary() bool { return e.Kind != Denied }

// addrString formats a client address the way Postfix logs state->addr,
// with "unknown" for a client without an IP address.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}
