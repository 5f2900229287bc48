package backend

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// paperPool is a pool whose members are never dialled: for pick tests.
func paperPool(t *testing.T, policy Policy, weights map[string]int, names ...string) *Pool {
	t.Helper()
	p := &Pool{Policy: policy}
	for _, n := range names {
		require.NoError(t, p.Add(Member{Name: n, Dialer: &Dialer{Addr: n + ":25"}, Weight: weights[n]}))
	}
	return p
}

// picks runs acquire n times and returns the member names in order,
// releasing each pick at once unless hold is set.
func picks(p *Pool, n int, hold bool) string {
	var out []string
	for range n {
		m := p.acquire(nil)
		if m == nil {
			out = append(out, "-")
			continue
		}
		out = append(out, m.name)
		if !hold {
			p.done(m, false)
		}
	}
	return strings.Join(out, " ")
}

func TestPick(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		weights map[string]int
		setup   func(p *Pool)
		hold    bool
		want    string
	}{
		{name: "round robin", policy: RoundRobin, want: "a b c a b c"},
		{name: "round robin skips down", policy: RoundRobin, setup: func(p *Pool) { p.SetUp("b", false) }, want: "a c a c a c"},
		{name: "round robin skips draining", policy: RoundRobin, setup: func(p *Pool) { p.Drain("a", true) }, want: "b c b c b c"},
		{name: "all down", policy: RoundRobin, setup: func(p *Pool) {
			for _, n := range []string{"a", "b", "c"} {
				p.SetUp(n, false)
			}
		}, want: "- - - - - -"},
		{name: "up again", policy: RoundRobin, setup: func(p *Pool) { p.SetUp("a", false); p.SetUp("a", true) }, want: "a b c a b c"},
		{name: "least conn spreads held conns", policy: LeastConn, hold: true, want: "a b c a b c"},
		{name: "least conn rotates ties", policy: LeastConn, want: "a b c a b c"},
		{name: "least conn by weight", policy: LeastConn, hold: true, weights: map[string]int{"a": 2}, want: "a b c a b c a a"},
		{name: "weighted smooth", policy: Weighted, weights: map[string]int{"a": 5}, want: "a a b a c a a a a b a c a a"},
		{name: "weighted equal", policy: Weighted, want: "a b c a b c"},
		{name: "weighted skips down", policy: Weighted, weights: map[string]int{"a": 5}, setup: func(p *Pool) { p.SetUp("a", false) }, want: "b c b c b c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := paperPool(t, tt.policy, tt.weights, "a", "b", "c")
			if tt.setup != nil {
				tt.setup(p)
			}
			n := len(strings.Fields(tt.want))
			assert.Equal(t, tt.want, picks(p, n, tt.hold))
		})
	}
}

func TestPickLeastConnAfterRelease(t *testing.T) {
	p := paperPool(t, LeastConn, nil, "a", "b", "c")
	a, b, c := p.acquire(nil), p.acquire(nil), p.acquire(nil)
	require.Equal(t, []string{"a", "b", "c"}, []string{a.name, b.name, c.name})
	p.done(b, false)
	assert.Equal(t, "b", p.acquire(nil).name)
}

func TestPoolAddErrors(t *testing.T) {
	var p Pool
	require.NoError(t, p.Add(Member{Dialer: &Dialer{Addr: "a:25"}}))
	assert.ErrorIs(t, p.Add(Member{Dialer: &Dialer{Addr: "a:25"}}), ErrConfig, "duplicate")
	assert.ErrorIs(t, p.Add(Member{Name: "x"}), ErrConfig, "no dialer")
	assert.ErrorIs(t, p.Add(Member{Name: "y", Dialer: &Dialer{Addr: "y:25"}, Weight: -1}), ErrConfig, "weight")
	st, ok := p.Member("a:25")
	require.True(t, ok)
	assert.Equal(t, MemberStatus{Name: "a:25", Addr: "a:25", Weight: 1, Up: true}, st)
	assert.True(t, p.Remove("a:25"))
	assert.False(t, p.Remove("a:25"))
	assert.Empty(t, p.Members())
}

func TestPoolFailover(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	live := newFake(t, greeter("220 live\r\n"))
	refusing := newFake(t, greeter("421 4.3.2 try later\r\n"))
	silent := newFake(t, func(f *fakeConn) { f.line() })
	tests := []struct {
		name string
		dead *Dialer
	}{
		{"connection refused", &Dialer{Addr: deadAddr(t)}},
		{"refusal greeting", &Dialer{Addr: refusing.Addr()}},
		{"no greeting", &Dialer{Addr: silent.Addr(), HandshakeTimeout: 50 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPool(RoundRobin, Member{Name: "dead", Dialer: tt.dead}, Member{Name: "live", Dialer: &Dialer{Addr: live.Addr()}})
			require.NoError(t, err)
			c, err := p.Dial(context.Background(), ClientInfo{})
			require.NoError(t, err)
			assert.Equal(t, "live", c.Member)
			assert.Equal(t, "220 live\r\n", string(c.Greeting))
			quit(t, c)
			require.NoError(t, c.Close())
			st := p.Members()
			assert.Equal(t, MemberStatus{Name: "dead", Addr: tt.dead.Addr, Weight: 1, Up: true, Dials: 1, Failures: 1}, st[0])
			assert.Equal(t, MemberStatus{Name: "live", Addr: live.Addr(), Weight: 1, Up: true, Dials: 1}, st[1])
		})
	}
}

