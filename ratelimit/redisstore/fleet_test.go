package redisstore

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var src = netip.MustParsePrefix("192.0.2.1/32")

// rec records ev for src at time.Now() with a one-hour unit.
func rec(t testing.TB, s ratelimit.Store, ev ratelimit.Event) ratelimit.Counts {
	t.Helper()
	c, err := s.Record(ctx, ratelimit.Request{Key: src, Event: ev, Now: time.Now(), Unit: time.Hour})
	require.NoError(t, err)
	return c
}

// inFlight asks s for src's fleet-wide in-flight count, with an event that
// changes none.
func inFlight(t testing.TB, s ratelimit.Store) int {
	return rec(t, s, ratelimit.Refused).InFlight
}

func TestTwoReplicas(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	a := newStore(t, client, Options{Prefix: "fleet:", Replica: "a"})
	b := newStore(t, client, Options{Prefix: "fleet:", Replica: "b"})

	for i := range 3 {
		c := rec(t, a, ratelimit.Connect)
		assert.Equal(t, i+1, c.InFlight)
		assert.Equal(t, i+1, c.ConnRate)
	}
	c := rec(t, b, ratelimit.Connect)
	assert.Equal(t, 4, c.InFlight, "b sees a's connections")
	assert.Equal(t, 4, c.ConnRate, "one connection rate for the fleet")
	c = rec(t, b, ratelimit.Message)
	assert.Equal(t, 4, c.InFlight)
	assert.Equal(t, 1, c.MessageRate)
	assert.Equal(t, 2, rec(t, a, ratelimit.Message).MessageRate)

	assert.Equal(t, 3, rec(t, a, ratelimit.Disconnect).InFlight, "a releases one: 3 left in the fleet")
	assert.Equal(t, 3, inFlight(t, b))
	assert.Equal(t, 2, rec(t, b, ratelimit.ConnectRefused).InFlight, "b's own refused connect undone")

	// A failed login counts for the fleet, and so does a user's.
	r := ratelimit.Request{Key: src, Event: ratelimit.LoginFailed, Now: time.Now(), Unit: time.Hour, Window: time.Hour}
	_, err := a.Record(ctx, r)
	require.NoError(t, err)
	r.Key, r.User = netip.Prefix{}, "alice"
	_, err = b.Record(ctx, r)
	require.NoError(t, err)
	_, err = a.Record(ctx, r)
	require.NoError(t, err)
	c = rec(t, b, ratelimit.Login)
	assert.Equal(t, 1, c.LoginFailures)
	assert.Equal(t, 1, c.AuthRate)
	c, err = b.Record(ctx, ratelimit.Request{User: "alice", Event: ratelimit.Login, Now: time.Now(), Unit: time.Hour})
	require.NoError(t, err)
	assert.Equal(t, ratelimit.Counts{LoginFailures: 2}, c)

	// Closing a releases its lease: its connections stop counting at once.
	require.NoError(t, a.Close())
	assert.Equal(t, 0, inFlight(t, b))
	assert.Equal(t, 1, a.Stats().Sources, "a still holds its 2 connections of src")
	assert.Equal(t, 0, b.Stats().Sources)
}

// TestLimiterAcrossReplicas: two Limiters, one per replica, hold the
// fleet's in-flight and rate limits together.
func TestLimiterAcrossReplicas(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	limits := ratelimit.Limits{InFlight: 3, ConnRate: 5, MessageRate: 2}
	la := &ratelimit.Limiter{Limits: limits, Store: newStore(t, client, Options{Prefix: "lim:"})}
	lb := &ratelimit.Limiter{Limits: limits, Store: newStore(t, client, Options{Prefix: "lim:"})}
	addr := netip.MustParseAddr("192.0.2.7")
	var leases []ratelimit.Lease
	for i, l := range []*ratelimit.Limiter{la, lb, la} {
		ls, err := l.AdmitAt(ctx, addr, t0)
		require.NoError(t, err, "connection %d", i)
		leases = append(leases, ls)
	}
	_, err := lb.AdmitAt(ctx, addr, t0)
	var le *ratelimit.LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, ratelimit.InFlight, le.Kind)
	assert.Equal(t, 4, le.Count)

	leases[1].ReleaseAt(t0) // b's
	ls, err := la.AdmitAt(ctx, addr, t0)
	require.NoError(t, err, "a release on b makes room on a")
	leases = append(leases, ls)
	leases[0].ReleaseAt(t0)
	_, err = lb.AdmitAt(ctx, addr, t0)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, ratelimit.ConnRate, le.Kind, "the 6th attempt in the fleet's window")

	require.NoError(t, la.AllowMessageAt(ctx, addr, t0))
	require.NoError(t, lb.AllowMessageAt(ctx, addr, t0))
	err = la.AllowMessageAt(ctx, addr, t0)
	require.ErrorAs(t, err, &le)
	assert.Equal(t, ratelimit.MessageRate, le.Kind)
	for _, ls := range leases {
		ls.ReleaseAt(t0)
	}
	assert.Equal(t, 0, la.Store.(*Store).Stats().Sources+lb.Store.(*Store).Stats().Sources)
}

