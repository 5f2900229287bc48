// Package leaktest checks that a test leaves no goroutine behind.
//
// Check snapshots the goroutines alive when it is called and, when the test
// ends, waits a bounded time for every goroutine started since to exit; any
// that remain fail the test with their stacks. Tests that call Check must not
// run in parallel with tests that start goroutines of their own.
package leaktest

import (
	"bytes"
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
