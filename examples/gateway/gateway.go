package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/ratelimit/redisstore"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/acme"
	"github.com/mailedge/mailedge/sni/ticketkeys"
	"github.com/mailedge/mailedge/starttls"
)

// gateway is everything built from the options, ready to start.
type gateway struct {
	log      *slog.Logger
	opts     *options
	certs    *sni.Store
	pools    map[string]*backend.Pool
	checkers []*checkerJob
	limiter  *ratelimit.Limiter
	metrics  *metrics
	services []*service
	specs    []listenSpec

	poolProto map[string]starttls.Protocol // each pool's: its listeners', or for NAME/POOL, POOL's
	logins    *logins                      // nil unless -auth-file or -auth-http

	redis   *redis.Client       // -redis; nil without
	store   *redisstore.Store   // the Limiter's Store with -redis
	rotator *ticketkeys.Rotator // -ticket-keys; nil without
	acme    *acme.Manager       // -acme-domains; nil without

	cas map[string]*sni.CAPool // client-ca= bundles by file, shared by the listeners naming one

	tracing   *tracing       // -otel-endpoint; nil without
	adminFrom []netip.Prefix // -admin-from: non-loopback clients of the admin endpoint

	// Reloads (reload.go): the flags to read again, the sockets and their
	// generations, and what guards the fields a reload swaps (services,
	// specs, listeners, socks, pools, checkers) for the HTTP handlers.
	args         []string
	mu           sync.RWMutex
	certMu       sync.Mutex         // serialises the Store's reloads and source changes
	socks        []*switchListener  // by listener, as specs
	retired      []*service         // earlier generations whose sessions still run (forget drops one when its Serve returns)
	stopCheckers context.CancelFunc // the current generation's health checkers
	bgCtx        context.Context    // the background's, set by start
	sessCtx      context.Context    // the sessions', set by start
	nextSources  []sni.Source       // buildNext's certificate sources

	proxyFrom      []netip.Prefix // balancers that may send an inbound PROXY header
	listeners      []net.Listener
	httpSrvs       []*http.Server
	serving        sync.WaitGroup     // Proxy.Serve loops, which wait for their sessions
	bg             sync.WaitGroup     // checkers, watcher, metrics server
	stopBackground context.CancelFunc // ends checkers and the certificate watcher
	draining       atomic.Bool        // shutdown has begun: /readyz answers 503
}

type checkerJob struct {
	pool string
	c    *monitor.Checker
}

var protocols = map[string]starttls.Protocol{"smtp": starttls.SMTP, "imap": starttls.IMAP, "pop3": starttls.POP3}

