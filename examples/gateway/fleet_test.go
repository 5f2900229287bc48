package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/redistest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni/ticketkeys"
)

// redisServer is the test's private redis-server (internal/redistest).
type redisServer = redistest.Server

// startRedis starts one for the test, or skips (see redistest.Need).
func startRedis(t testing.TB) *redisServer { return redistest.Start(t) }

// replica is one gateway of a simulated fleet.
type replica struct {
	g     *gateway
	logs  *syncBuffer
	addrs map[string]string
}

// fleet is three gateways sharing one Redis, each on its own loopback
// address when those bind (Linux routes 127/8 to lo), else on 127.0.0.1.
type fleet struct {
	replicas []*replica
	roots    *x509.CertPool
}

// fleetHosts returns the three listening addresses.
func fleetHosts(t *testing.T) []string {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for _, h := range hosts {
		l, err := net.Listen("tcp", h+":0")
		if err != nil {
			t.Logf("cannot bind %s (%v): the fleet listens on 127.0.0.1", h, err)
			return []string{"127.0.0.1", "127.0.0.1", "127.0.0.1"}
		}
		l.Close()
	}
	return hosts
}

// fleetArgs starts one demo mail system and writes a certificate for
// mail.example.com, and returns the arguments of three replicas before
// them: on 127.0.0.2, .3 and .4 (or 127.0.0.1, see fleetHosts), a plain
// SMTP listener (smtp) and a plain IMAP listener (imap) with limit, an
// implicit TLS IMAP listener (imaps) without, each replica named gw-N.
// It returns the roots that verify the certificate too.
func fleetArgs(t *testing.T) ([][]string, *x509.CertPool) {
	t.Helper()
	sys, err := mailtest.New(mailtest.Options{Logger: discardLog()})
	require.NoError(t, err)
	be, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	ca, err := mailtest.GenerateCA("fleet test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	c, k, err := leaf.WriteFiles(t.TempDir(), "mail")
	require.NoError(t, err)
	var out [][]string
	for i, h := range fleetHosts(t) {
		out = append(out, []string{
			"-cert", c + "," + k + ",default",
			"-backend", "mx=" + be.MX + ",security=plain",
			"-backend", "imap=" + be.IMAP + ",security=plain",
			"-listen", "smtp=" + h + ":0,proto=smtp,tls=starttls,mode=allow,pool=mx,limit,inspect",
			"-listen", "imap=" + h + ":0,proto=imap,tls=starttls,mode=allow,pool=imap,limit",
			"-listen", "imaps=" + h + ":0,proto=imap,tls=implicit,pool=imap",
			"-replica", fmt.Sprintf("gw-%d", i),
			"-watch", "0",
			// Room for a loaded machine under the race detector: a slow
			// answer would count locally (fail-open), not fleet-wide.
			"-redis-timeout", "500ms",
		})
	}
	return out, ca.Pool()
}

// startFleet starts three replicas in-process with fleetArgs and args
// (-redis, -limits, ...).
func startFleet(t *testing.T, args ...string) *fleet {
	t.Helper()
	replicaArgs, roots := fleetArgs(t)
	f := &fleet{roots: roots}
	for _, all := range replicaArgs {
		all = append(all, "-metrics", "127.0.0.1:0")
		o, err := parseFlags(append(all, args...), io.Discard)
		require.NoError(t, err)
		r := &replica{logs: new(syncBuffer), addrs: make(map[string]string)}
		r.g, err = build(o, slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, r.g.start(ctx, make(chan os.Signal)))
		t.Cleanup(func() { cancel(); r.g.shutdown(5 * time.Second) })
		for j, l := range r.g.listeners {
			r.addrs[r.g.specs[j].Name] = l.Addr().String()
		}
		f.replicas = append(f.replicas, r)
	}
	return f
}

// greet connects to a plain listener and returns its first line (the
// greeting or the refusal), with the connection still open.
func greet(t *testing.T, addr string) (string, net.Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}} // one source for the whole fleet
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "no greeting from %s", addr)
	return strings.TrimRight(line, "\r\n"), c
}

