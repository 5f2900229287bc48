package backend

import (
	"strconv"
	"testing"
)

// BenchmarkPick measures choosing a member under the pool lock, the part
// of Pool.Dial that is not network I/O, for 8 members.
func BenchmarkPick(b *testing.B) {
	for _, policy := range []Policy{RoundRobin, LeastConn, Weighted} {
		b.Run(policy.String(), func(b *testing.B) {
			p := &Pool{Policy: policy}
			for i := range 8 {
				name := "m" + strconv.Itoa(i)
				if err := p.Add(Member{Name: name, Dialer: &Dialer{Addr: name + ":25"}, Weight: i + 1}); err != nil {
					b.Fatal(err)
				}
			}
			p.SetUp("m3", false)
			b.ReportAllocs()
			for b.Loop() {
				m := p.acquire(nil)
				p.done(m, false)
			}
		})
	}
}

// BenchmarkPickFailover measures picks that skip already-tried members, as
// Dial does after a failure.
func BenchmarkPickFailover(b *testing.B) {
	p := &Pool{Policy: LeastConn}
	for i := range 8 {
		name := "m" + strconv.Itoa(i)
		if err := p.Add(Member{Name: name, Dialer: &Dialer{Addr: name + ":25"}}); err != nil {
			b.Fatal(err)
		}
	}
	tried := []*member{p.members[0], p.members[1], p.members[2]}
	b.ReportAllocs()
	for b.Loop() {
		m := p.acquire(tried)
		p.done(m, false)
	}
}
