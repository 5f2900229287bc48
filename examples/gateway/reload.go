package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// A full reload (SIGHUP) reads the command line and its -config file
// again, builds the whole configuration aside (listeners, pools and
// members, balance policy, probes, limits, ACLs, trusted and PROXY-source
// networks, certificate sources, logins, TLS policy), and only when all
// of it is valid applies it at once:
//
//   - a listener kept (same name and address) goes on accepting on the
//     same socket, new connections going to the new configuration;
//   - a listener added is opened (if one cannot be opened, nothing is
//     applied);
//   - a listener removed stops accepting; its sessions drain under -grace;
//   - sessions in flight are not touched: they keep the pools, limits
//     and backend they started with;
//   - health checkers restart for the new pools; rate counters and
//     in-flight counts carry over (the limiter's store is kept).
//
// A configuration that does not build keeps the running one, and the log
// says why (file:line for a -config file). Options bound to the process
// (-metrics, -pprof, -redis and its options, -replica, -ticket-keys,
// -ticket-rotate, -acme-*, -otel-*, -strict-sni, -max-sources) need a
// restart: a reload that changes one is refused, and says which.

// switchListener owns a listening socket and hands each connection it
// accepts to the current view, the listener a Proxy.Serve runs on; a
// reload gives the socket a new view, so a kept listener never stops
// accepting and no connection waits on a closed one.
type switchListener struct {
	net.Listener // the socket

	mu   sync.Mutex
	cur  *listenerView
	gone chan struct{} // closed when the accept loop ends
	err  error         // why it ended
}

// newSwitchListener starts the accept loop of l.
func newSwitchListener(l net.Listener) *switchListener {
	s := &switchListener{Listener: l, gone: make(chan struct{})}
	go s.acceptLoop()
	return s
}

// acceptLoop hands every accepted connection to the current view; it ends
// when the socket is closed. A connection that no view takes (between
// generations, or at shutdown) is closed.
func (s *switchListener) acceptLoop() {
	defer close(s.gone)
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		for {
			s.mu.Lock()
			v := s.cur
			s.mu.Unlock()
			if v == nil {
				c.Close()
				break
			}
			select {
			case v.conns <- c:
			case <-v.closed:
				continue // a reload replaced it: hand it to the next
			}
			break
		}
	}
}

// view returns a new listener that takes the connections from now on; the
// view before it stops taking them (Accept returns net.ErrClosed).
func (s *switchListener) view() *listenerView {
	v := &listenerView{s: s, conns: make(chan net.Conn), closed: make(chan struct{})}
	s.mu.Lock()
	prev := s.cur
	s.cur = v
	s.mu.Unlock()
	if prev != nil {
		prev.Close()
	}
	return v
}

// listenerView is one generation's view of a switchListener: a
// net.Listener whose Close ends this view only, never the socket.
type listenerView struct {
	s      *switchListener
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// Accept returns the next connection, or net.ErrClosed once the view is
// closed or the socket has failed.
func (v *listenerView) Accept() (net.Conn, error) {
	select {
	case c := <-v.conns:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.gone:
		v.s.mu.Lock()
		err := v.s.err
		v.s.mu.Unlock()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return nil, net.ErrClosed
		}
		return nil, err
	}
}

// Close stops this view; the socket stays open for the next one.
func (v *listenerView) Close() error {
	v.once.Do(func() {
		close(v.closed)
		v.s.mu.Lock()
		if v.s.cur == v {
			v.s.cur = nil
		}
		v.s.mu.Unlock()
	})
	return nil
}

// Addr returns the socket's address.
func (v *listenerView) Addr() net.Addr { return v.s.Addr() }