func TestPoolAllFail(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	refusing := newFake(t, greeter("554 5.3.2 no service\r\n"))
	p, err := NewPool(RoundRobin,
		Member{Name: "refused", Dialer: &Dialer{Addr: deadAddr(t)}},
		Member{Name: "554", Dialer: &Dialer{Addr: refusing.Addr()}})
	require.NoError(t, err)
	_, err = p.Dial(context.Background(), ClientInfo{})
	assert.ErrorIs(t, err, ErrNoBackend)
	var ge *GreetingError // the last error, from the second member
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, 554, ge.Code)
	assert.False(t, ge.Temporary())

	p.SetUp("554", false)
	_, err = p.Dial(context.Background(), ClientInfo{})
	assert.ErrorIs(t, err, ErrNoBackend)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestPoolAllDownIsImmediate(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	var p Pool
	_, err := p.Dial(context.Background(), ClientInfo{})
	assert.Equal(t, ErrNoBackend, err, "empty pool")

	live := newFake(t, greeter("220 live\r\n"))
	require.NoError(t, p.Add(Member{Name: "a", Dialer: &Dialer{Addr: live.Addr()}}))
	require.NoError(t, p.Add(Member{Name: "b", Dialer: &Dialer{Addr: live.Addr()}}))
	p.SetUp("a", false)
	p.Drain("b", true)
	_, err = p.Dial(context.Background(), ClientInfo{})
	assert.Equal(t, ErrNoBackend, err)
	for _, st := range p.Members() {
		assert.Zero(t, st.Dials, "member %s dialled", st.Name)
	}
}

func TestPoolDrain(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	a, b := newFake(t, greeter("220 a\r\n")), newFake(t, greeter("220 b\r\n"))
	p, err := NewPool(LeastConn, Member{Name: "a", Dialer: &Dialer{Addr: a.Addr()}}, Member{Name: "b", Dialer: &Dialer{Addr: b.Addr()}})
	require.NoError(t, err)
	ctx := context.Background()
	onA, err := p.Dial(ctx, ClientInfo{})
	require.NoError(t, err)
	require.Equal(t, "a", onA.Member)

	p.Drain("a", true)
	var conns []*Conn
	for range 3 {
		c, err := p.Dial(ctx, ClientInfo{})
		require.NoError(t, err)
		assert.Equal(t, "b", c.Member)
		conns = append(conns, c)
	}
	st, _ := p.Member("a")
	assert.Equal(t, 1, st.Active, "the draining member keeps its connection")
	assert.True(t, st.Draining)
	quit(t, onA) // and it still works
	require.NoError(t, onA.Close())
	require.NoError(t, onA.Close()) // a second Close must not count again
	st, _ = p.Member("a")
	assert.Equal(t, 0, st.Active)

	p.Drain("a", false)
	c, err := p.Dial(ctx, ClientInfo{})
	require.NoError(t, err)
	assert.Equal(t, "a", c.Member, "least-conn: a has 0, b has 3")
	for _, c := range append(conns, c) {
		require.NoError(t, c.Close())
	}
	for _, st := range p.Members() {
		assert.Equal(t, 0, st.Active, st.Name)
	}
}

func TestPoolDialDeadline(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	silent := newFake(t, func(f *fakeConn) { f.line() })
	live := newFake(t, greeter("220 live\r\n"))
	p, err := NewPool(RoundRobin,
		Member{Name: "silent", Dialer: &Dialer{Addr: silent.Addr()}}, // 15 s handshake timeout
		Member{Name: "live", Dialer: &Dialer{Addr: live.Addr()}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = p.Dial(ctx, ClientInfo{})
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the caller's deadline ends the attempt on a silent member")
	assert.False(t, errors.Is(err, ErrNoBackend))
}

func TestPoolConcurrent(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	a, b := newFake(t, greeter("220 a\r\n")), newFake(t, greeter("220 b\r\n"))
	p, err := NewPool(LeastConn,
		Member{Name: "a", Dialer: &Dialer{Addr: a.Addr()}},
		Member{Name: "b", Dialer: &Dialer{Addr: b.Addr()}},
		Member{Name: "dead", Dialer: &Dialer{Addr: deadAddr(t)}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			c, err := p.Dial(context.Background(), ClientInfo{})
			if !assert.NoError(t, err) {
				return
			}
			assert.NotEqual(t, "dead", c.Member)
			assert.NoError(t, c.Close())
		})
	}
	wg.Wait()
	var dials uint64
	for _, st := range p.Members() {
		assert.Equal(t, 0, st.Active, st.Name)
		dials += st.Dials - st.Failures
	}
	assert.Equal(t, uint64(20), dials)
}

func TestConnIsTCPAfterPlainDial(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	srv := newFake(t, greeter("220 x\r\n"))
	c, err := (&Dialer{Addr: srv.Addr()}).Dial(context.Background(), ClientInfo{})
	require.NoError(t, err)
	_, ok := c.Conn.(*net.TCPConn)
	assert.True(t, ok, "plain dial gives the *net.TCPConn, so splice can work")
	require.NoError(t, c.CloseWrite())
	require.NoError(t, c.Close())
}
