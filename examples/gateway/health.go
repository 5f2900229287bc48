package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// The probes served beside /metrics on the -metrics address, for a load
// balancer or Kubernetes:
//
//   - /healthz (liveness) answers 200 "ok" while every listener's accept
//     loop runs, and also while the gateway drains on SIGTERM (its loops
//     stopped on purpose; restarting it would cut the sessions it lets
//     finish). It answers 503 when an accept loop ended while the gateway
//     was not stopping: nothing restarts it in the process.
//   - /readyz (readiness) answers 200 "ok" when every configured listener
//     is open with its accept loop running and certificates are loaded;
//     otherwise 503 with one line per failing item. From the moment
//     shutdown begins it answers 503 "shutting down", so that a balancer
//     sends no new connection while the sessions drain.
//
// The bodies are plain text naming listeners and reasons only: no address,
// user, file name or error text.

// watchedListener clears its service's accepting flag when it is closed.
// Proxy.Serve closes its listener whenever its accept loop ends (at
// shutdown, or on an accept error it does not retry) and before it waits
// for the sessions it started, so the flag falls when accepting stops.
type watchedListener struct {
	net.Listener
	accepting *atomic.Bool
}

func (l watchedListener) Close() error {
	l.accepting.Store(false)
	return l.Listener.Close()
}

// stoppedListeners lists, one line each, the listeners that are not
// accepting.
func (g *gateway) stoppedListeners() []string {
	g.mu.RLock()
	services := g.services
	g.mu.RUnlock()
	var out []string
	for _, s := range services {
		if !s.accepting.Load() {
			out = append(out, "listener "+s.name+": not accepting")
		}
	}
	return out
}

// liveness returns why the gateway is not alive, or nothing.
func (g *gateway) liveness() []string {
	if g.draining.Load() {
		return nil // stopping on purpose: the sessions drain
	}
	return g.stoppedListeners()
}

// readiness returns why the gateway should not be sent new connections,
// or nothing.
func (g *gateway) readiness() []string {
	if g.draining.Load() {
		return []string{"shutting down"}
	}
	out := g.stoppedListeners()
	// Every listener takes its certificates from this one store, which
	// serves its first certificate as the default when none is marked,
	// so a loaded store means no listener lacks one. build refuses to
	// start without one and a failed reload keeps the previous set: this
	// guards the invariant rather than a state seen today.
	if g.certs == nil || g.certs.Len() == 0 {
		out = append(out, "certificates: none loaded")
	}
	return out
}

// probeHandler answers 200 "ok" when check finds nothing, else 503 with
// its lines.
func probeHandler(check func() []string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if fails := check(); len(fails) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, strings.Join(fails, "\n")+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	}
}