// restartOnly lists the options a reload cannot change, by flag.
func restartOnly(o *options) map[string]string {
	return map[string]string{
		"-metrics": o.metrics, "-pprof": o.pprof, "-redis": o.redis, "-redis-password-file": o.redisPasswordFile,
		"-redis-fail": o.redisFail, "-redis-timeout": o.redisTimeout.String(), "-redis-lease": o.redisLease.String(),
		"-replica": o.replica, "-ticket-keys": o.ticketKeys, "-ticket-rotate": o.ticketRotate.String(),
		"-acme-domains": o.acmeDomains, "-acme-email": o.acmeEmail, "-acme-ca": o.acmeCA, "-acme-ca-root": o.acmeCARoot,
		"-acme-http": o.acmeHTTP, "-acme-dir": o.acmeDir, "-otel-endpoint": o.otelEndpoint, "-otel-service": o.otelService,
		"-strict-sni": fmt.Sprint(o.strictSNI), "-max-sources": fmt.Sprint(o.maxSources),
	}
}

// reload reads the configuration again and applies it; on any error the
// running configuration stays, untouched.
func (g *gateway) reload() error {
	o, err := parseFlags(g.args, io.Discard)
	if err != nil {
		return err
	}
	was, now := restartOnly(g.opts), restartOnly(o)
	var changed []string
	for k, v := range was {
		if now[k] != v {
			changed = append(changed, k)
		}
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		return fmt.Errorf("%s changed, which needs a restart: nothing reloaded", strings.Join(changed, ", "))
	}
	n, err := g.buildNext(o)
	if err != nil {
		return err
	}
	return g.apply(n)
}

// buildNext builds the configuration of o beside the running one, sharing
// what the process keeps: the metrics, Redis and the limiter's store (so
// that counters and in-flight counts carry over), the ticket-key rotator,
// the ACME manager, tracing. Nothing of it serves yet.
func (g *gateway) buildNext(o *options) (*gateway, error) {
	n := &gateway{log: g.log, opts: o, args: g.args, pools: make(map[string]*backend.Pool),
		poolProto: make(map[string]starttls.Protocol), metrics: g.metrics, tracing: g.tracing,
		redis: g.redis, store: g.store, rotator: g.rotator, acme: g.acme, certs: g.certs}
	// The certificate sources are checked on a Store of their own; the
	// running Store takes them once the whole configuration is valid.
	sources, err := certSources(o)
	if err != nil {
		return nil, err
	}
	if g.acme != nil {
		sources = append(sources, g.acme)
	}
	if len(sources) == 0 {
		return nil, errors.New("no certificate: give -cert, -le-dir, -sni-map or -acme-domains")
	}
	check := &sni.Store{Strict: o.strictSNI, Sources: sources}
	if err := check.Reload(); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	n.nextSources = sources
	if err := n.buildPools(); err != nil {
		return nil, err
	}
	if err := n.buildLimiter(); err != nil {
		return nil, err
	}
	n.limiter.Store = g.limiter.Store
	if err := n.buildLogins(); err != nil {
		return nil, err
	}
	if err := n.buildAdmin(); err != nil {
		return nil, err
	}
	for _, ls := range o.listens {
		s, err := n.buildService(ls)
		if err != nil {
			return nil, err
		}
		n.traceService(s.proxy)
		n.services = append(n.services, s)
		n.specs = append(n.specs, ls)
	}
	if len(n.services) == 0 {
		return nil, errors.New("no -listen given")
	}
	if err := n.buildProxyPolicy(); err != nil {
		return nil, err
	}
	return n, nil
}

