package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// defaultUnit is anvil_rate_time_unit's default.
const defaultUnit = 60 * time.Second

// defaultLockout is the failure window when Limits.Lockout is zero.
const defaultLockout = 15 * time.Minute

// maxUserLen is the longest user name counted as given; a longer one is
// counted under a digest, so that a client cannot make the store keep
// long strings. RFC 5321's longest path is 256 octets.
const maxUserLen = 256

// defaultIPv6Prefix aggregates IPv6 clients by /64, the usual end-site
// subnet, so one host cannot dodge the limits by walking its own /64.
const defaultIPv6Prefix = 64

// Limits are the per-source limits, and the lockout of user names. A zero
// field means no limit.
type Limits struct {
	// InFlight is the most connections a source may have open at once
	// (Traefik InFlightConn "amount", Postfix
	// smtpd_client_connection_count_limit). If zero, unlimited.
	InFlight int
	// ConnRate is the most connection attempts a source may make per Unit
	// (smtpd_client_connection_rate_limit). Refused attempts count too.
	// If zero, unlimited.
	ConnRate int
	// MessageRate is the most MAIL FROM commands a source may send per Unit
	// (smtpd_client_message_rate_limit). If zero, unlimited.
	MessageRate int
	// RecipientRate is the most RCPT TO commands a source may send per Unit
	// (smtpd_client_recipient_rate_limit). If zero, unlimited.
	RecipientRate int
	// Unit is the rate time unit (anvil_rate_time_unit). If zero or
	// negative, 60 seconds.
	Unit time.Duration
	// AuthRate is the most login attempts (SMTP AUTH, IMAP LOGIN and
	// AUTHENTICATE, POP3 USER/PASS and AUTH: each AllowLogin) a source may
	// make per Unit (Postfix smtpd_client_auth_rate_limit; Dovecot has no
	// rate of its own). Refused attempts count too. If zero, unlimited.
	AuthRate int
	// LoginFailures is the number of failed logins after which a source is
	// locked out until its failure window (Lockout) ends: the next
	// AllowLogin after the LoginFailures-th failure is refused. Postfix
	// has no equivalent; Dovecot's auth penalty only slows failing IPs
	// down, and refusing them is left to an auth policy server
	// (auth_policy_server_url) or to fail2ban (maxretry within findtime).
	// If zero, unlimited; the failures are still counted for Stats.
	LoginFailures int
	// UserLoginFailures is the number of failed logins of one user name,
	// from any sources (trusted ones included), after which that user
	// name is locked out until its failure window ends, whatever source
	// tries it. Dovecot leaves this to an auth policy server as well. If
	// zero, unlimited, and user names are not tracked at all.
	UserLoginFailures int
	// Lockout is the failure window: a source's (or user's) first failed
	// login starts a window of this length, the failures count within it,
	// and a lockout lasts until it ends; a failure after it ended starts a
	// new one (anvil's fixed-window rule; fail2ban's findtime and bantime
	// in one). If zero or negative, 15 minutes.
	Lockout time.Duration
}

func (l *Limits) unit() time.Duration {
	if l.Unit <= 0 {
		return defaultUnit
	}
	return l.Unit
}

func (l *Limits) lockout() time.Duration {
	if l.Lockout <= 0 {
		return defaultLockout
	}
	return l.Lockout
}

// Limiter admits connections, messages, recipients and logins per source
// address, and logins per user name.
// The zero Limiter admits everything (no limits, ACL allows all) while
// still keeping statistics; it is safe for concurrent use. Set the fields
// before first use and do not change them afterwards; a Limiter must not
// be copied after first use.
type Limiter struct {
	// Limits are the per-source limits.
	Limits Limits
	// Trusted networks are exempt from all limits and never tracked
	// (Postfix mynetworks / smtpd_client_event_limit_exceptions). The ACL
	// still applies to them, and so does the lockout of a user name
	// (Limits.UserLoginFailures). If nil, no source is trusted.
	Trusted []netip.Prefix
	// ACL is applied before anything else; a denied source is refused with
	// ErrDenied and not tracked. If zero, every address is allowed.
	ACL ACL
	// IPv6Prefix is the prefix length IPv6 clients are aggregated by. If
	// zero, or outside 1..128, 64. IPv4 clients are counted per address.
	IPv6Prefix int
	// MaxSources caps the sources the default in-memory store tracks. If
	// zero, 100,000. Ignored when Store is set.
	MaxSources int
	// Store keeps the counters. If nil, an in-memory MemoryStore.
	Store Store

	once   sync.Once
	mem    MemoryStore
	leases sync.Pool
	stats  stats
}