// admitted tells a greeting from a refusal, in each protocol's words.
func admitted(t *testing.T, proto, line string) bool {
	t.Helper()
	switch {
	case proto == "smtp" && strings.HasPrefix(line, "220 "):
		return true
	case proto == "imap" && strings.HasPrefix(line, "* OK"):
		return true
	case proto == "smtp":
		assert.True(t, strings.HasPrefix(line, "421 4.7.0 "), "SMTP refusal: %q", line)
	case proto == "imap":
		assert.True(t, strings.HasPrefix(line, "* BYE "), "IMAP refusal: %q", line)
	}
	return false
}

// spread makes n connections round robin over the replicas, alternating
// SMTP and IMAP, closing each after its first line, and returns how many
// were admitted.
func (f *fleet) spread(t *testing.T, n int) int {
	t.Helper()
	ok := 0
	for i := range n {
		proto := []string{"smtp", "imap"}[(i/len(f.replicas))%2]
		line, c := greet(t, f.replicas[i%len(f.replicas)].addrs[proto])
		if admitted(t, proto, line) {
			ok++
		}
		c.Close()
	}
	return ok
}

// up waits until every replica's Store reaches Redis.
func (f *fleet) up(t *testing.T) {
	t.Helper()
	testnet.WaitFor(t, 15*time.Second, "every replica reaches Redis", func() bool {
		for _, r := range f.replicas {
			if !r.g.store.Stats().Up {
				return false
			}
		}
		return true
	})
}

// gather returns the value of a metric without labels.
func gather(t *testing.T, g *gateway, name string) float64 {
	t.Helper()
	mfs, err := g.metrics.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A client spreading connections round robin over three replicas is
// refused after connrate connections in total, not three times that.
func TestFleetConnectionRate(t *testing.T) {
	rs := startRedis(t)
	const n = 6
	f := startFleet(t, "-redis", rs.Addr, "-limits", fmt.Sprintf("connrate=%d,unit=60s", n))
	got := f.spread(t, 3*n)
	assert.Equal(t, n, got, "admitted across the fleet")
	t.Logf("connrate=%d: %d of %d connections admitted across 3 replicas", n, got, 3*n)
	for _, r := range f.replicas {
		st := r.g.store.Stats()
		assert.True(t, st.Up)
		assert.Zero(t, st.Fallbacks)
		assert.Equal(t, 1.0, gather(t, r.g, "mailedge_redis_up"))
	}
}

// mailFrom opens an SMTP session on addr, says EHLO and MAIL FROM, and
// reports whether MAIL was accepted (else it must be refused with 450
// 4.7.1, the message rate's refusal), then QUITs.
func mailFrom(t *testing.T, addr string) bool {
	t.Helper()
	line, c := greet(t, addr)
	require.True(t, admitted(t, "smtp", line), line)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	reply := func(cmd string) string {
		_, err := io.WriteString(c, cmd+"\r\n")
		require.NoError(t, err)
		for {
			l, err := r.ReadString('\n')
			require.NoError(t, err, "after %s", cmd)
			if len(l) > 3 && l[3] == '-' {
				continue
			}
			return l
		}
	}
	require.True(t, strings.HasPrefix(reply("EHLO client.example"), "250 "))
	l := reply("MAIL FROM:<sender@example.org>")
	ok := strings.HasPrefix(l, "250")
	if !ok {
		assert.True(t, strings.HasPrefix(l, "450 4.7.1 "), "refusal: %q", l)
	}
	reply("QUIT")
	return ok
}

// A message rate holds across the fleet too: MAIL FROM on sessions spread
// over the replicas is answered 450 after msgrate in total.
func TestFleetMessageRate(t *testing.T) {
	rs := startRedis(t)
	const n = 4
	f := startFleet(t, "-redis", rs.Addr, "-limits", fmt.Sprintf("msgrate=%d,unit=60s", n))
	accepted := 0
	for i := range 3 * n {
		if mailFrom(t, f.replicas[i%3].addrs["smtp"]) {
			accepted++
		}
	}
	t.Logf("msgrate=%d: %d of %d MAIL FROM accepted across 3 replicas", n, accepted, 3*n)
	assert.Equal(t, n, accepted)
}

// A replica that stops deletes its lease after its sessions drained; the
// others keep theirs.
func TestFleetLeaseReleasedAtShutdown(t *testing.T) {
	rs := startRedis(t)
	f := startFleet(t, "-redis", rs.Addr, "-limits", "inflight=10")
	c := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer c.Close()
	ctx := context.Background()
	for i := range 3 {
		n, err := c.Exists(ctx, fmt.Sprintf("mailedge:rl:replica:gw-%d", i)).Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "lease of gw-%d", i)
	}
	f.replicas[0].g.shutdown(5 * time.Second)
	n, err := c.Exists(ctx, "mailedge:rl:replica:gw-0", "mailedge:rl:replica:gw-1", "mailedge:rl:replica:gw-2").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "gw-0's lease deleted, the others kept")
}

