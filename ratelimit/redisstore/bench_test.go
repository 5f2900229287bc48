package redisstore

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
)

// BenchmarkRecord measures one Record against a real redis-server on
// loopback: one round trip and the script. Message is a rate event;
// Connect+Disconnect is a pair (two round trips per op, with the ledger
// and the in-flight field); Login reads the failures too; the parallel
// case shows the throughput of one Store with many sessions.
func BenchmarkRecord(b *testing.B) {
	srv := startRedis(b)
	client := srv.Client(b)
	s := newStore(b, client, Options{Prefix: "bench:", Timeout: time.Second})
	keys := make([]netip.Prefix, 1024)
	for i := range keys {
		keys[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
	}
	run := func(b *testing.B, evs ...ratelimit.Event) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := ratelimit.Request{Key: keys[i%len(keys)], Now: time.Now(), Unit: time.Minute}
			for _, ev := range evs {
				r.Event = ev
				if _, err := s.Record(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			i++
		}
	}
	b.Run("Message", func(b *testing.B) { run(b, ratelimit.Message) })
	b.Run("Login", func(b *testing.B) { run(b, ratelimit.Login) })
	b.Run("Connect+Disconnect", func(b *testing.B) { run(b, ratelimit.Connect, ratelimit.Disconnect) })
	b.Run("Message/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				r := ratelimit.Request{Key: keys[i%len(keys)], Event: ratelimit.Message, Now: time.Now(), Unit: time.Minute}
				if _, err := s.Record(ctx, r); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	if st := s.Stats(); st.Errors != 0 {
		b.Errorf("%d errors", st.Errors)
	}
}