// apply puts the configuration n, built by buildNext, in place of the
// running one.
func (g *gateway) apply(n *gateway) error {
	// Sockets: a kept listener (same name and address) keeps its socket;
	// new ones are opened first, so that one that cannot be opened changes
	// nothing.
	old := make(map[string]int, len(g.specs))
	for i, ls := range g.specs {
		old[ls.Name] = i
	}
	socks := make([]*switchListener, len(n.specs))
	var opened []*switchListener
	for i, ls := range n.specs {
		if j, ok := old[ls.Name]; ok && g.specs[j].Addr == ls.Addr {
			socks[i] = g.socks[j]
			continue
		}
		l, err := listen("tcp", ls.Addr)
		if err != nil {
			for _, s := range opened {
				s.Close()
			}
			return fmt.Errorf("-listen %s: %w", ls.Name, err)
		}
		socks[i] = newSwitchListener(l)
		opened = append(opened, socks[i])
	}
	kept := make(map[*switchListener]bool, len(socks))
	for _, s := range socks {
		kept[s] = true
	}

	g.certMu.Lock()
	g.certs.Sources = n.nextSources
	err := g.certs.Reload()
	g.certMu.Unlock()
	if err != nil {
		g.certs.OnError(err) // a file changed since the check: the previous set serves
	} else {
		g.certs.OnReload() // the log line and the expiry metrics, as for a certificate reload
	}
	if g.rotator != nil {
		for _, s := range n.services {
			g.rotator.Add(s.tlsConfig)
		}
	}

	g.mu.Lock()
	prevServices, prevSocks := g.services, g.socks
	views := make([]net.Listener, len(n.services))
	for i, s := range n.services {
		s.accepting.Store(true)
		views[i] = g.viewOf(socks[i], n.specs[i], n.proxyFrom, s) // a kept socket's old view stops taking connections
	}
	g.opts, g.pools, g.poolProto, g.limiter, g.logins = n.opts, n.pools, n.poolProto, n.limiter, n.logins
	g.services, g.specs, g.socks, g.listeners, g.proxyFrom = n.services, n.specs, socks, views, n.proxyFrom
	g.cas, g.adminFrom, g.checkers = n.cas, n.adminFrom, n.checkers
	g.retired = append(g.retired, prevServices...)
	g.mu.Unlock()

	g.serveAll()
	g.startCheckers()
	// A removed listener stops accepting now, and its sessions drain under
	// -grace; a kept listener's old sessions run to their end.
	closed := 0
	for i, s := range prevSocks {
		if kept[s] {
			continue
		}
		closed++
		s.Close()
		svc := prevServices[i]
		g.goBackground(func() {
			ctx, cancel := context.WithTimeout(context.Background(), g.opts.grace)
			defer cancel()
			if err := svc.proxy.Shutdown(ctx); err != nil {
				g.log.Warn("grace period over; sessions of a removed listener closed", "listener", svc.name)
			}
		})
	}
	g.log.Info("configuration reloaded", "listeners", len(n.specs), "opened", len(opened), "closed", closed, "pools", len(n.pools))
	return nil
}

// viewOf returns the listener a service serves on: a view of its socket,
// behind ProxyListener when the listener takes a PROXY header, watched
// for readiness.
func (g *gateway) viewOf(sock *switchListener, ls listenSpec, proxyFrom []netip.Prefix, s *service) net.Listener {
	var l net.Listener = sock.view()
	if ls.ProxyIn {
		// Server-speaks-first protocols: from -proxy-from sources the
		// header is awaited (up to the timeout) before the greeting,
		// never guessed; anyone else is greeted at once.
		l = mailedge.ProxyListener(l, proxyFrom, 0)
	}
	return watchedListener{Listener: l, accepting: &s.accepting}
}

// certSources returns the certificate sources of o's -cert, -le-dir and
// -sni-map flags.
func certSources(o *options) ([]sni.Source, error) {
	var src []sni.Source
	for _, c := range o.certs {
		parts := strings.Split(c, ",")
		if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "default") {
			return nil, fmt.Errorf("-cert %q: want CERTFILE,KEYFILE[,default]", c)
		}
		src = append(src, sni.Pair{CertFile: parts[0], KeyFile: parts[1], Default: len(parts) == 3})
	}
	for _, d := range o.leDirs {
		src = append(src, sni.LetsEncrypt{Dir: d})
	}
	for _, m := range o.sniMaps {
		src = append(src, sni.PostfixMap{Path: m})
	}
	return src, nil
}