// In flight across the fleet: n connections held over the replicas, the
// n+1th is refused on any of them; closing them frees the slots.
func TestFleetInFlight(t *testing.T) {
	rs := startRedis(t)
	const n = 4
	f := startFleet(t, "-redis", rs.Addr, "-limits", fmt.Sprintf("inflight=%d", n))
	var held []net.Conn
	for i := range n {
		line, c := greet(t, f.replicas[i%3].addrs["smtp"])
		require.True(t, admitted(t, "smtp", line), "connection %d: %q", i, line)
		held = append(held, c)
	}
	for i, r := range f.replicas {
		for _, proto := range []string{"smtp", "imap"} {
			line, c := greet(t, r.addrs[proto])
			assert.False(t, admitted(t, proto, line), "replica %d %s over the in-flight limit: %q", i, proto, line)
			c.Close()
		}
	}
	for _, c := range held {
		c.Close()
	}
	// The slots are freed as each replica's session ends.
	for i, r := range f.replicas {
		testnet.WaitFor(t, 10*time.Second, fmt.Sprintf("replica %d admits again", i), func() bool {
			line, c := greet(t, r.addrs["smtp"])
			defer c.Close()
			return strings.HasPrefix(line, "220 ")
		})
	}
}

// resumeShare connects to a different replica each time with one session
// cache and returns how many of the handshakes after the first resumed.
func (f *fleet) resumeShare(t *testing.T, n int) (resumed int) {
	t.Helper()
	cfg := &tls.Config{RootCAs: f.roots, ServerName: "mail.example.com", MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	f.resume(t, cfg, 0, 1) // the full handshake
	return f.resume(t, cfg, 1, n-1)
}

// resume makes n handshakes with cfg, numbered from, the ith on replica
// i%3 (so each on another replica than the one before), and returns how
// many resumed.
func (f *fleet) resume(t *testing.T, cfg *tls.Config, from, n int) (resumed int) {
	t.Helper()
	var addrs []string
	for _, r := range f.replicas {
		addrs = append(addrs, r.addrs["imaps"])
	}
	return resumeOver(t, cfg, addrs, from, n)
}

// resumeOver makes n implicit-TLS IMAP handshakes with cfg, numbered from,
// the ith on addrs[i%len(addrs)], and returns how many resumed.
func resumeOver(t *testing.T, cfg *tls.Config, addrs []string, from, n int) (resumed int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addrs[i%len(addrs)], cfg)
		require.NoError(t, err)
		// Reading the greeting processes the TLS 1.3 tickets sent before it.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(line, "* OK"), line)
		if c.ConnectionState().DidResume {
			resumed++
		}
		c.Close()
	}
	return resumed
}

