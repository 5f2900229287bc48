package redisstore

import (
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
)

// ledgerShards spreads the ledger over a few locks; a Record holds one for
// a map access, so contention matters little next to the round trip.
const ledgerShards = 16

// ledger is this replica's own truth about its connections in flight, per
// source: the count Redis should hold in the replica's field of the
// source's hash. Every Connect, Disconnect and ConnectRefused updates it
// first, whatever Redis does; the field is then written with the new
// count and a sequence number, so that writes that arrive late or twice
// change nothing. A write that fails (or may have failed) is not retried
// on its own: the heartbeat renews the lease under a new token and writes
// every count again. Entries exist only while something is in flight.
type ledger struct {
	seed   maphash.Seed
	shards [ledgerShards]ledgerShard
}

type ledgerShard struct {
	mu sync.Mutex
	m  map[netip.Prefix]*slot
	_  [40]byte // a cache line each
}

// slot is the ledger entry of one source.
type slot struct {
	key string // the source's hash
	// count is the connections in flight from this source on this
	// replica; fb how many of them the fallback counted (and must see
	// released).
	count, fb int32
	// written is when the count was last sent (nanoseconds on the store's
	// clock), ttl the key's TTL in ms then: the heartbeat rewrites counts
	// older than half their TTL, so a source with long connections does
	// not expire.
	written, ttl int64
}

func (l *ledger) init() {
	l.seed = maphash.MakeSeed()
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Prefix]*slot)
	}
}

func (l *ledger) shard(p netip.Prefix) *ledgerShard {
	return &l.shards[maphash.Comparable(l.seed, p)%ledgerShards]
}

// change is what an event did to the ledger.
type change struct {
	before, after int32
	// seq is the sequence number of after; zero when the event does not
	// change in-flight counts.
	seq uint64
	// fb: a Disconnect or ConnectRefused released a connection the
	// fallback counted.
	fb bool
}

// incr adds one, saturating like ratelimit's counters.
func incr(v int32) int32 {
	if v < math.MaxInt32 {
		v++
	}
	return v
}