func (l *Limiter) store() Store {
	if l.Store != nil {
		return l.Store
	}
	l.once.Do(func() { l.mem.MaxSources = l.MaxSources })
	return &l.mem
}

func (l *Limiter) ipv6Prefix() int {
	if l.IPv6Prefix <= 0 || l.IPv6Prefix > 128 {
		return defaultIPv6Prefix
	}
	return l.IPv6Prefix
}

// SourceOf returns the key addr is counted under: addr/32 for IPv4
// (including IPv4-mapped IPv6), the masked IPv6 prefix for IPv6 (zone
// dropped), and the zero Prefix for an invalid address. All clients
// without an IP address (Unix sockets, net.Pipe) share that one key: they
// are local plumbing, limited together and subject to the ACL's Default.
func (l *Limiter) SourceOf(addr netip.Addr) netip.Prefix {
	return l.sourceOf(normalize(addr))
}

func (l *Limiter) sourceOf(a netip.Addr) netip.Prefix {
	switch {
	case !a.IsValid():
		return netip.Prefix{}
	case a.Is4():
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(l.ipv6Prefix())
	return p
}

// Lease is an admitted connection. Call Release (or ReleaseAt) once the
// connection is closed; releasing twice, or through a copy, is a no-op, so
// it is safe to defer. The zero Lease, returned for trusted sources and
// refusals, releases nothing. A Lease is a small value: obtaining and
// releasing one does not allocate.
type Lease struct {
	t   *ticket
	gen uint64
}

// ticket is the pooled, shared half of a Lease; gen advances on release so
// stale copies of a Lease cannot release a recycled ticket.
type ticket struct {
	gen  atomic.Uint64
	lim  *Limiter
	key  netip.Prefix
	unit time.Duration
}

// Release ends the admitted connection now.
func (ls Lease) Release() { ls.ReleaseAt(time.Now()) }

// ReleaseAt ends the admitted connection at the given time, which starts
// the source's idle expiry when it was the last one.
func (ls Lease) ReleaseAt(now time.Time) {
	t := ls.t
	if t == nil || !t.gen.CompareAndSwap(ls.gen, ls.gen+1) {
		return
	}
	lim, r := t.lim, Request{Key: t.key, Event: Disconnect, Now: now, Unit: t.unit}
	t.lim = nil
	lim.leases.Put(t)
	// A failing shared store cannot be helped here; its entries expire. The
	// connection is over, so nothing is left to bound the call by: a remote
	// Store bounds it itself (see Store).
	_, _ = lim.store().Record(context.Background(), r)
}

// Admit is AdmitAt at time.Now().
func (l *Limiter) Admit(ctx context.Context, src netip.Addr) (Lease, error) {
	return l.AdmitAt(ctx, src, time.Now())
}

// AdmitAt decides whether a new connection from src may proceed at now.
// The checks run in this order: the ACL (ErrDenied), trusted networks
// (admitted, not counted), then the connection is counted and refused if
// the source now has more than Limits.InFlight connections in flight or
// more than Limits.ConnRate attempts in the current window, or if the
// store cannot track the source (Kind Capacity). Refusals are
// *LimitError values wrapping ErrLimited or ErrDenied; a failing Store's
// error is returned wrapped as is. ctx bounds the Store's calls. On success
// the caller must release the returned Lease when the connection ends.
func (l *Limiter) AdmitAt(ctx context.Context, src netip.Addr, now time.Time) (Lease, error) {
	a := normalize(src)
	if l.ACL.action(a) == Deny {
		return Lease{}, l.refuse(&LimitError{Kind: Denied, Addr: a})
	}
	if containsAny(l.Trusted, a) {
		l.stats.trusted.Add(1)
		return Lease{}, nil
	}
	key, unit := l.sourceOf(a), l.Limits.unit()
	st := l.store()
	c, err := st.Record(ctx, Request{Key: key, Event: Connect, Now: now, Unit: unit})
	if err != nil {
		return Lease{}, l.storeError(err, a, key)
	}
	l.stats.observe(key, &c, now)
	var kind Kind
	var limit, count int
	switch lim := l.Limits; {
	case lim.InFlight > 0 && c.InFlight > lim.InFlight:
		kind, limit, count = InFlight, lim.InFlight, c.InFlight
	case lim.ConnRate > 0 && c.ConnRate > lim.ConnRate:
		kind, limit, count = ConnRate, lim.ConnRate, c.ConnRate
	default:
		l.stats.admitted.Add(1)
		return l.lease(key, unit), nil
	}
	_, _ = st.Record(ctx, Request{Key: key, Event: ConnectRefused, Now: now, Unit: unit})
	return Lease{}, l.refuse(&LimitError{Kind: kind, Addr: a, Source: key, Limit: limit, Count: count})
}

func (l *Limiter) lease(key netip.Prefix, unit time.Duration) Lease {
	t, _ := l.leases.Get().(*ticket)
	if t == nil {
		t = new(ticket)
	}
	t.lim, t.key, t.unit = l, key, unit
	return Lease{t: t, gen: t.gen.Load()}
}

// AllowMessage is AllowMessageAt at time.Now().
func (l *Limiter) AllowMessage(ctx context.Context, src netip.Addr) error {
	return l.AllowMessageAt(ctx, src, time.Now())
}

// AllowMessageAt counts a MAIL FROM from src at now and refuses it if the
// source has sent more than Limits.MessageRate in the current window.
// Refused commands count too, as in anvil. The ACL and trusted networks
// apply as in AdmitAt; ctx bounds the Store's calls.
func (l *Limiter) AllowMessageAt(ctx context.Context, src netip.Addr, now time.Time) error {
	return l.allow(ctx, src, now, Message)
}

// AllowRecipient is AllowRecipientAt at time.Now().
func (l *Limiter) AllowRecipient(ctx context.Context, src netip.Addr) error {
	return l.AllowRecipientAt(ctx, src, time.Now())
}

// AllowRecipientAt counts a RCPT TO from src at now and refuses it if the
// source has sent more than Limits.RecipientRate in the current window.
// Refused commands count too, as in anvil. The ACL and trusted networks
// apply as in AdmitAt; ctx bounds the Store's calls.
func (l *Limiter) AllowRecipientAt(ctx context.Context, src netip.Addr, now time.Time) error {
	return l.allow(ctx, src, now, Recipient)
}

func (l *Limiter) allow(ctx context.Context, src netip.Addr, now time.Time, ev Event) error {
	a := normalize(src)
	if l.ACL.action(a) == Deny {
		return l.refuse(&LimitError{Kind: Denied, Addr: a})
	}
	if containsAny(l.Trusted, a) {
		return nil
	}
	key, unit := l.sourceOf(a), l.Limits.unit()
	c, err := l.store().Record(ctx, Request{Key: key, Event: ev, Now: now, Unit: unit})
	if err != nil {
		return l.storeError(err, a, key)
	}
	l.stats.observe(key, &c, now)
	kind, limit, count := MessageRate, l.Limits.MessageRate, c.MessageRate
	if ev == Recipient {
		kind, limit, count = RecipientRate, l.Limits.RecipientRate, c.RecipientRate
	}
	if limit <= 0 || count <= limit {
		l.stats.allowed[ev-Message].Add(1)
		return nil
	}
	_, _ = l.store().Record(ctx, Request{Key: key, Event: Refused, Now: now, Unit: unit})
	return l.refuse(&LimitError{Kind: kind, Addr: a, Source: key, Limit: limit, Count: count})
}

// AllowLogin is AllowLoginAt at time.Now().
func (l *Limiter) AllowLogin(ctx context.Context, src netip.Addr, user string) error {
	return l.AllowLoginAt(ctx, src, user, time.Now())
}

// AllowLoginAt counts a login attempt from src for user at now and decides
// whether to let it reach the authenticator. Call it before checking the
// credentials, and LoginFailedAt after the authenticator refused them.
//
// The checks run in this order: the ACL (ErrDenied, nothing counted); for
// an untrusted source, the attempt is counted (refused ones too, as in
// anvil) and refused if the source made more than Limits.AuthRate
// attempts in the current window (Kind AuthRate) or is locked out after
// Limits.LoginFailures failed logins (Kind Lockout); then, for a non-empty
// user and whatever the source, refused if the user name is locked out
// after Limits.UserLoginFailures failed logins (Kind UserLockout). The user
// name is trimmed of white space and lower-cased first, so "Alice" and
// "alice" are one user; one longer than 256 bytes is counted under a
// digest of it. Trusted sources are not counted, but the user lockout
// applies to them.
//
// A lockout lasts until the failure window that the first failure opened
// ends (Limits.Lockout after it); an attempt at exactly that instant is
// still refused. Refusals are *LimitError values wrapping ErrLimited or
// ErrDenied. A failing Store's error is returned wrapped, as in AdmitAt:
// the login is refused rather than let through unchecked (a full store is
// Kind Capacity). ctx bounds the Store's calls.
func (l *Limiter) AllowLoginAt(ctx context.Context, src netip.Addr, user string, now time.Time) error {
	a := normalize(src)
	if l.ACL.action(a) == Deny {
		return l.refuse(&LimitError{Kind: Denied, Addr: a})
	}
	user = userKey(user)
	lim, unit, st := &l.Limits, l.Limits.unit(), l.store()
	var key netip.Prefix
	trusted := containsAny(l.Trusted, a)
	if !trusted {
		key = l.sourceOf(a)
		c, err := st.Record(ctx, Request{Key: key, Event: Login, Now: now, Unit: unit})
		if err != nil {
			return l.storeError(err, a, key)
		}
		l.stats.auth.update(c.AuthRate, key, now)
		var kind Kind
		var limit, count int
		switch {
		case lim.AuthRate > 0 && c.AuthRate > lim.AuthRate:
			kind, limit, count = AuthRate, lim.AuthRate, c.AuthRate
		case lim.LoginFailures > 0 && c.LoginFailures >= lim.LoginFailures:
			kind, limit, count = Lockout, lim.LoginFailures, c.LoginFailures
		}
		if kind != 0 {
			_, _ = st.Record(ctx, Request{Key: key, Event: Refused, Now: now, Unit: unit})
			return l.refuse(&LimitError{Kind: kind, Addr: a, Source: key, User: user, Limit: limit, Count: count})
		}
	}
	if user != "" && lim.UserLoginFailures > 0 {
		c, err := st.Record(ctx, Request{User: user, Event: Login, Now: now, Unit: unit})
		if err != nil {
			return l.storeError(err, a, key)
		}
		if c.LoginFailures >= lim.UserLoginFailures {
			if !trusted {
				_, _ = st.Record(ctx, Request{Key: key, Event: Refused, Now: now, Unit: unit})
			}
			return l.refuse(&LimitError{Kind: UserLockout, Addr: a, Source: key, User: user, Limit: lim.UserLoginFailures, Count: c.LoginFailures})
		}
	}
	l.stats.logins.Add(1)
	return nil
}

// LoginFailed is LoginFailedAt at time.Now().
func (l *Limiter) LoginFailed(ctx context.Context, src netip.Addr, user string) error {
	return l.LoginFailedAt(ctx, src, user, time.Now())
}

// LoginFailedAt counts a failed login from src for user at now: call it
// when the authenticator refused the credentials (not when the backend or
// the authenticator itself failed). The failure counts for the source
// (unless it is trusted or denied by the ACL) and, when
// Limits.UserLoginFailures is set and user is not empty, for the user
// name, normalized as in AllowLoginAt, whatever the source. The first
// failure opens a failure window of Limits.Lockout; the lockout itself is
// enforced by the next AllowLoginAt.
//
// It returns an error only when the Store fails (ErrFull included,
// wrapped): the failure was then not counted, which the caller may log;
// the login has been refused already. It refuses nothing. ctx bounds the
// Store's calls.
func (l *Limiter) LoginFailedAt(ctx context.Context, src netip.Addr, user string, now time.Time) error {
	a := normalize(src)
	user = userKey(user)
	lim, unit, st := &l.Limits, l.Limits.unit(), l.store()
	r := Request{Event: LoginFailed, Now: now, Unit: unit, Window: lim.lockout()}
	l.stats.failures.Add(1)
	var errSrc, errUser error
	if l.ACL.action(a) != Deny && !containsAny(l.Trusted, a) {
		r.Key = l.sourceOf(a)
		_, errSrc = st.Record(ctx, r)
	}
	if user != "" && lim.UserLoginFailures > 0 {
		r.Key, r.User = netip.Prefix{}, user
		_, errUser = st.Record(ctx, r)
	}
	if err := errors.Join(errSrc, errUser); err != nil {
		return fmt.Errorf("ratelimit: store: %w", err)
	}
	return nil
}

// userKey normalizes a user name the way the Limiter counts it: trimmed,
// lower-cased, and replaced by a digest when longer than maxUserLen.
func userKey(user string) string {
	user = strings.ToLower(strings.TrimSpace(user))
	if len(user) > maxUserLen {
		sum := sha256.Sum256([]byte(user))
		user = "sha256:" + hex.EncodeToString(sum[:])
	}
	return user
}

func (l *Limiter) refuse(e *LimitError) error {
	l.stats.refused[e.Kind].Add(1)
	return e
}

func (l *Limiter) storeError(err error, a netip.Addr, key netip.Prefix) error {
	if errors.Is(err, ErrFull) {
		return l.refuse(&LimitError{Kind: Capacity, Addr: a, Source: key})
	}
	return fmt.Errorf("ratelimit: store: %w", err)
}