// build checks every option and file and assembles the gateway; nothing
// listens yet, so a bad flag or file stops the program before it serves.
func build(o *options, log *slog.Logger) (_ *gateway, err error) {
	g := &gateway{log: log, opts: o, pools: make(map[string]*backend.Pool), poolProto: make(map[string]starttls.Protocol)}
	defer func() {
		if err != nil {
			g.closeShared()
			g.closeRedis()
		}
	}()
	if err := g.buildCerts(); err != nil {
		return nil, err
	}
	if err := g.buildPools(); err != nil {
		return nil, err
	}
	if err := g.buildLimiter(); err != nil {
		return nil, err
	}
	if err := g.buildShared(); err != nil {
		return nil, err
	}
	if err := g.buildLogins(); err != nil {
		return nil, err
	}
	if o.metrics != "" {
		g.metrics = newMetrics(g.certs)
		g.metrics.addRedis(g.store)
	}
	if err := g.buildTracing(); err != nil {
		return nil, err
	}
	if err := g.buildAdmin(); err != nil {
		return nil, err
	}
	for _, ls := range o.listens {
		s, err := g.buildService(ls)
		if err != nil {
			return nil, err
		}
		g.traceService(s.proxy)
		g.services = append(g.services, s)
		g.specs = append(g.specs, ls)
	}
	if len(g.services) == 0 {
		return nil, errors.New("no -listen given")
	}
	if err := g.buildProxyPolicy(); err != nil {
		return nil, err
	}
	if err := g.buildTicketKeys(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *gateway) buildCerts() error {
	g.certs = &sni.Store{}
	g.certs.Strict = g.opts.strictSNI
	sources, err := certSources(g.opts)
	if err != nil {
		return err
	}
	g.certs.Sources = sources
	if err := g.buildACME(); err != nil {
		return err
	}
	if len(g.certs.Sources) == 0 {
		return errors.New("no certificate: give -cert, -le-dir, -sni-map or -acme-domains")
	}
	g.certs.OnError = func(err error) { g.log.Error("certificate reload failed; still serving the previous set", "err", err) }
	g.certs.OnReload = func() {
		g.log.Info("certificates reloaded", "names", len(g.certs.Certificates()))
		g.metrics.updateCerts(g.certs)
	}
	if err := g.certs.Reload(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	for _, in := range g.certs.Certificates() {
		g.log.Info("certificate", "name", in.Name, "not_after", in.NotAfter.Format(time.DateOnly),
			"days_left", int(time.Until(in.NotAfter).Hours()/24), "key", in.KeyType, "issuer", in.Issuer, "default", in.Default, "source", in.Source)
	}
	return nil
}

func (g *gateway) buildLimiter() error {
	// The store is explicit, so that a reload's Limiter shares it: rate
	// counters and in-flight counts carry over (-redis replaces it).
	lim := &ratelimit.Limiter{Store: &ratelimit.MemoryStore{MaxSources: g.opts.maxSources}}
	var err error
	if lim.Limits, err = parseLimits(g.opts.limits); err != nil {
		return err
	}
	if g.opts.trusted != "" {
		if lim.Trusted, err = ratelimit.ParseNetworks(g.opts.trusted); err != nil {
			return fmt.Errorf("-trusted: %w", err)
		}
	}
	if g.opts.acl != "" {
		if lim.ACL, err = ratelimit.ParseACL(g.opts.acl); err != nil {
			return fmt.Errorf("-acl: %w", err)
		}
	}
	g.limiter = lim
	return nil
}

func (g *gateway) buildService(ls listenSpec) (*service, error) {
	proto := protocols[ls.Proto]
	policy := sni.Policy{Protocol: proto.String(), ClientAuth: ls.Verify}
	g.opts.tls.apply(&policy) // -tls-*, -ticket-lifetime, -any-alpn
	if ls.ClientCA != "" {
		cas, err := g.clientCAs(ls.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("-listen %q: client-ca=: %w", ls.flagText, err)
		}
		policy.ClientCAs = cas
	}
	cfg := g.certs.TLSConfig(policy)
	mode := map[string]starttls.Mode{"require": starttls.Require, "allow": starttls.Allow, "disallow": starttls.Disallow}[ls.Mode]
	p := &mailedge.Proxy{
		Server:      &starttls.Server{Protocol: proto, Mode: mode, TLSConfig: cfg, Hostname: g.opts.hostname},
		Implicit:    ls.TLS == "implicit",
		InspectSMTP: ls.Inspect,
	}
	g.opts.tls.applyTimeouts(ls.Proto, p) // -timeouts
	// With auth, the listener's own pool takes the logins that name none,
	// and may be left out when every login names one.
	if pool, ok := g.pools[ls.Pool]; ok {
		p.Backend = pool
	} else if !ls.Auth {
		return nil, fmt.Errorf("-listen %q: no -backend for pool %q", ls.flagText, ls.Pool)
	}
	// The ACL applies on every listener; the limits only where asked for.
	if ls.Limit {
		p.Limiter = g.limiter
	} else if g.opts.acl != "" {
		p.Limiter = &ratelimit.Limiter{ACL: g.limiter.ACL}
	}
	if p.Implicit {
		p.Passthrough = g.passthroughRoutes(ls) // -passthrough; nil without
	}
	s := newService(ls.Name, p, g.log, g.metrics)
	s.tlsConfig = cfg
	if ls.Auth {
		p.Login = g.loginServer(ls, s)
	}
	return s, nil
}

func (g *gateway) buildPools() error {
	policy := map[string]backend.Policy{"roundrobin": backend.RoundRobin, "leastconn": backend.LeastConn, "weighted": backend.Weighted}
	pol, ok := policy[g.opts.policy]
	if !ok {
		return fmt.Errorf("-balance %q: want roundrobin, leastconn or weighted", g.opts.policy)
	}
	members := make(map[string][]backend.Member)
	var order []string
	protoOf := make(map[string]starttls.Protocol)
	for _, ls := range g.opts.listens {
		protoOf[ls.Pool] = protocols[ls.Proto]
	}
	if err := g.checkPassthrough(protoOf); err != nil {
		return err
	}
	for _, b := range g.opts.backends {
		proto, used := protoOf[b.Pool]
		if !used {
			proto, used = loginPoolProtocol(b.Pool, g.opts.listens)
		}
		if !used {
			return fmt.Errorf("-backend %q: pool %q is not used by any -listen (nor is it NAME/POOL for the pool of a -listen with auth)", b.flagText, b.Pool)
		}
		g.poolProto[b.Pool] = proto
		d, err := g.dialer(b, proto)
		if err != nil {
			return err
		}
		if _, seen := members[b.Pool]; !seen {
			order = append(order, b.Pool)
		}
		members[b.Pool] = append(members[b.Pool], backend.Member{Name: b.Name, Dialer: d, Weight: b.Weight})
		if probe := g.probe(b, proto, d.TLSConfig); probe != nil {
			g.checkers = append(g.checkers, &checkerJob{pool: b.Pool, c: &monitor.Checker{
				Name: b.Name, Addr: b.Addr, Probe: probe, Interval: b.Interval, Timeout: b.Timeout, DownTime: b.DownTime,
				Rise: b.Rise, Fall: b.Fall, Jitter: b.Jitter,
			}})
		}
	}
	for _, name := range order {
		p, err := backend.NewPool(pol, members[name]...)
		if err != nil {
			return fmt.Errorf("pool %q: %w", name, err)
		}
		g.pools[name] = p
	}
	return nil
}

func (g *gateway) dialer(b backendSpec, proto starttls.Protocol) (*backend.Dialer, error) {
	d := &backend.Dialer{Addr: b.Addr, Protocol: proto, XCLIENT: b.XCLIENT, IMAPID: b.IMAPID, Hostname: g.opts.hostname,
		IdentityBestEffort: b.IdentityBestEffort}
	d.Security = map[string]starttls.Security{"plain": starttls.Plain, "tls": starttls.TLS, "starttls": starttls.STARTTLS}[b.Security]
	d.Proxy = map[string]backend.ProxyProtocol{"": backend.NoProxy, "v1": backend.ProxyV1, "v2": backend.ProxyV2}[b.Proxy]
	d.Passthrough = b.Security == "passthrough" // Security stays Plain; TLSConfig serves the probe
	if b.Security != "plain" {
		cfg := &tls.Config{ServerName: b.ServerName, InsecureSkipVerify: b.Insecure, MinVersion: tls.VersionTLS12}
		if b.CAFile != "" {
			pem, err := os.ReadFile(b.CAFile)
			if err != nil {
				return nil, fmt.Errorf("-backend %q: ca: %w", b.flagText, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-backend %q: ca %s: no PEM certificate in it", b.flagText, b.CAFile)
			}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(b.Addr)
			cfg.ServerName = host
		}
		d.TLSConfig = cfg
	}
	return d, nil
}

func (g *gateway) probe(b backendSpec, proto starttls.Protocol, cfg *tls.Config) monitor.Probe {
	dial := backend.ProxyProbeDial(map[string]backend.ProxyProtocol{"": backend.NoProxy, "v1": backend.ProxyV1, "v2": backend.ProxyV2}[b.Proxy])
	sec := map[string]starttls.Security{"plain": starttls.Plain, "tls": starttls.TLS, "starttls": starttls.STARTTLS}[b.Security]
	if b.Security == "passthrough" {
		return passthroughProbe(b, proto, cfg, dial)
	}
	switch b.Probe {
	case "greeting":
		gsec := sec
		if gsec == starttls.STARTTLS {
			gsec = starttls.Plain
		}
		return monitor.Greeting{Protocol: proto, Security: gsec, TLSConfig: cfg, Dial: dial}
	case "smtp":
		return monitor.SMTP{Security: sec, TLSConfig: cfg, Hostname: g.opts.hostname, Username: b.User, Password: b.Pass, Dial: dial}
	case "imap":
		return monitor.IMAP{Security: sec, TLSConfig: cfg, Username: b.User, Password: b.Pass, Dial: dial,
			Mailbox: b.Mailbox, Examine: b.Examine}
	case "pop3":
		return monitor.POP3{Security: sec, TLSConfig: cfg, Username: b.User, Password: b.Pass, Dial: dial}
	case "tls":
		if cfg == nil {
			return nil // a plain member has no certificate to check
		}
		// The member's own dialogue (STARTTLS first, ALPN of its protocol)
		// and trust (insecure) apply to the certificate check too.
		return monitor.Certificate{ServerName: cfg.ServerName, Roots: cfg.RootCAs, InsecureSkipVerify: cfg.InsecureSkipVerify,
			StartTLS: sec == starttls.STARTTLS, Protocol: proto, Hostname: g.opts.hostname, Dial: dial}
	}
	return nil
}

// buildProxyPolicy reads -proxy-from: sources in it must open with a PROXY
// header on listeners marked proxy; anyone else is served at once as they
// are, a header they send being a bad command, so a client cannot claim
// another address.
func (g *gateway) buildProxyPolicy() error {
	need := false
	for _, ls := range g.specs {
		need = need || ls.ProxyIn
	}
	if g.opts.proxyFrom == "" {
		if need {
			return errors.New("a -listen has 'proxy' but -proxy-from names no balancer")
		}
		return nil
	}
	nets, err := ratelimit.ParseNetworks(g.opts.proxyFrom)
	if err != nil {
		return fmt.Errorf("-proxy-from: %w", err)
	}
	g.proxyFrom = nets
	return nil
}
