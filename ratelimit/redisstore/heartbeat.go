package redisstore

import (
	"context"
	"strconv"
	"time"
)

// heartbeat refreshes the lease every LeaseTTL/3 while Redis answers, and
// asks it every RetryInterval while it does not; a kick (a lost lease, a
// failed in-flight write) brings the next beat forward while Redis is up.
func (s *Store) heartbeat() {
	defer s.wg.Done()
	next := time.Now().Add(s.interval())
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.wake:
			if s.down.Load() {
				// Redis just went away: probe it after RetryInterval,
				// not at the next refresh.
				if d := time.Now().Add(s.retry); d.Before(next) {
					next = d
					t.Reset(time.Until(next))
				}
				continue
			}
		}
		s.beat(context.Background(), s.timeout)
		next = time.Now().Add(s.interval())
		t.Reset(time.Until(next))
	}
}

func (s *Store) interval() time.Duration {
	if s.down.Load() {
		return s.retry
	}
	return s.leaseTTL / 3
}

// beat refreshes the lease, or renews it under a new token when it was
// lost or a renewal was asked for, and then writes the in-flight counts
// that need it: all of them after a renewal, otherwise those due for a
// TTL refresh. Each round trip waits at most timeout (if positive) within
// ctx. Only New (before the heartbeat starts) and the heartbeat call it.
func (s *Store) beat(ctx context.Context, timeout time.Duration) {
	renew := s.renew.Swap(false)
	cur := *s.tok.Load()
	next := strconv.FormatUint(s.tokN+1, 10)
	force := "0"
	if renew {
		force = "1"
	}
	rctx, cancel := s.bound(ctx, timeout)
	held, err := leaseScript.Run(rctx, s.client, []string{s.leaseKey}, cur, next, s.leaseTTL.Milliseconds(), force).Int64()
	cancel()
	if err != nil {
		if renew {
			s.renew.Store(true)
		}
		s.fail(err)
		return
	}
	s.up()
	all := held == 0
	if all {
		s.tokN++
		s.tok.Store(&next)
		if cur != "" {
			s.stats.renewals.Add(1)
		}
	}
	s.sync(ctx, timeout, all)
}

func (s *Store) bound(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	return context.WithCancel(ctx)
}

// syncItem is one in-flight count to write.
type syncItem struct {
	key   string
	count int32
	seq   uint64
	ttl   int64
}

// sync writes this replica's in-flight counts under the current token:
// all of them, or those written more than half their key's TTL ago. A
// failure asks for a renewal, which writes them all again.
func (s *Store) sync(ctx context.Context, timeout time.Duration, all bool) {
	now := s.now()
	var items []syncItem
	for i := range s.led.shards {
		sh := &s.led.shards[i]
		sh.mu.Lock()
		for _, sl := range sh.m {
			if !all && now-sl.written <= sl.ttl*int64(time.Millisecond)/2 {
				continue
			}
			// The sequence number is taken under the shard's lock, like a
			// Record's: whichever write carries the newer count wins.
			items = append(items, syncItem{key: sl.key, count: sl.count, seq: s.seq.Add(1), ttl: sl.ttl})
			sl.written = now
		}
		sh.mu.Unlock()
	}
	tok := *s.tok.Load()
	keys := make([]string, 0, min(len(items), syncBatch))
	args := make([]any, 0, 3+3*cap(keys))
	for len(items) > 0 {
		if s.closed.Load() {
			return
		}
		n := min(len(items), syncBatch)
		keys, args = keys[:0], append(args[:0], s.argLease, s.argReplica, tok)
		for _, it := range items[:n] {
			keys = append(keys, it.key)
			args = append(args, it.count, it.seq, it.ttl)
		}
		rctx, cancel := s.bound(ctx, timeout)
		res, err := syncScript.Run(rctx, s.client, keys, args...).Int64()
		cancel()
		if err != nil {
			s.renew.Store(true)
			s.fail(err)
			return
		}
		if res < 0 {
			// The lease changed under us: renew at once.
			s.renew.Store(true)
			s.kick()
			return
		}
		items = items[n:]
	}
}
