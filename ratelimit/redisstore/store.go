package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
	"github.com/redis/go-redis/v9"
)

// Defaults of Options.
const (
	DefaultPrefix        = "mailedge:rl:"
	DefaultLeaseTTL      = 15 * time.Second
	DefaultTimeout       = 50 * time.Millisecond
	DefaultRetryInterval = 500 * time.Millisecond
)

// syncBatch is how many sources one sync round trip writes.
const syncBatch = 128

// ErrUnavailable is wrapped by the error Record returns for an event whose
// Policy is FailClosed when Redis did not answer within Timeout (or is
// known to be down). It is ratelimit.ErrUnavailable: the Limiter passes it
// on wrapped, its replies (ratelimit.SMTPReply, IMAPReply, POP3Reply)
// answer it as a temporary failure, and Options.OnError has reported the
// outage once, so callers such as package auth do not report each refusal.
var ErrUnavailable = ratelimit.ErrUnavailable

// unavailableError is the error of a Redis that did not answer: it wraps
// ErrUnavailable and its cause, if known.
type unavailableError struct{ cause error }

func (e unavailableError) Error() string {
	if e.cause == nil {
		return "redisstore: redis unavailable"
	}
	return "redisstore: redis unavailable: " + e.cause.Error()
}

func (e unavailableError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.cause}
}

// Policy is what Record does with an event when Redis cannot answer.
type Policy uint8

const (
	// FailOpen counts the event in the in-process fallback Store and
	// answers with its Counts: the limits hold per replica, not across
	// the fleet, until Redis is back.
	FailOpen Policy = iota
	// FailClosed returns an error wrapping ErrUnavailable: the Limiter
	// refuses the connection or login with a temporary failure.
	FailClosed
)

