package ratelimit

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"
)

const (
	// defaultMaxSources bounds the in-memory table when MaxSources is zero.
	defaultMaxSources = 100_000
	// maxShards is the shard count for large tables; 64 keeps lock
	// contention low on any realistic core count.
	maxShards = 64
	// minPerShard keeps small tables in few shards, so that the total cap
	// is not eaten by uneven hashing.
	minPerShard = 16
	// evictSample is how many entries an eviction sweep looks at before it
	// settles for the best victim seen (approximate, like Redis's sampled
	// LRU). It looks further only if none of them is idle.
	evictSample = 16
)

// MemoryStore is the in-memory Store, the default of a Limiter. Its zero
// value is ready to use and it is safe for concurrent use. It must not be
// copied after first use.
//
// Sources are spread over up to 64 shards, each a map under its own mutex,
// so parallel admissions rarely contend. The entries of sources hold no
// pointers, so a million tracked sources cost the garbage collector
// nothing to scan. Failed logins (of sources and of user names, keyed by
// (Key, User) as Store requires) are kept in a second map of the same
// shards, created on the first failure, so that the sources' map keeps its
// pointer-free key and a source that never fails a login pays nothing for
// it. A source's failures live in its own shard, a user name's in the
// shard its hash picks. The store copies a user name it keeps, so it never
// pins the caller's buffer.
//
// Memory is bounded by MaxSources, which counts sources and failure
// entries together. A source entry with nothing in flight expires one time
// unit after its last event (as anvil drops a client one time unit after
// its last disconnect); a failure entry expires when its failure window
// ends. Expiry is lazy: an expired entry is reset when its key comes back,
// and swept when its shard is full. There are no background goroutines.
// When a new source or failure entry arrives at a full shard, the store
// samples the shard and removes, in this order: every expired entry in the
// sample; otherwise the idle entry (nothing in flight; a failure entry is
// always idle) with the fewest events, oldest first among equals, so a
// flood of one-shot addresses or user names displaces other one-shot
// entries rather than regular clients or locked-out ones. An entry with
// connections in flight is never evicted, so its Disconnect always finds
// it. If a shard holds only such entries, the new entry is refused with
// ErrFull.
type MemoryStore struct {
	// MaxSources caps the number of tracked sources. If zero or negative,
	// 100,000. It is read once, on first use.
	MaxSources int

	once     sync.Once
	k0, k1   uint64 // random per store, so nobody can aim at one shard
	seed     maphash.Seed
	shift    uint // 64 − log2(len(shards))
	shards   []shard
	perShard int
}

// shard is one lock and two maps, padded to a cache line of its own.
type shard struct {
	mu sync.Mutex
	m  map[key]entry
	l  map[loginKey]*failures // nil until the first failed login
	_  [40]byte
}

// key identifies a source without pointers: the 16-byte form of the masked
// address and the prefix length, zero for the client without an address.
type key struct {
	a    [16]byte
	bits uint8
}

// entry holds one source's counters; times are Unix nanoseconds.
type entry struct {
	start, last                            int64
	inFlight, conn, mail, rcpt             int32
	maxInFlight, maxConn, maxMail, maxRcpt int32
	refusals                               uint32
	hits                                   uint32
	auth, maxAuth                          int32
}

// loginKey identifies the failed logins of a source (user "") or of a user
// name (with the zero source key, as the Limiter sends it).
type loginKey struct {
	k    key
	user string
}

// failures holds the failed logins of one loginKey; times are Unix
// nanoseconds. The map holds pointers so that updating an entry never
// stores the caller's string as the key again.
type failures struct {
	end, last int64 // end of the failure window (inclusive); last failure
	n         int32
	hits      uint32
}

// expired reports whether the failure window has ended at now.
func (f *failures) expired(now int64) bool { return now > f.end }

func makeKey(p netip.Prefix) key {
	if !p.IsValid() {
		return key{}
	}
	return key{a: p.Addr().As16(), bits: uint8(p.Bits())}
}

func (s *MemoryStore) init() {
	s.once.Do(func() {
		max := s.MaxSources
		if max <= 0 {
			max = defaultMaxSources
		}
		n := 1
		for n < maxShards && n*2*minPerShard <= max {
			n *= 2
		}
		s.k0, s.k1 = rand.Uint64()|1, rand.Uint64()|1
		s.seed = maphash.MakeSeed()
		s.shift = uint(64 - bits.TrailingZeros(uint(n)))
		s.perShard = max / n
		s.shards = make([]shard, n)
		for i := range s.shards {
			s.shards[i].m = make(map[key]entry)
		}
	})
}

// shardOf picks k's shard with a keyed multiply-xorshift: cheaper than a
// second full hash (the map hashes the key again), and the random keys
// keep a flood from aiming at one shard.
func (s *MemoryStore) shardOf(k key) *shard {
	hi := binary.LittleEndian.Uint64(k.a[:8]) ^ s.k0
	lo := (binary.LittleEndian.Uint64(k.a[8:]) + uint64(k.bits)) ^ s.k1
	h := hi*0x9e3779b97f4a7c15 ^ lo*0xc2b2ae3d27d4eb4f
	h ^= h >> 31
	h *= 0xff51afd7ed558ccd
	return &s.shards[h>>s.shift&uint64(len(s.shards)-1)]
}

