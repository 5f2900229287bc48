package ratelimit

import (
	"context"
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
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
// so parallel admissions rarely contend. Entries hold no pointers, so a
// million tracked sources cost the garbage collector nothing to scan.
//
// Memory is bounded by MaxSources. An entry with nothing in flight expires
// one time unit after its last event (as anvil drops a client one time unit
// after its last disconnect); expiry is lazy: an expired entry is reset
// when its source comes back, and swept when its shard is full. There are
// no background goroutines. When a new source arrives at a full shard, the
// store samples the shard and removes, in this order: every expired entry
// in the sample; otherwise the idle entry (nothing in flight) with the
// fewest events, oldest first among equals, so a flood of one-shot
// addresses displaces other one-shot addresses rather than regular
// clients. An entry with connections in flight is never evicted, so its
// Disconnect always finds it. If a shard holds only such entries, the new
// source is refused with ErrFull.
type MemoryStore struct {
	// MaxSources caps the number of tracked sources. If zero or negative,
	// 100,000. It is read once, on first use.
	MaxSources int

	once     sync.Once
	k0, k1   uint64 // random per store, so nobody can aim at one shard
	shift    uint   // 64 − log2(len(shards))
	shards   []shard
	perShard int
}

// shard is one lock and one map, padded to a cache line of its own.
type shard struct {
	mu sync.Mutex
	m  map[key]entry
	_  [48]byte
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
}

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

// Record records r and returns the source's counters after it. It never
// blocks on anything but its shard's lock, so it ignores ctx.
func (s *MemoryStore) Record(_ context.Context, r Request) (Counts, error) {
	s.init()
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
		if r.Event != Connect && r.Event != Message && r.Event != Recipient {
			// Nothing to undo or count for a source we no longer track.
			sh.mu.Unlock()
			return Counts{}, nil
		}
		if !ok && len(sh.m) >= s.perShard && !sh.evict(now, unit) {
			sh.mu.Unlock()
			return Counts{}, ErrFull
		}
		e.start = now
	}
	e.apply(r.Event, now, unit)
	sh.m[k] = e
	sh.mu.Unlock()
	return e.counts(), nil
}

// evict makes room in a full shard; sh.mu is held. It reports whether it
// removed anything.
func (sh *shard) evict(now, unit int64) bool {
	var victim key
	var best entry
	found, swept, seen := false, 0, 0
	for k, e := range sh.m {
		seen++
		if e.inFlight == 0 {
			switch {
			case e.expired(now, unit):
				delete(sh.m, k)
				swept++
			case !found || e.hits < best.hits || (e.hits == best.hits && e.last < best.last):
				victim, best, found = k, e, true
			}
		}
		if seen >= evictSample && (found || swept > 0) {
			break
		}
	}
	if swept > 0 {
		return true
	}
	if found {
		delete(sh.m, victim)
	}
	return found
}

func (e *entry) expired(now, unit int64) bool {
	return e.inFlight == 0 && now-e.last > unit
}

// roll applies anvil's window rule before a rate event: more than one unit
// after the window's start, every rate restarts from zero at now.
func (e *entry) roll(now, unit int64) {
	if now-e.start > unit {
		e.conn, e.mail, e.rcpt = 0, 0, 0
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
	}
}

// lookup returns the statistics of key at now; see inspector.
func (s *MemoryStore) lookup(p netip.Prefix, now time.Time, unit time.Duration) (SourceStats, bool) {
	s.init()
	k := makeKey(p)
	sh := s.shardOf(k)
	sh.mu.Lock()
	e, ok := sh.m[k]
	sh.mu.Unlock()
	n := now.UnixNano()
	if !ok || e.expired(n, int64(unit)) {
		return SourceStats{}, false
	}
	st := SourceStats{
		Source:           p,
		Counts:           e.counts(),
		MaxInFlight:      int(e.maxInFlight),
		MaxConnRate:      int(e.maxConn),
		MaxMessageRate:   int(e.maxMail),
		MaxRecipientRate: int(e.maxRcpt),
		Refusals:         int(e.refusals),
		WindowStart:      time.Unix(0, e.start),
		LastSeen:         time.Unix(0, e.last),
	}
	if n-e.start > int64(unit) {
		// Do not report stale rates (anvil_remote_lookup does the same).
		st.ConnRate, st.MessageRate, st.RecipientRate = 0, 0, 0
	}
	return st, true
}

// size returns the number of tracked sources, counting expired entries
// that have not been swept yet.
func (s *MemoryStore) size() int {
	s.init()
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
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
