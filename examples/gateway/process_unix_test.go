//go:build unix

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gatewayMainEnv makes the test binary the gateway: a fleet test starts
// real gateway processes by running itself with this variable set and the
// gateway's arguments, without building the command first.
const gatewayMainEnv = "MAILEDGE_TEST_GATEWAY_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(gatewayMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// process is one gateway running as a process of its own.
type process struct {
	name    string
	cmd     *exec.Cmd
	addrs   map[string]string // listener name → address, from its "listening on" line
	metrics string            // its -metrics address
	stderr  *syncBuffer       // its log
	read    chan struct{}     // closed when its standard output is read to the end
}

// startProcess starts the gateway with args and a -metrics address of its
// own, and waits until it prints its listening addresses. The process is
// stopped with SIGTERM at the end of the test, or killed if it does not
// exit within ten seconds.
func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	p := &process{name: name, addrs: make(map[string]string), metrics: testnet.FreeAddr(t),
		stderr: new(syncBuffer), read: make(chan struct{})}
	p.cmd = exec.Command(exe, append(args, "-metrics", p.metrics)...)
	p.cmd.Env = append(os.Environ(), gatewayMainEnv+"=1")
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	listening := make(chan string, 1)
	go func() {
		defer close(p.read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "gateway: listening on "); ok {
				listening <- rest
			}
		}
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case line := <-listening:
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			p.addrs[k] = v
		}
	case <-p.read:
		t.Fatalf("%s exited before listening: %s", name, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not listening within 30s: %s", name, p.stderr.String())
	}
	return p
}

// stop ends the process with SIGTERM (a no-op if it is gone) and reaps it.
func (p *process) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.read:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit within 10s of SIGTERM: killed", p.name)
		_ = p.cmd.Process.Kill()
		<-p.read
	}
	_ = p.cmd.Wait()
}

// kill ends the process with SIGKILL, as a crash or a lost node would:
// nothing runs in it after this, so its lease is not deleted.
func (p *process) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.read
	err := p.cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
}

// get returns the status and body of an HTTP GET on the process's -metrics
// address.
func (p *process) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// processFleet starts three gateway processes on 127.0.0.2, .3 and .4
// (127.0.0.1 where those do not bind), in front of one demo mail system,
// each with the listeners of startFleet and args, and waits until each is
// ready and reaches Redis.
func processFleet(t *testing.T, args ...string) (procs []*process, client *tls.Config) {
	t.Helper()
	replicaArgs, roots := fleetArgs(t)
	for i, all := range replicaArgs {
		all = append(all, "-grace", "2s", "-log-level", "debug")
		procs = append(procs, startProcess(t, fmt.Sprintf("gw-%d", i), append(all, args...)...))
	}
	for _, p := range procs {
		testnet.WaitFor(t, 15*time.Second, p.name+" ready and reaching Redis", func() bool {
			code, _ := p.get(t, "/readyz")
			_, m := p.get(t, "/metrics")
			return code == http.StatusOK && strings.Contains(m, "\nmailedge_redis_up 1\n")
		})
	}
	return procs, &tls.Config{RootCAs: roots, ServerName: "mail.example.com", MinVersion: tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

// Three gateway processes sharing one redis-server: the message rate,
// the connection rate and TLS resumption hold across them as across the
// in-process fleet.
func TestFleetProcesses(t *testing.T) {
	rs := startRedis(t)
	const conns, msgs = 12, 4
	procs, cfg := processFleet(t, "-redis", rs.Addr, "-ticket-keys", "redis",
		"-limits", fmt.Sprintf("connrate=%d,msgrate=%d,unit=60s", conns, msgs))

	// 9 SMTP sessions round robin: msgs MAIL FROM accepted in total. They
	// are 9 of the conns connections the source may open in the window.
	const sessions = 9
	accepted := 0
	for i := range sessions {
		if mailFrom(t, procs[i%3].addrs["smtp"]) {
			accepted++
		}
	}
	assert.Equal(t, msgs, accepted, "MAIL FROM accepted across 3 processes")

	// Then connections round robin: only the rest of conns are admitted.
	admittedN := 0
	for i := range 9 {
		proto := []string{"smtp", "imap"}[i%2]
		line, c := greet(t, procs[i%3].addrs[proto])
		if admitted(t, proto, line) {
			admittedN++
		}
		c.Close()
	}
	assert.Equal(t, conns-sessions, admittedN, "connections admitted after the SMTP sessions")
	t.Logf("msgrate=%d: %d of %d MAIL FROM accepted; connrate=%d: %d+%d of %d connections admitted, over 3 processes",
		msgs, accepted, sessions, conns, sessions, admittedN, sessions+9)

	// Resumption on another process each time (the imaps listeners have
	// no limit).
	const n = 30
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.addrs["imaps"])
	}
	resumeOver(t, cfg, addrs, 0, 1)
	resumed := resumeOver(t, cfg, addrs, 1, n)
	t.Logf("resumed %d of %d handshakes, each on another process than the one before", resumed, n)
	assert.GreaterOrEqual(t, float64(resumed), 0.95*n)

	for _, p := range procs {
		_, m := p.get(t, "/metrics")
		assert.Contains(t, m, "\nmailedge_redis_up 1\n", p.name)
		assert.NotContains(t, p.stderr.String(), "level=ERROR", p.name)
	}
}