// shardOfUser picks the shard of a user name's failures.
func (s *MemoryStore) shardOfUser(user string) *shard {
	h := maphash.String(s.seed, user)
	return &s.shards[h>>s.shift&uint64(len(s.shards)-1)]
}

// full reports whether the shard has no room for one more entry; sh.mu is
// held.
func (sh *shard) full(perShard int) bool {
	return len(sh.m)+len(sh.l) >= perShard
}

// Record records r and returns the counters of r's key after it. It never
// blocks on anything but its shard's lock, so it ignores ctx.
func (s *MemoryStore) Record(_ context.Context, r Request) (Counts, error) {
	s.init()
	if r.User != "" || r.Event == LoginFailed {
		// Only ints cross this call: returning a Counts from a call here
		// would send every return of Record through memory (see below).
		n, err := s.recordFailures(r)
		return Counts{LoginFailures: n}, err
	}
	k := makeKey(r.Key)
	sh := s.shardOf(k)
	now, unit := r.Now.UnixNano(), int64(r.Unit)
	sh.mu.Lock()
	e, ok := sh.m[k]
	fresh := !ok
	if ok && e.expired(now, unit) {
		e, fresh = entry{}, true
	}
	if fresh {
		if r.Event != Connect && r.Event != Message && r.Event != Recipient && r.Event != Login {
			// Nothing to undo or count for a source we no longer track.
			sh.mu.Unlock()
			return Counts{}, nil
		}
		if !ok && sh.full(s.perShard) && !sh.evict(now, unit) {
			sh.mu.Unlock()
			return Counts{}, ErrFull
		}
		e.start = now
	}
	e.apply(r.Event, now, unit)
	sh.m[k] = e
	fails := 0
	if r.Event == Login {
		fails = sh.failuresOf(k, now)
	}
	sh.mu.Unlock()
	// The literal is built in place: Counts has too many fields to live in
	// registers, and returning a copy of one built elsewhere (by a helper
	// such as counts) moves it through memory, a measurable stall here.
	return Counts{
		InFlight:      int(e.inFlight),
		ConnRate:      int(e.conn),
		MessageRate:   int(e.mail),
		RecipientRate: int(e.rcpt),
		AuthRate:      int(e.auth),
		LoginFailures: fails,
	}, nil
}

// failuresOf returns the failed logins of source k in its current window;
// sh.mu is held. It is kept out of line so that its map access (a key
// with a string) adds nothing to Record's frame for the other events.
//
//go:noinline
func (sh *shard) failuresOf(k key, now int64) int {
	if sh.l == nil {
		return 0
	}
	if f := sh.l[loginKey{k: k}]; f != nil && !f.expired(now) {
		return int(f.n)
	}
	return 0
}

// recordFailures records a LoginFailed for a source or a user, or a Login
// (or any other event) for a user, which only reads its failures. It
// returns the failures in the current window.
func (s *MemoryStore) recordFailures(r Request) (int, error) {
	lk := loginKey{k: makeKey(r.Key), user: r.User}
	sh := s.shardOf(lk.k)
	if r.User != "" {
		sh = s.shardOfUser(r.User)
	}
	now, unit := r.Now.UnixNano(), int64(r.Unit)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	f := sh.l[lk]
	if r.Event != LoginFailed {
		if f == nil || f.expired(now) {
			return 0, nil
		}
		return int(f.n), nil
	}
	if f == nil {
		if sh.full(s.perShard) && !sh.evict(now, unit) {
			return 0, ErrFull
		}
		if sh.l == nil {
			sh.l = make(map[loginKey]*failures)
		}
		lk.user = strings.Clone(lk.user)
		f = new(failures)
		sh.l[lk] = f
	}
	if f.n == 0 || f.expired(now) {
		window := r.Window
		if window <= 0 {
			window = r.Unit
		}
		end := now + int64(window)
		if end < now {
			end = math.MaxInt64 // a window of centuries
		}
		*f = failures{end: end}
	}
	f.n = incr(f.n)
	if f.hits < math.MaxUint32 {
		f.hits++
	}
	if now > f.last {
		f.last = now
	}
	return int(f.n), nil
}

// evict makes room in a full shard; sh.mu is held. It reports whether it
// removed anything.
func (sh *shard) evict(now, unit int64) bool {
	var victim key
	var lvictim loginKey
	var hits uint32
	var last int64
	found, inL, swept, seen := false, false, 0, 0
	for k, e := range sh.m {
		seen++
		if e.inFlight == 0 {
			switch {
			case e.expired(now, unit):
				delete(sh.m, k)
				swept++
			case !found || e.hits < hits || (e.hits == hits && e.last < last):
				victim, hits, last, found = k, e.hits, e.last, true
			}
		}
		if seen >= evictSample && (found || swept > 0) {
			break
		}
	}
	// Failure entries are sampled the same way; they are always idle.
	seen = 0
	for k, f := range sh.l {
		seen++
		switch {
		case f.expired(now):
			delete(sh.l, k)
			swept++
		case !found || f.hits < hits || (f.hits == hits && f.last < last):
			lvictim, hits, last, found, inL = k, f.hits, f.last, true, true
		}
		if seen >= evictSample && (found || swept > 0) {
			break
		}
	}
	switch {
	case swept > 0:
		return true
	case !found:
		return false
	case inL:
		delete(sh.l, lvictim)
	default:
		delete(sh.m, victim)
	}
	return true
}

