// Package leaktest checks that a test leaves no goroutine behind.
//
// Check snapshots the goroutines alive when it is called and, when the test
// ends, waits a bounded time for every goroutine started since to exit; any
// that remain fail the test with their stacks. Tests that call Check must not
// run in parallel with tests that start goroutines of their own.
package leaktest

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Check registers a cleanup on t that fails the test if goroutines started
// after this call are still running a few seconds after the test ends.
// Cleanups registered after Check (closing listeners, servers) run first.
func Check(t testing.TB) {
	t.Helper()
	before := ids(stacks())
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		var leaked []string
		for {
			leaked = leaked[:0]
			for _, g := range stacks() {
				if _, ok := before[goid(g)]; ok || ignorable(g) {
					continue
				}
				leaked = append(leaked, g)
			}
			if len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(leaked) > 0 {
			t.Errorf("leaktest: %d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		out = append(out, string(g))
	}
	return out
}

func ids(gs []string) map[int]struct{} {
	m := make(map[int]struct{}, len(gs))
	for _, g := range gs {
		m[goid(g)] = struct{}{}
	}
	return m
}

// goid parses "goroutine 123 [running]:".
func goid(g string) int {
	g = strings.TrimPrefix(g, "goroutine ")
	if i := strings.IndexByte(g, ' '); i > 0 {
		n, _ := strconv.Atoi(g[:i])
		return n
	}
	return -1
}

func ignorable(g string) bool {
	for _, s := range []string{
		"leaktest.stacks", // ourselves
		"testing.(*T).Run",
		"testing.tRunner",
		"testing.runTests",
		"testing.(*M).",
		"runtime.goexit0",
		"os/signal.signal_recv",
		"runtime.ensureSigM",
		"created by runtime.gc",
		"runtime.MHeap_Scavenger",
		"net/http.(*persistConn)", // keep-alive pools in httptest clients
	} {
		if strings.Contains(g, s) {
			return true
		}
	}
	return false
}

// CheckFDs registers a cleanup on t that fails the test if the process has
// more open file descriptors a few seconds after the test than when
// CheckFDs was called: a socket or file the code under test forgot to
// close. It reads /proc/self/fd and does nothing where that is missing.
// Call it after the test's own long-lived setup (listeners it closes in
// its cleanups count as open at the start).
func CheckFDs(t testing.TB) {
	t.Helper()
	before, ok := openFDs()
	if !ok {
		return
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			now, _ := openFDs()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leaktest: %d file descriptor(s) leaked (%d open before, %d after)", now-before, before, now)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// openFDs counts open descriptors other than pipes: the runtime caches the
// pipes splice(2) uses in a pool, so they outlive the copies that made them.
func openFDs() (int, bool) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	n := 0
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, "pipe:") {
			continue
		}
		n++
	}
	return n, true
}