// String returns "fail-open" or "fail-closed".
func (p Policy) String() string {
	switch p {
	case FailOpen:
		return "fail-open"
	case FailClosed:
		return "fail-closed"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// Options configure a Store. The zero value is usable: every field has a
// default.
type Options struct {
	// Prefix starts every key the Store uses. If empty, DefaultPrefix.
	// With Redis Cluster, give it a hash tag ("{mailedge}:rl:") so that
	// every key lives on one shard: the scripts read the replicas' leases
	// beside the source's hash.
	Prefix string
	// Replica names this process among the gateways sharing Redis; it
	// must be unique among the processes running at a time. If empty, a
	// random name. A replica that restarts under the same name gets a new
	// lease token, so the counts of its previous life are dropped.
	Replica string
	// LeaseTTL is how long the replica's lease lives without a heartbeat,
	// and so how long the connections of a replica that died without
	// closing them keep counting for the others. The heartbeat refreshes
	// it every LeaseTTL/3. If zero, DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Timeout bounds every round trip to Redis, within the caller's
	// context. If zero, DefaultTimeout.
	Timeout time.Duration
	// RetryInterval is how often the heartbeat asks Redis again once a
	// round trip failed; until one succeeds, Record does not wait for
	// Redis at all and applies the Policy at once. If zero,
	// DefaultRetryInterval.
	RetryInterval time.Duration
	// Connections is the Policy for Connect (and its Disconnect and
	// ConnectRefused), Messages for Message and Recipient, Logins for
	// Login and LoginFailed. Refused, which the Limiter records after a
	// refusal and whose result it ignores, always fails open. The zero
	// value is FailOpen for all.
	Connections, Messages, Logins Policy
	// Fallback counts the events that fail open. If nil, a
	// ratelimit.MemoryStore with its defaults.
	Fallback ratelimit.Store
	// OnError, if set, is called when Redis stops answering (with the
	// error) and when it answers again (with nil): on changes of state,
	// not per call. It is called on the goroutine that saw the change,
	// one call at a time, and should return quickly.
	OnError func(error)
}

// Store is a ratelimit.Store kept in Redis, shared by the gateways of a
// fleet. Create it with New; it is safe for concurrent use. Close stops
// its heartbeat. See the package documentation for the data model.
type Store struct {
	client      redis.Scripter
	prefix      string
	leasePrefix string
	leaseKey    string
	replica     string
	leaseTTL    time.Duration
	timeout     time.Duration
	retry       time.Duration
	policies    [ratelimit.LoginFailed + 1]Policy
	fallback    ratelimit.Store
	onError     func(error)

	// Constant arguments, boxed once.
	argLease, argReplica any

	led   ledger
	clock time.Time // ledger times are nanoseconds since
	seq   atomic.Uint64
	// tok is the current lease token; tokN its number. Only the heartbeat
	// changes them.
	tok  atomic.Pointer[string]
	tokN uint64
	// renew asks the heartbeat for a new lease token and a rewrite of
	// every in-flight count: an in-flight write failed (or may have), or
	// Redis reported the lease gone.
	renew atomic.Bool

	down    atomic.Bool
	closed  atomic.Bool
	stateMu sync.Mutex // serializes OnError

	wake      chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	stats counters
}

// New returns a Store using client, which must have ContextTimeoutEnabled
// set (redis.Options) so that Timeout bounds socket reads and writes
// rather than only the wait for a pooled connection. New registers the
// replica's lease within ctx (within a second if ctx has no deadline:
// the first call may dial) and starts the heartbeat; Close stops it. If
// Redis does not answer, New still returns a working Store (which applies
// its Policies until Redis answers) and reports the error through
// OnError and Stats. It returns an error only for a bad argument. The
// caller keeps ownership of client and closes it after Close.
func New(ctx context.Context, client redis.Scripter, opt Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	var ctxTimeouts bool
	switch c := client.(type) {
	case *redis.Client:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	default:
		ctxTimeouts = true // cannot tell: trust the caller
	}
	if !ctxTimeouts {
		return nil, errors.New("redisstore: the client must set ContextTimeoutEnabled, or a call could wait for the client's ReadTimeout instead of Timeout")
	}
	s := &Store{
		client:   client,
		prefix:   orDefault(opt.Prefix, DefaultPrefix),
		replica:  opt.Replica,
		leaseTTL: orDefault(opt.LeaseTTL, DefaultLeaseTTL),
		timeout:  orDefault(opt.Timeout, DefaultTimeout),
		retry:    orDefault(opt.RetryInterval, DefaultRetryInterval),
		fallback: opt.Fallback,
		onError:  opt.OnError,
		clock:    time.Now(),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	switch {
	case s.leaseTTL < 0 || s.timeout < 0 || s.retry < 0:
		return nil, errors.New("redisstore: negative duration in Options")
	case s.leaseTTL < time.Second:
		return nil, fmt.Errorf("redisstore: LeaseTTL %v is under a second", s.leaseTTL)
	case 3*s.timeout > s.leaseTTL:
		return nil, fmt.Errorf("redisstore: Timeout %v leaves no room for a heartbeat every LeaseTTL/3 (%v)", s.timeout, s.leaseTTL/3)
	}
	for _, p := range []Policy{opt.Connections, opt.Messages, opt.Logins} {
		if p > FailClosed {
			return nil, fmt.Errorf("redisstore: unknown %v", p)
		}
	}
	if s.replica == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s.replica = hex.EncodeToString(b[:])
	}
	if s.fallback == nil {
		s.fallback = new(ratelimit.MemoryStore)
	}
	for _, ev := range []ratelimit.Event{ratelimit.Connect, ratelimit.Disconnect, ratelimit.ConnectRefused} {
		s.policies[ev] = opt.Connections
	}
	s.policies[ratelimit.Message], s.policies[ratelimit.Recipient] = opt.Messages, opt.Messages
	s.policies[ratelimit.Login], s.policies[ratelimit.LoginFailed] = opt.Logins, opt.Logins
	s.leasePrefix = s.prefix + "replica:"
	s.leaseKey = s.leasePrefix + s.replica
	s.argLease, s.argReplica = s.leasePrefix, s.replica
	// Tokens start at a random number, so that a replica restarting
	// under the same name does not take its previous life's fields for
	// its own.
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.tokN = binary.LittleEndian.Uint64(b[:]) >> 12
	none := ""
	s.tok.Store(&none)
	s.led.init()

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	s.beat(ctx, 0)
	s.wg.Add(1)
	go s.heartbeat()
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Replica returns the name of this replica.
func (s *Store) Replica() string { return s.replica }

// Close stops the heartbeat and deletes this replica's lease, so the other
// replicas stop counting its connections at once (connections still open
// stop counting for them too: close the Store after draining). Record
// still answers after Close, from the Policies as if Redis were down. It
// returns the error of deleting the lease, if any.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		if err := releaseScript.Run(ctx, s.client, []string{s.leaseKey}, *s.tok.Load()).Err(); err != nil {
			s.closeErr = fmt.Errorf("redisstore: releasing the lease: %w", err)
		}
	})
	return s.closeErr
}