// A client reconnecting to a different replica each time resumes its TLS
// session with the fleet's shared ticket keys, from Redis or from a file.
func TestFleetResumption(t *testing.T) {
	const n = 40
	check := func(t *testing.T, f *fleet) {
		fp := ""
		for i, r := range f.replicas {
			st := r.g.rotator.Status()
			require.NoError(t, st.Err)
			require.NotEmpty(t, st.Fingerprint)
			if i == 0 {
				fp = st.Fingerprint
			}
			assert.Equal(t, fp, st.Fingerprint, "replica %d's encrypting key", i)
			assert.Equal(t, float64(st.Keys), gather(t, r.g, "mailedge_ticket_keys"))
			assert.Contains(t, r.logs.String(), "encrypting="+st.Fingerprint)
		}
		resumed := f.resumeShare(t, n)
		t.Logf("resumed %d of %d handshakes after the first (%.0f%%)", resumed, n-1, 100*float64(resumed)/float64(n-1))
		assert.GreaterOrEqual(t, float64(resumed), 0.95*float64(n-1))
	}
	t.Run("redis", func(t *testing.T) {
		rs := startRedis(t)
		check(t, startFleet(t, "-redis", rs.Addr, "-ticket-keys", "redis"))
	})
	t.Run("redis across a rotation", func(t *testing.T) {
		rs := startRedis(t)
		f := startFleet(t, "-redis", rs.Addr, "-ticket-keys", "redis", "-ticket-rotate", "2s")
		cfg := &tls.Config{RootCAs: f.roots, ServerName: "mail.example.com", MinVersion: tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(8)}
		f.resume(t, cfg, 0, 1)
		const m = 20
		before := f.resume(t, cfg, 1, m)
		fp0 := f.replicas[0].g.rotator.Status().Fingerprint
		refreshAll := func() {
			for _, r := range f.replicas {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				require.NoError(t, r.g.rotator.Refresh(ctx))
				cancel()
			}
		}
		// Polls until one of them rotates (Rotate 2s): the new key is
		// pushed, and only decrypts for its Lead (a quarter of Rotate).
		testnet.WaitFor(t, 15*time.Second, "a rotation", func() bool {
			refreshAll()
			return f.replicas[0].g.rotator.Status().Keys >= 2
		})
		refreshAll()
		during := f.resume(t, cfg, 1+m, m)
		// Once the Lead is over, every replica encrypts with the new key.
		testnet.WaitFor(t, 15*time.Second, "the new key encrypting everywhere", func() bool {
			refreshAll()
			for _, r := range f.replicas {
				if st := r.g.rotator.Status(); st.Fingerprint == fp0 || st.Keys < 2 {
					return false
				}
			}
			return true
		})
		after := f.resume(t, cfg, 1+2*m, m)
		t.Logf("resumed %d/%d before, %d/%d right after the rotation, %d/%d with the new key encrypting", before, m, during, m, after, m)
		for _, got := range []int{before, during, after} {
			assert.GreaterOrEqual(t, float64(got), 0.95*m)
		}
		fp1 := f.replicas[0].g.rotator.Status().Fingerprint
		for _, r := range f.replicas {
			assert.Contains(t, r.logs.String(), "encrypting="+fp1)
			assert.Equal(t, float64(r.g.rotator.Status().Keys), gather(t, r.g, "mailedge_ticket_keys"))
		}
	})
	t.Run("file", func(t *testing.T) {
		var a, b [32]byte
		_, _ = rand.Read(a[:])
		_, _ = rand.Read(b[:])
		path := filepath.Join(t.TempDir(), "ticket-keys")
		require.NoError(t, os.WriteFile(path, ticketkeys.Format([][32]byte{a, b}), 0o600))
		f := startFleet(t, "-ticket-keys", path)
		check(t, f)
		assert.NotContains(t, f.replicas[0].logs.String(), strings.TrimSpace(string(ticketkeys.Format([][32]byte{a}))))
	})
	t.Run("without", func(t *testing.T) {
		// The control: each replica's own keys resume nothing elsewhere.
		f := startFleet(t)
		assert.Zero(t, f.resumeShare(t, 9))
	})
}

