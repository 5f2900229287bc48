// Package redisstore keeps the counters of a ratelimit.Limiter in Redis,
// so that a fleet of gateways behind one load balancer limits each source
// once, not once per replica: a Store implements ratelimit.Store with
// go-redis (github.com/redis/go-redis/v9) and counts exactly as
// ratelimit.MemoryStore does (anvil's fixed windows; the tests feed both
// the same events and compare every answer). The core package keeps no
// Redis dependency.
//
// # Use
//
//	client := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	store, err := redisstore.New(ctx, client, redisstore.Options{
//		Replica:     podName,                 // unique per process; default random
//		Connections: redisstore.FailOpen,     // the defaults: count locally while Redis is down
//		Logins:      redisstore.FailClosed,   // refuse logins instead
//		OnError:     func(err error) { log.Print(err) }, // nil when Redis is back
//	})
//	if err != nil { ... } // only for bad arguments: a Redis that is down is not one
//	defer client.Close()
//	defer store.Close()
//	lim := &ratelimit.Limiter{Limits: limits, Store: store}
//
// The client must set ContextTimeoutEnabled, or go-redis bounds socket
// reads by its ReadTimeout (5 s) rather than by the context, and New
// refuses it. One round trip per Record: a Lua script, run with EVALSHA
// and EVAL when Redis lost its script cache (redis.Script.Run).
//
// # Data model
//
// All keys start with Options.Prefix ("mailedge:rl:" unless set):
//
//	<prefix>s:<source>        hash of a source: 192.0.2.1/32, 2001:db8::/64, "-" for no address
//	<prefix>u:<user>          hash of a user name's failed logins (trimmed, lower-cased by the Limiter)
//	<prefix>replica:<name>    a replica's lease: its current token, with TTL LeaseTTL
//
// A source's hash has the fields of MemoryStore's entry: s and l (window
// start, last event), c, m, r, a (connection, message, recipient and auth
// rates in the window), fn and fe (failed logins and the end of their
// window), and one field per replica with connections from the source,
// "i:<replica>:<token>" = "<count>:<sequence>". A user name's hash has
// fn and fe only. Times are Unix nanoseconds written as 20 digits (offset
// by 2^63), because Lua's numbers are doubles and exact only to 2^53: Go
// passes now, now−Unit and now+Window, and the script only compares them.
// The times are Request.Now, the Limiter's clock, not Redis's, so the
// replicas' clocks should agree (NTP) to well under a rate unit.
//
// Every write sets the hash's TTL to at least twice the rate unit and four
// lease TTLs (one minute with the defaults), and for a failed login its
// failure window plus a unit; a TTL is never shortened. An idle source
// vanishes on its own; the window rules do not depend on the TTL (the
// script applies them to l and s, exactly), it only reclaims memory.
//
// # The script
//
// For a source, recordScript: reads the hash (HGETALL); for each in-flight
// field of another replica, reads that replica's lease (one GET per
// replica, cached for the call), sums the fields whose token the lease
// holds and deletes the others (a replica that died, or a previous life of
// one); takes this replica's own count from the call, not from Redis (its
// ledger, below, is the truth); writes its own field if the call changes
// it and the lease holds the call's token, keeping the newest sequence
// number; then applies anvil's rules as MemoryStore does: an entry with
// nothing in flight and more than a unit since its last event, or none,
// is fresh; Disconnect, ConnectRefused and Refused count nothing on a
// fresh entry; a rate event more than a unit after the window's start
// resets the four rates and opens a window at its own time, then counts
// itself (saturating at 2^31−1); l keeps the latest event; Login returns
// the source's failed logins if their window has not ended. LoginFailed,
// of a source or a user name, opens a failure window of Request.Window
// at the first failure or at the first after the window ended, and counts
// within it; Login of a user name only reads. Finally the TTL. It returns
// the Counts, and whether this replica's lease was missing.
//
// # In flight across the fleet
//
// Each replica keeps a ledger in memory: its own connections in flight
// per source, updated by Connect, Disconnect and ConnectRefused before
// Redis is asked, whatever Redis answers. Its field in the source's hash
// is a copy, written with a sequence number so that writes that arrive
// late, out of order or twice (go-redis retries) change nothing. The
// field belongs to the replica's lease: the heartbeat refreshes the lease
// every LeaseTTL/3 (15 s TTL by default), and a replica that dies, even by
// SIGKILL, stops counting for the others when its lease expires; the next
// script to read the source deletes its field. Close deletes the lease at
// once. A source with connections in flight never expires: the heartbeat
// rewrites counts before half their TTL has passed.
//
// When a write of a count fails or may have failed (a timeout), or the
// lease was lost (Redis restarted empty, or the replica was cut off for
// more than LeaseTTL), the heartbeat renews the lease under a new token,
// which invalidates every field of the old one, and writes all the counts
// of the ledger again, 128 sources per round trip. The InFlight the fleet
// sees is therefore eventually exact: it lags by at most LeaseTTL for a
// replica that died, and misses a replica's connections for the duration
// of its rewrite after a renewal (milliseconds). A replica always counts
// its own connections exactly.
//
// # When Redis is slow or down
//
// Every round trip waits at most Timeout (50 ms by default), within the
// caller's context. When one fails, the Store considers Redis down: it
// calls OnError once, stops asking Redis from Record (so no session waits
// for it), and applies each event's Policy at once; the heartbeat asks
// Redis every RetryInterval (500 ms), and the first answer brings it back
// (OnError(nil)), with a renewal if a count was not written. go-redis
// reconnects on its own; nothing needs a restart. Stats counts calls,
// errors, timeouts, fallbacks, refusals, outages and recoveries for the
// gateway's metrics.
//
// FailOpen (the default of every class) counts the event in the fallback,
// an in-process ratelimit.MemoryStore unless Options.Fallback is set, and
// answers from it, with this replica's own in-flight count from the
// ledger: the limits hold per replica until Redis is back, and what the
// fallback counted does not reach Redis. FailClosed returns an error
// wrapping ErrUnavailable; the Limiter returns it wrapped, and its
// replies make it a temporary failure: "421 4.3.0 Error: temporary
// failure, try again later" in SMTP, "[UNAVAILABLE] Temporary failure,
// try again later" in IMAP, "-ERR [SYS/TEMP] Temporary failure, try
// again later" in POP3. A Connect so refused is taken back from the
// ledger (the Limiter releases nothing after an error). Disconnect and
// ConnectRefused follow the Connections policy but always reach the
// ledger; Refused, whose result the Limiter ignores, always fails open.
//
// # Sizing
//
// Measured with Redis 7.0: about 250 bytes per source with rates only
// (2.5 MB for 10,000 sources, keys and expiry included), 40 more for each
// replica with connections from it and for failed logins; a user name
// with failed logins about 240 bytes. Idle sources leave after their TTL,
// so memory follows the sources seen in the last minute or two, and the
// failed logins in the last failure window. The script runs in about 20
// to 50 µs of Redis CPU, so one Redis core serves some 20,000 to 50,000
// events a second for the whole fleet. Redis Cluster is not tested: the
// script reads the leases beside the source's hash, so every key must be
// on one shard (a Prefix with a hash tag, "{mailedge}:rl:"), which gives
// no sharding. Sentinel or a replicated primary work as one Redis; a
// failover that loses the lease renews it, as after a restart.
package redisstore