// TestLeaseExpires: a replica whose heartbeat stops (it hangs, or its
// host is cut off) loses its connections' counts after LeaseTTL.
func TestLeaseExpires(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	a := newStore(t, client, Options{Prefix: "ttl:", LeaseTTL: time.Second})
	b := newStore(t, client, Options{Prefix: "ttl:", LeaseTTL: time.Second})
	rec(t, a, ratelimit.Connect)
	rec(t, a, ratelimit.Connect)
	assert.Equal(t, 3, rec(t, b, ratelimit.Connect).InFlight)

	abandon(a)
	start := time.Now()
	testnet.WaitFor(t, 5*time.Second, "a's connections stop counting", func() bool { return inFlight(t, b) == 1 })
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "not before the lease could expire")
	// The dead replica's field is gone from the hash.
	n, err := client.HLen(ctx, "ttl:s:192.0.2.1/32").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(7), n, "s, l, c, m, r, a and b's own field")
}

// abandon stops s's heartbeat, as a hung process would, without releasing
// its lease; Close does nothing afterwards.
func abandon(s *Store) {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		s.wg.Wait()
	})
}

// TestKilledReplica: a gateway process killed with SIGKILL leaves no
// in-flight count behind after its LeaseTTL. The replica is this test
// binary again, run as TestReplicaProcess.
func TestKilledReplica(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	b := newStore(t, client, Options{Prefix: "kill:"})
	rec(t, b, ratelimit.Connect)

	cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "REDISSTORE_REPLICA_ADDR="+srv.Addr)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	ready := false
	for lines.Scan() {
		if lines.Text() == "replica ready" {
			ready = true
			break
		}
	}
	require.True(t, ready, "the replica process did not start")
	go func() { // drain
		for lines.Scan() {
		}
	}()
	assert.Equal(t, 6, inFlight(t, b), "1 here and 5 in the other process")

	require.NoError(t, cmd.Process.Kill())
	killed := time.Now()
	testnet.WaitFor(t, 10*time.Second, "the killed replica's connections stop counting", func() bool { return inFlight(t, b) == 1 })
	t.Logf("counts gone %v after SIGKILL (LeaseTTL 1s)", time.Since(killed).Round(10*time.Millisecond))
}

// TestReplicaProcess is the replica TestKilledReplica kills: it opens 5
// connections for src and waits to die.
func TestReplicaProcess(t *testing.T) {
	addr := os.Getenv("REDISSTORE_REPLICA_ADDR")
	if addr == "" {
		t.Skip("run by TestKilledReplica")
	}
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	s, err := New(ctx, client, Options{Prefix: "kill:", LeaseTTL: time.Second})
	require.NoError(t, err)
	for range 5 {
		rec(t, s, ratelimit.Connect)
	}
	fmt.Println("replica ready")
	select {}
}