// Redis stopped mid-run: fail-open sessions keep flowing; fail-closed new
// connections are refused at once with a temporary error; Redis restarted
// on the same port: shared counting resumes.
func TestFleetRedisDown(t *testing.T) {
	const n = 6
	t.Run("fail open", func(t *testing.T) {
		rs := startRedis(t)
		f := startFleet(t, "-redis", rs.Addr, "-limits", fmt.Sprintf("connrate=%d,unit=60s", n))
		f.up(t)
		rs.Kill()
		// Each replica counts on its own: n connections (two per replica)
		// are all admitted, and a whole SMTP dialogue runs.
		assert.Equal(t, n, f.spread(t, n))
		line, c := greet(t, f.replicas[0].addrs["smtp"])
		require.True(t, admitted(t, "smtp", line), line)
		converse(t, c, step{send: "EHLO client.example", skip: "250-", want: "250 "}, step{send: "QUIT", want: "221"})
		for i, r := range f.replicas {
			st := r.g.store.Stats()
			assert.False(t, st.Up, "replica %d", i)
			assert.NotZero(t, st.Fallbacks, "replica %d", i)
			assert.Equal(t, 0.0, gather(t, r.g, "mailedge_redis_up"))
			assert.Equal(t, 1.0, gather(t, r.g, "mailedge_redis_outages_total"))
			assert.NotZero(t, gather(t, r.g, "mailedge_redis_fallbacks_total"))
			assert.Equal(t, 1, strings.Count(r.logs.String(), `level=WARN msg="redis unavailable`), "one warning per outage")
		}
		rs.Start()
		f.up(t)
		// A fresh Redis: n in total across the fleet again.
		assert.Equal(t, n, f.spread(t, 3*n))
		for _, r := range f.replicas {
			assert.Equal(t, 1, strings.Count(r.logs.String(), `msg="redis answers again`), "one line per recovery")
		}
	})
	t.Run("fail closed", func(t *testing.T) {
		rs := startRedis(t)
		f := startFleet(t, "-redis", rs.Addr, "-redis-fail", "connections=closed",
			"-limits", fmt.Sprintf("connrate=%d,unit=60s", n))
		f.up(t)
		rs.Stop() // SIGSTOP: a Redis that does not answer at all
		for i, r := range f.replicas {
			for _, proto := range []string{"smtp", "imap"} {
				start := time.Now()
				line, c := greet(t, r.addrs[proto])
				c.Close()
				took := time.Since(start)
				assert.Less(t, took, 2*time.Second, "a refusal, not a hang")
				if proto == "smtp" {
					assert.True(t, strings.HasPrefix(line, "421 4.3.0 "), "replica %d: %q", i, line)
				} else {
					assert.True(t, strings.HasPrefix(line, "* BYE [UNAVAILABLE]"), "replica %d: %q", i, line)
				}
				t.Logf("replica %d %s refused after %v: %s", i, proto, took.Round(time.Millisecond), line)
			}
			assert.NotZero(t, r.g.store.Stats().Unavailable)
			assert.NotZero(t, gather(t, r.g, "mailedge_redis_unavailable_total"))
		}
		rs.Kill()
		rs.Start()
		f.up(t)
		assert.Equal(t, n, f.spread(t, 3*n))
	})
}

// Readiness does not depend on Redis: a replica whose Redis is gone stays
// ready (docs/scale-out.md).
func TestFleetReadyWithoutRedis(t *testing.T) {
	rs := startRedis(t)
	f := startFleet(t, "-redis", rs.Addr, "-limits", "connrate=100", "-ticket-keys", "redis")
	rs.Kill()
	for _, r := range f.replicas {
		line, c := greet(t, r.addrs["smtp"])
		c.Close()
		assert.True(t, strings.HasPrefix(line, "220 "), line)
		assert.Empty(t, r.g.readiness())
	}
}

func TestRedisFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-ticket-keys", "redis"}, "-ticket-keys redis needs -redis"},
		{[]string{"-redis-fail", "connections=closed"}, "need -redis"},
		{[]string{"-redis", "127.0.0.1:1", "-redis-fail", "conns=closed"}, `unknown class "conns"`},
		{[]string{"-redis", "127.0.0.1:1", "-redis-fail", "logins=shut"}, `want open or closed`},
		{[]string{"-redis", "redis://[bad"}, "-redis:"},
		{[]string{"-redis", "127.0.0.1:1", "-redis-password-file", "/nonexistent/pw"}, "-redis-password-file"},
	} {
		o, err := parseFlags(append([]string{"-cert", testCertFlag(t, t.TempDir()), "-listen", "s=127.0.0.1:0,proto=smtp,tls=starttls,pool=p", "-backend", "p=127.0.0.1:1"}, tc.args...), io.Discard)
		require.NoError(t, err)
		_, err = build(o, discardLog())
		if assert.Error(t, err, "%v", tc.args) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
	conns, msgs, logins, err := parseRedisFail("connections=open, messages=closed,logins=closed")
	require.NoError(t, err)
	assert.Equal(t, "fail-open fail-closed fail-closed", conns.String()+" "+msgs.String()+" "+logins.String())

	// A URL brings its password and database; the file's password wins.
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	c, err := redisClient(&options{redis: "rediss://:inurl@redis.example:6380/2", redisPasswordFile: pw})
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "redis.example:6380", c.Options().Addr)
	assert.Equal(t, 2, c.Options().DB)
	assert.Equal(t, "s3cret", c.Options().Password)
	assert.NotNil(t, c.Options().TLSConfig)
	assert.True(t, c.Options().ContextTimeoutEnabled)
}