// A replica killed with SIGKILL cannot delete its lease: the connections
// it held in flight count across the fleet until the lease expires
// (-redis-lease), and not a moment after.
func TestFleetProcessKilled(t *testing.T) {
	rs := startRedis(t)
	const inflight = 4
	procs, _ := processFleet(t, "-redis", rs.Addr, "-redis-lease", "3s", "-limits", fmt.Sprintf("inflight=%d", inflight))
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rc.Close()
	ctx := context.Background()

	// Connections 0 and 3 on gw-0, 1 on gw-1, 2 on gw-2 (held open until
	// the end of the test): the source is at its limit on every replica.
	for i := range inflight {
		line, _ := greet(t, procs[i%3].addrs["smtp"])
		require.True(t, admitted(t, "smtp", line), "connection %d: %q", i, line)
	}
	for _, p := range procs {
		line, c := greet(t, p.addrs["imap"])
		c.Close()
		assert.False(t, admitted(t, "imap", line), "%s over the limit: %q", p.name, line)
	}

	procs[0].kill(t)
	lease := "mailedge:rl:replica:gw-0"
	// While gw-0's lease lives, its two connections still count: a refusal
	// decided while the lease existed (it still exists after the answer).
	early := 0
	line, c := greet(t, procs[1].addrs["smtp"])
	if n, err := rc.Exists(ctx, lease).Result(); err == nil && n == 1 {
		assert.False(t, admitted(t, "smtp", line), "admitted while the dead replica's lease lives: %q", line)
		c.Close()
	} else if admitted(t, "smtp", line) {
		t.Logf("the lease expired before the check (a slow machine): %v %v", n, err)
		early = 1 // held open: it counts
	}

	// The lease expires within its TTL, with nothing written by gw-0.
	testnet.WaitFor(t, 10*time.Second, "gw-0's lease expired", func() bool {
		n, err := rc.Exists(ctx, lease).Result()
		return err == nil && n == 0
	})
	// gw-0's two slots are free; the two connections held on gw-1 and
	// gw-2 still count: two more are admitted (held open), the third is
	// refused.
	got := early
	for i := range 3 - early {
		line, c := greet(t, procs[1+i%2].addrs["smtp"])
		if admitted(t, "smtp", line) {
			got++
		} else {
			c.Close()
		}
	}
	assert.Equal(t, 2, got, "admitted after the dead replica's lease expired")
	// The survivors' leases are alive and renewed, not a leftover.
	for _, p := range procs[1:] {
		n, err := rc.Exists(ctx, "mailedge:rl:replica:"+p.name).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, p.name)
		assert.Contains(t, p.stderr.String(), "msg=session")
	}
}