// TestConcurrent hammers two replicas from many goroutines (run it with
// -race): every connection is released, so both end with nothing in
// flight, and the shared rates count every event exactly once.
func TestConcurrent(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client(t)
	stores := []*Store{newStore(t, client, Options{Prefix: "conc:"}), newStore(t, client, Options{Prefix: "conc:"})}
	keys := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32"),
		netip.MustParsePrefix("2001:db8::/64"), {},
	}
	const workers, rounds = 8, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for i := range rounds {
				r := ratelimit.Request{Key: keys[(w+i)%len(keys)], Now: time.Now(), Unit: time.Hour}
				r.Event = ratelimit.Connect
				c, err := s.Record(ctx, r)
				if !assert.NoError(t, err) {
					return
				}
				assert.GreaterOrEqual(t, c.InFlight, 1)
				r.Event = ratelimit.Message
				_, err = s.Record(ctx, r)
				assert.NoError(t, err)
				r.Event = ratelimit.Disconnect
				if i%5 == 0 {
					r.Event = ratelimit.ConnectRefused
				}
				_, err = s.Record(ctx, r)
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	for _, k := range keys {
		for _, s := range stores {
			c, err := s.Record(ctx, ratelimit.Request{Key: k, Event: ratelimit.Refused, Now: time.Now(), Unit: time.Hour})
			require.NoError(t, err)
			assert.Equal(t, 0, c.InFlight, "%v", k)
			assert.Equal(t, workers*rounds/len(keys), c.ConnRate, "%v", k)
			assert.Equal(t, workers*rounds/len(keys), c.MessageRate, "%v", k)
		}
	}
	for _, s := range stores {
		st := s.Stats()
		assert.Zero(t, st.Sources)
		assert.Zero(t, st.Errors)
		assert.Zero(t, st.Renewals)
	}
}

// TestLongConnection: the hash of a source with a connection in flight
// outlives its TTL, because the heartbeat rewrites the count before half
// of it has passed.
func TestLongConnection(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	client := srv.Client(t)
	s := newStore(t, client, Options{Prefix: "long:", LeaseTTL: time.Second})
	const key = "long:s:192.0.2.1/32"
	_, err := s.Record(ctx, ratelimit.Request{Key: src, Event: ratelimit.Connect, Now: time.Now(), Unit: 100 * time.Millisecond})
	require.NoError(t, err)
	ttl, err := client.PTTL(ctx, key).Result()
	require.NoError(t, err)
	assert.InDelta(t, 4*time.Second, ttl, float64(time.Second), "four lease TTLs")
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		n, err := client.Exists(ctx, key).Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "the hash of a source with a connection in flight expired")
		time.Sleep(200 * time.Millisecond)
	}
	// Released, it is no longer refreshed: it expires four lease TTLs
	// after the release.
	_, err = s.Record(ctx, ratelimit.Request{Key: src, Event: ratelimit.Disconnect, Now: time.Now(), Unit: 100 * time.Millisecond})
	require.NoError(t, err)
	assert.Zero(t, s.Stats().Sources)
	ttl, err = client.PTTL(ctx, key).Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, ttl, 4*time.Second)
}

func TestNew(t *testing.T) {
	_, err := New(ctx, nil, Options{})
	assert.ErrorContains(t, err, "nil client")
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err = New(ctx, c, Options{})
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
	c2 := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer c2.Close()
	_, err = New(ctx, c2, Options{LeaseTTL: 100 * time.Millisecond})
	assert.ErrorContains(t, err, "under a second")
	_, err = New(ctx, c2, Options{LeaseTTL: time.Second, Timeout: time.Second})
	assert.ErrorContains(t, err, "Timeout")
	_, err = New(ctx, c2, Options{Messages: 7})
	assert.ErrorContains(t, err, "Policy(7)")
	assert.Equal(t, "fail-closed", FailClosed.String())
}

// TestClose: Close stops every goroutine the Store started and deletes its
// lease; Record still answers afterwards, by the Policies.
func TestClose(t *testing.T) {
	srv := startRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
	leaktest.Check(t)
	t.Cleanup(func() { client.Close() }) // before leaktest's check
	s, err := New(ctx, client, Options{Prefix: "close:", Replica: "r1", Connections: FailClosed})
	require.NoError(t, err)
	rec(t, s, ratelimit.Connect)
	n, err := client.Exists(ctx, "close:replica:r1").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "twice is fine")
	n, err = client.Exists(ctx, "close:replica:r1").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(0), n, "the lease is gone")

	assert.Equal(t, 1, rec(t, s, ratelimit.Message).MessageRate, "from the fallback")
	_, err = s.Record(ctx, ratelimit.Request{Key: src, Event: ratelimit.Connect, Now: time.Now(), Unit: time.Hour})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.True(t, strings.HasPrefix(err.Error(), "redisstore: "), err.Error())
}
