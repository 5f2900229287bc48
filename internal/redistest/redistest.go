// Package redistest runs a private redis-server (the Debian package) for
// tests: on a free loopback port, without persistence, killed when the
// test ends, and able to be killed, stopped (SIGSTOP) and started again on
// the same port, as the fleet tests of ratelimit/redisstore and the
// gateway need. One copy of the rule for when such tests skip.
package redistest

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/redis/go-redis/v9"
)

// Server is a private redis-server on a free loopback port, with no
// persistence, killed when the test ends. It can be killed, stopped
// (SIGSTOP: a Redis that does not answer) and started again on the same
// port.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
	out *bytes.Buffer
}

// Need returns the path of redis-server. It skips the test without redis-server, unless
// MAILEDGE_INTEGRATION=require makes that a failure (CI sets it; .ci/run
// installs the Debian package). MAILEDGE_INTEGRATION=off and -short skip
// it, as the integration suite does.
func Need(t testing.TB) string {
	t.Helper()
	return testnet.NeedProgram(t, "redis-server", "Debian: apt-get install redis-server")
}

// Start starts a redis-server for the test on a free loopback port and
// returns it answering PING; it is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Need(t)
	ports, err := testnet.FreePorts("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	r := &Server{t: t, bin: bin, dir: t.TempDir(), port: port, Addr: "127.0.0.1:" + strconv.Itoa(port)}
	t.Cleanup(r.Kill)
	r.Start()
	return r
}

// Start starts the server (again) on its port and waits until it answers
// PING.
func (r *Server) Start() {
	r.t.Helper()
	r.mu.Lock()
	r.out = new(bytes.Buffer)
	r.cmd = exec.Command(r.bin,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", r.dir, "--loglevel", "warning")
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	err := r.cmd.Start()
	cmd, out := r.cmd, r.out
	r.mu.Unlock()
	if err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			r.t.Fatalf("redis-server on %s does not answer: %v\n%s", r.Addr, err, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill kills the server with SIGKILL and waits for it.
func (r *Server) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	continueProcess(r.cmd.Process) // if stopped
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Client returns a client for the server, as the package wants it (its
// context bounds every call), closed when the test ends.
func (r *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}