// Record records r in Redis and returns the counts of r's key after it,
// across the fleet; see ratelimit.Store. It waits at most Timeout (and no
// longer than ctx allows); if Redis does not answer, it applies the
// event's Policy. It never returns ratelimit.ErrFull from Redis, which
// has no table to fill; the fallback may.
func (s *Store) Record(ctx context.Context, r ratelimit.Request) (ratelimit.Counts, error) {
	s.stats.calls.Add(1)
	src := r.User == "" && r.Event != ratelimit.LoginFailed
	var key string
	if r.User != "" {
		key = s.prefix + "u:" + r.User
	} else {
		key = s.sourceKey(r.Key)
	}
	ttl := s.ttl(r)
	var ch change
	if src {
		ch = s.apply(r.Key, key, r.Event, ttl)
		if ch.fb {
			// A connection the fallback admitted ends: tell it, so its
			// count does not leak.
			_, _ = s.fallback.Record(ctx, r)
		}
	}
	if s.down.Load() || s.closed.Load() {
		return s.degraded(ctx, r, ch, nil)
	}
	tok := s.tok.Load()
	args := s.args(r, ch, ttl, *tok)
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	res, err := recordScript.Run(rctx, s.client, []string{key}, args[:]...).Int64Slice()
	cancel()
	if err == nil && len(res) != 7 {
		err = fmt.Errorf("redisstore: unexpected reply %v", res)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.fail(err)
		}
		return s.degraded(ctx, r, ch, err)
	}
	s.up()
	if res[6] != 0 && s.tok.Load() == tok {
		// The lease is gone (expired, or Redis lost it): renew it and
		// rewrite the counts now. A stale token needs nothing: the
		// renewal that replaced it wrote this change.
		s.renew.Store(true)
		s.kick()
	}
	return ratelimit.Counts{
		InFlight:      int(res[0]),
		ConnRate:      int(res[1]),
		MessageRate:   int(res[2]),
		RecipientRate: int(res[3]),
		AuthRate:      int(res[4]),
		LoginFailures: int(res[5]),
	}, nil
}

// args are recordScript's arguments.
func (s *Store) args(r ratelimit.Request, ch change, ttl int64, tok string) [12]any {
	now := r.Now.UnixNano()
	var end string
	if r.Event == ratelimit.LoginFailed {
		window := r.Window
		if window <= 0 {
			window = r.Unit
		}
		e := now + int64(window)
		if e < now {
			e = math.MaxInt64 // a window of centuries
		}
		end = enc(e)
	}
	old := now - int64(r.Unit)
	if old > now {
		old = math.MinInt64
	}
	user := ""
	if r.User != "" {
		user = "u"
	}
	return [12]any{
		int(r.Event), enc(now), enc(old), end, ttl, s.argLease, s.argReplica, tok,
		int(ch.before), int(ch.after), ch.seq, user,
	}
}

// degraded answers r without Redis, by its Policy; cause is the error of
// the round trip, nil if none was tried.
func (s *Store) degraded(ctx context.Context, r ratelimit.Request, ch change, cause error) (ratelimit.Counts, error) {
	if ch.seq != 0 {
		// The in-flight write did not happen, or may have: rewrite every
		// count under a new token once Redis answers.
		s.renew.Store(true)
	}
	if s.policy(r.Event) == FailClosed {
		if r.Event == ratelimit.Connect {
			// The Limiter releases nothing after an error.
			s.undoConnect(r.Key)
		}
		s.stats.unavailable.Add(1)
		return ratelimit.Counts{}, unavailableError{cause}
	}
	s.stats.fallbacks.Add(1)
	if r.Event == ratelimit.Disconnect || r.Event == ratelimit.ConnectRefused {
		// The fallback was told in Record if it counted the connection.
		return ratelimit.Counts{InFlight: int(ch.after)}, nil
	}
	c, err := s.fallback.Record(ctx, r)
	if r.Event == ratelimit.Connect {
		if err != nil {
			s.undoConnect(r.Key)
			return c, err
		}
		s.fallbackConnect(r.Key)
	}
	if r.User == "" && r.Event != ratelimit.LoginFailed && err == nil {
		// This replica's own connections, all of them: better than the
		// fallback's, which saw only those since Redis went away.
		c.InFlight = int(ch.after)
	}
	return c, err
}

// policy is the Policy of ev; FailOpen for Refused and for events the
// Limiter does not send.
func (s *Store) policy(ev ratelimit.Event) Policy {
	if int(ev) < len(s.policies) {
		return s.policies[ev]
	}
	return FailOpen
}

