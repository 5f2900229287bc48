package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mailedge/mailedge"

	"github.com/mailedge/mailedge/monitor"
)

// start opens every listener (all or none), then starts the accept loops,
// health checkers, certificate watcher and metrics server.
func (g *gateway) start(ctx context.Context, hup <-chan os.Signal) error {
	if g.rotator != nil {
		// The fleet's keys before the first handshake; if the source does
		// not answer, serve anyway (sessions resume on this replica only)
		// and let Run catch up. OnError has logged it.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = g.rotator.Refresh(rctx)
		cancel()
	}
	for i, ls := range g.specs {
		l, err := listen("tcp", ls.Addr)
		if err != nil {
			for _, prev := range g.socks {
				prev.Close()
			}
			return fmt.Errorf("-listen %s: %w", ls.Name, err)
		}
		sock := newSwitchListener(l)
		s := g.services[i]
		s.accepting.Store(true)
		g.socks = append(g.socks, sock)
		g.listeners = append(g.listeners, g.viewOf(sock, ls, g.proxyFrom, s))
	}
	// Sessions do not end with ctx: SIGTERM stops accepting at once but
	// lets sessions run for the grace period (Proxy.Shutdown in shutdown).
	g.sessCtx = context.WithoutCancel(ctx)
	// Checkers and the certificate watcher stop with ctx or at shutdown.
	ctx, g.stopBackground = context.WithCancel(ctx)
	g.bgCtx = ctx
	g.serveAll()
	g.startCheckers()
	g.goBackground(func() { g.reloadLoop(ctx, hup) })
	g.startACME(ctx) // -acme-domains: renewals until shutdown
	if g.rotator != nil {
		g.goBackground(func() { _ = g.rotator.Run(ctx) })
	}
	if g.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", g.metrics.handler())
		mux.Handle("GET /healthz", probeHandler(g.liveness))
		mux.Handle("GET /readyz", probeHandler(g.readiness))
		g.registerAdmin(mux)
		if err := g.serveHTTP("-metrics", g.opts.metrics, mux); err != nil {
			return err
		}
	}
	if g.opts.pprof != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if err := g.serveHTTP("-pprof", g.opts.pprof, mux); err != nil {
			return err
		}
	}
	return nil
}

// serveHTTP serves h on addr until shutdown.
func (g *gateway) serveHTTP(flagName, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		g.shutdown(0)
		return fmt.Errorf("%s: %w", flagName, err)
	}
	g.httpSrvs = append(g.httpSrvs, srv)
	g.goBackground(func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("http server", "flag", flagName, "err", err)
		}
	})
	return nil
}

func (g *gateway) goBackground(f func()) {
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		f()
	}()
}

// reloadLoop reloads certificates, client CA bundles and the users file on
// SIGHUP and, if -watch is set, the certificates and CA bundles when their
// files change, until ctx ends.
func (g *gateway) reloadLoop(ctx context.Context, hup <-chan os.Signal) {
	var tick <-chan time.Time
	if g.opts.watch > 0 {
		t := time.NewTicker(g.opts.watch)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if g.args != nil {
				// The whole configuration, certificates, CA bundles and
				// users file included.
				if err := g.reload(); err != nil {
					g.log.Error("reload failed; the running configuration stays", "err", err)
				}
				continue
			}
			g.certMu.Lock()
			err := g.certs.Reload()
			g.certMu.Unlock()
			if err != nil {
				g.certs.OnError(err)
			} else {
				g.certs.OnReload()
			}
			g.reloadClientCAs(true)
			g.reloadUsers()
		case <-tick:
			g.certMu.Lock()
			changed, err := g.certs.ReloadIfChanged()
			g.certMu.Unlock()
			if err != nil {
				g.certs.OnError(err)
			} else if changed {
				g.certs.OnReload()
			}
			g.reloadClientCAs(false)
		}
	}
}

// serveAll runs the accept loop of every current service on its
// listener; each returns when its listener is closed or replaced by a
// reload, and after its sessions have ended.
func (g *gateway) serveAll() {
	g.mu.RLock()
	services, listeners := g.services, g.listeners
	g.mu.RUnlock()
	for i, s := range services {
		g.serving.Add(1)
		go func() {
			defer g.serving.Done()
			if err := s.proxy.Serve(g.sessCtx, listeners[i]); err != nil && !errors.Is(err, mailedge.ErrProxyClosed) {
				g.log.Error("accept loop ended", "listener", s.name, "err", err)
			}
			g.forget(s)
		}()
	}
}

// forget drops a service of an earlier generation whose Serve has
// returned: its view was closed by a reload and its last session has
// ended, so shutdown has nothing left to wait for, and what it held (its
// Proxy, poller, pools) can go. A current service stays.
func (g *gateway) forget(s *service) {
	g.mu.Lock()
	g.retired = slices.DeleteFunc(g.retired, func(r *service) bool { return r == s })
	g.mu.Unlock()
}

// startCheckers runs the current pools' health checkers, and stops those
// of the generation before.
func (g *gateway) startCheckers() {
	g.mu.Lock()
	if g.stopCheckers != nil {
		g.stopCheckers()
	}
	ctx, cancel := context.WithCancel(g.bgCtx)
	g.stopCheckers = cancel
	jobs, pools := g.checkers, g.pools
	g.mu.Unlock()
	for _, job := range jobs {
		pool, m := pools[job.pool], g.metrics
		job.c.OnChange = func(st monitor.Status) {
			pool.SetUp(st.Name, st.Up)
			m.health(job.pool, st.Name, st)
			lvl := "up"
			if !st.Up {
				lvl = "down"
			}
			g.log.Info("backend "+lvl, "pool", job.pool, "member", st.Name, "err", errString(st.Last.Err), "latency", st.Last.Latency)
		}
		g.goBackground(func() { job.c.Run(ctx) })
	}
}

// addrs lists the bound listener addresses.
func (g *gateway) addrs() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []string
	for i, l := range g.listeners {
		out = append(out, g.specs[i].Name+"="+l.Addr().String())
	}
	return out
}

// shutdown turns /readyz to 503, stops accepting, waits up to grace for
// sessions, then cuts them and waits for every goroutine; the -metrics
// server (with /healthz and /readyz) stops last.
func (g *gateway) shutdown(grace time.Duration) {
	g.draining.Store(true) // first: /readyz turns 503 while sessions drain
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var cut sync.WaitGroup
	g.mu.RLock()
	services := append(slices.Clone(g.services), g.retired...)
	socks := g.socks
	g.mu.RUnlock()
	for _, s := range socks {
		s.Close() // no new connection from here on: the views do not close the sockets
	}
	for _, s := range services {
		cut.Go(func() {
			if err := s.proxy.Shutdown(ctx); err != nil {
				g.log.Warn("grace period over; remaining sessions closed", "listener", s.name)
			}
		})
	}
	cut.Wait()
	g.serving.Wait()
	g.closeTracing() // every session has ended: its spans are complete
	if g.stopBackground != nil {
		g.stopBackground()
	}
	// Sessions are gone: release the lease so the fleet stops counting
	// this replica at once.
	g.closeShared()
	for _, srv := range g.httpSrvs {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	if g.logins != nil && g.logins.http != nil {
		g.logins.http.CloseIdleConnections()
	}
	g.bg.Wait()
	g.closeRedis() // after the Rotator's Run, which polls through it
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