func (e *entry) expired(now, unit int64) bool {
	return e.inFlight == 0 && now-e.last > unit
}

// roll applies anvil's window rule before a rate event: more than one unit
// after the window's start, every rate restarts from zero at now.
func (e *entry) roll(now, unit int64) {
	if now-e.start > unit {
		e.conn, e.mail, e.rcpt, e.auth = 0, 0, 0, 0
		e.start = now
	}
}

func (e *entry) apply(ev Event, now, unit int64) {
	if now > e.last {
		e.last = now
	}
	switch ev {
	case Connect:
		e.roll(now, unit)
		e.conn = incr(e.conn)
		e.inFlight = incr(e.inFlight)
		e.maxConn = max(e.maxConn, e.conn)
		e.maxInFlight = max(e.maxInFlight, e.inFlight)
	case Message:
		e.roll(now, unit)
		e.mail = incr(e.mail)
		e.maxMail = max(e.maxMail, e.mail)
	case Recipient:
		e.roll(now, unit)
		e.rcpt = incr(e.rcpt)
		e.maxRcpt = max(e.maxRcpt, e.rcpt)
	case Login:
		e.roll(now, unit)
		e.auth = incr(e.auth)
		e.maxAuth = max(e.maxAuth, e.auth)
	case Disconnect, ConnectRefused:
		if e.inFlight > 0 {
			e.inFlight--
		}
		if ev == ConnectRefused && e.refusals < math.MaxUint32 {
			e.refusals++
		}
		return
	case Refused:
		if e.refusals < math.MaxUint32 {
			e.refusals++
		}
		return
	}
	if e.hits < math.MaxUint32 {
		e.hits++
	}
}

// incr adds one, saturating like anvil's "if (x < INT_MAX) x += 1".
func incr(v int32) int32 {
	if v < math.MaxInt32 {
		v++
	}
	return v
}

func (e *entry) counts() Counts {
	return Counts{
		InFlight:      int(e.inFlight),
		ConnRate:      int(e.conn),
		MessageRate:   int(e.mail),
		RecipientRate: int(e.rcpt),
		AuthRate:      int(e.auth),
	}
}

// lookup returns the statistics of key at now; see inspector.
func (s *MemoryStore) lookup(p netip.Prefix, now time.Time, unit time.Duration) (SourceStats, bool) {
	s.init()
	k := makeKey(p)
	sh := s.shardOf(k)
	n := now.UnixNano()
	var f failures
	sh.mu.Lock()
	e, ok := sh.m[k]
	fp := sh.l[loginKey{k: k}]
	if fp != nil {
		f = *fp
	}
	sh.mu.Unlock()
	ok = ok && !e.expired(n, int64(unit))
	fok := fp != nil && !f.expired(n)
	if !ok && !fok {
		return SourceStats{}, false
	}
	st := SourceStats{Source: p}
	if ok {
		st = SourceStats{
			Source:           p,
			Counts:           e.counts(),
			MaxInFlight:      int(e.maxInFlight),
			MaxConnRate:      int(e.maxConn),
			MaxMessageRate:   int(e.maxMail),
			MaxRecipientRate: int(e.maxRcpt),
			MaxAuthRate:      int(e.maxAuth),
			Refusals:         int(e.refusals),
			WindowStart:      time.Unix(0, e.start),
			LastSeen:         time.Unix(0, e.last),
		}
		if n-e.start > int64(unit) {
			// Do not report stale rates (anvil_remote_lookup does the same).
			st.ConnRate, st.MessageRate, st.RecipientRate, st.AuthRate = 0, 0, 0, 0
		}
	}
	if fok {
		st.LoginFailures = int(f.n)
		st.FailureWindowEnd = time.Unix(0, f.end)
		if !ok || f.last > e.last {
			st.LastSeen = time.Unix(0, f.last)
		}
	}
	return st, true
}

// size returns the number of tracked entries, sources and failure entries
// together, counting expired entries that have not been swept yet.
func (s *MemoryStore) size() int {
	s.init()
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m) + len(sh.l)
		sh.mu.Unlock()
	}
	return n
}

// capacity returns the most sources the store will track: MaxSources, or
// its default, rounded down to a multiple of the shard count.
func (s *MemoryStore) capacity() int {
	s.init()
	return s.perShard * len(s.shards)
}

var (
	_ Store     = (*MemoryStore)(nil)
	_ inspector = (*MemoryStore)(nil)
)