// apply updates the ledger for an event of source p (hash key) and returns
// what changed.
func (s *Store) apply(p netip.Prefix, key string, ev ratelimit.Event, ttl int64) change {
	sh := s.led.shard(p)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.m[p]
	var c change
	if sl != nil {
		c.before = sl.count
	}
	switch ev {
	case ratelimit.Connect:
		if sl == nil {
			sl = &slot{key: key}
			sh.m[p] = sl
		}
		sl.count = incr(sl.count)
	case ratelimit.Disconnect, ratelimit.ConnectRefused:
		if sl == nil {
			return c // nothing in flight here: nothing to write
		}
		sl.count--
		if sl.fb > 0 {
			sl.fb--
			c.fb = true
		}
		if sl.count == 0 {
			delete(sh.m, p)
		}
	default:
		c.after = c.before
		return c
	}
	c.after = sl.count
	c.seq = s.seq.Add(1)
	sl.written, sl.ttl = s.now(), ttl
	return c
}

// undoConnect takes back the ledger's count of a Connect that Record
// refused with an error.
func (s *Store) undoConnect(p netip.Prefix) {
	sh := s.led.shard(p)
	sh.mu.Lock()
	if sl := sh.m[p]; sl != nil {
		sl.count--
		if sl.fb > sl.count {
			sl.fb = sl.count
		}
		if sl.count <= 0 {
			delete(sh.m, p)
		}
	}
	sh.mu.Unlock()
	s.renew.Store(true)
}

// fallbackConnect notes that the fallback counted a Connect of p.
func (s *Store) fallbackConnect(p netip.Prefix) {
	sh := s.led.shard(p)
	sh.mu.Lock()
	if sl := sh.m[p]; sl != nil && sl.fb < sl.count {
		sl.fb++
	}
	sh.mu.Unlock()
}

// now is the ledger's clock.
func (s *Store) now() int64 { return int64(time.Since(s.clock)) }

// sourceKey is the hash of source p.
func (s *Store) sourceKey(p netip.Prefix) string {
	var b strings.Builder
	b.Grow(len(s.prefix) + 2 + 43)
	b.WriteString(s.prefix)
	b.WriteString("s:")
	if !p.IsValid() {
		b.WriteByte('-') // every client without an IP address
	} else {
		var buf [64]byte
		b.Write(p.AppendTo(buf[:0]))
	}
	return b.String()
}

// ttl is the TTL in ms that a write for r gives its hash at least: twice
// the rate unit (an idle source expires one unit after its last event),
// four lease TTLs (so that the heartbeat, which rewrites the counts of
// sources with connections in flight once half of it has passed, always
// comes first), and for a failed login its failure window plus a unit.
func (s *Store) ttl(r ratelimit.Request) int64 {
	d := max(sat(r.Unit, r.Unit), 4*s.leaseTTL)
	if r.Event == ratelimit.LoginFailed {
		w := r.Window
		if w <= 0 {
			w = r.Unit
		}
		d = max(d, sat(w, r.Unit))
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// sat adds without overflowing.
func sat(a, b time.Duration) time.Duration {
	if c := a + b; c >= a {
		return c
	}
	return math.MaxInt64
}

// enc encodes a time in Unix nanoseconds as the 20 digits the scripts
// compare: offset by 2^63 so that the order of negative times holds too.
func enc(ns int64) string {
	u := uint64(ns) ^ 1<<63
	var b [20]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + u%10)
		u /= 10
	}
	return string(b[:])
}

// fail notes a failed round trip.
func (s *Store) fail(err error) {
	s.stats.errors.Add(1)
	if isTimeout(err) {
		s.stats.timeouts.Add(1)
	}
	if s.down.Load() {
		return
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.down.CompareAndSwap(false, true) {
		s.stats.outages.Add(1)
		s.stats.lastErr.Store(&err)
		if s.onError != nil {
			s.onError(unavailableError{err})
		}
		s.kick() // to probe at RetryInterval
	}
}

// up notes a successful round trip.
func (s *Store) up() {
	if !s.down.Load() {
		return
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.down.CompareAndSwap(true, false) {
		s.stats.recoveries.Add(1)
		if s.onError != nil {
			s.onError(nil)
		}
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// kick wakes the heartbeat.
func (s *Store) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

var _ ratelimit.Store = (*Store)(nil)
