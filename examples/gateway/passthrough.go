package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/starttls"
)

// SNI passthrough: -passthrough LISTENER:NAME=POOL sends the implicit-TLS
// connections of LISTENER whose ClientHello names NAME, unread, to POOL,
// whose members (security=passthrough) terminate TLS themselves, as
// Traefik's HostSNI passthrough, HAProxy's req_ssl_sni and nginx's
// ssl_preread do. Every other name on the listener is terminated as usual.

// passthroughSpec is one -passthrough flag.
type passthroughSpec struct {
	Listener string
	Name     string // lower-case A-label name, or "*." and one
	Pool     string
	flagText string
}

// passthroughFlags collects the repeatable -passthrough flag, each value
// parsed as it is set so that a bad one names itself.
type passthroughFlags []passthroughSpec

func (f *passthroughFlags) String() string {
	var s []string
	for _, ps := range *f {
		s = append(s, ps.flagText)
	}
	return strings.Join(s, " ")
}

func (f *passthroughFlags) Set(v string) error {
	ps, err := parsePassthrough(v)
	if err != nil {
		return err
	}
	*f = append(*f, ps)
	return nil
}

// parsePassthrough reads LISTENER:NAME=POOL. NAME is a host name or a
// "*.domain" wildcard for one label below domain.
func parsePassthrough(s string) (passthroughSpec, error) {
	listener, rest, ok := strings.Cut(s, ":")
	name, pool, ok2 := strings.Cut(rest, "=")
	if !ok || !ok2 || listener == "" || name == "" || pool == "" {
		return passthroughSpec{}, fmt.Errorf("-passthrough %q: want LISTENER:NAME=POOL, e.g. imaps:mail.tenant.example=tenant", s)
	}
	n, err := passthroughName(name)
	if err != nil {
		return passthroughSpec{}, fmt.Errorf("-passthrough %q: %w", s, err)
	}
	return passthroughSpec{Listener: listener, Name: n, Pool: pool, flagText: s}, nil
}

// passthroughName returns name in the form the SNI is compared in: lower
// case, A-labels, no trailing dot; a wildcard only as the whole left-most
// label of a name of two labels or more.
func passthroughName(name string) (string, error) {
	base, wild := strings.CutPrefix(strings.TrimSuffix(name, "."), "*.")
	if strings.Contains(base, "*") {
		return "", fmt.Errorf("name %q: a wildcard is allowed only as the whole first label (*.example.com)", name)
	}
	if _, err := netip.ParseAddr(base); err == nil {
		return "", fmt.Errorf("name %q: an IP address is never sent as SNI", name)
	}
	ascii, err := idna.Lookup.ToASCII(base)
	if err != nil || ascii == "" || strings.Contains(ascii, "..") || strings.HasPrefix(ascii, ".") {
		return "", fmt.Errorf("name %q: not a host name", name)
	}
	if wild {
		if !strings.Contains(ascii, ".") {
			return "", fmt.Errorf("name %q: a wildcard over a top-level domain", name)
		}
		return "*." + ascii, nil
	}
	return ascii, nil
}

// checkPassthrough validates the -passthrough flags against the listeners
// and backends, and records each passthrough pool's protocol in protoOf
// (its listener's), so that buildPools builds it. A passthrough pool must
// have only security=passthrough members, and those may be in no other
// pool a listener uses.
func (g *gateway) checkPassthrough(protoOf map[string]starttls.Protocol) error {
	listeners := make(map[string]listenSpec)
	for _, ls := range g.opts.listens {
		listeners[ls.Name] = ls
	}
	security := make(map[string][]string) // pool -> its members' security
	for _, b := range g.opts.backends {
		security[b.Pool] = append(security[b.Pool], b.Security)
	}
	seen := make(map[string]bool)
	ptPools := make(map[string]bool)
	for _, ps := range g.opts.passthrough {
		ls, ok := listeners[ps.Listener]
		switch {
		case !ok:
			return fmt.Errorf("-passthrough %q: no -listen named %q", ps.flagText, ps.Listener)
		case ls.TLS != "implicit":
			return fmt.Errorf("-passthrough %q: listener %q is tls=%s; passthrough routes by the ClientHello, so only on tls=implicit", ps.flagText, ls.Name, ls.TLS)
		case seen[ls.Name+":"+ps.Name]:
			return fmt.Errorf("-passthrough %q: %s is passed through twice on %q", ps.flagText, ps.Name, ls.Name)
		case len(security[ps.Pool]) == 0:
			return fmt.Errorf("-passthrough %q: no -backend for pool %q", ps.flagText, ps.Pool)
		}
		for _, sec := range security[ps.Pool] {
			if sec != "passthrough" {
				return fmt.Errorf("-passthrough %q: pool %q has a security=%s member; a passed-through session needs security=passthrough (the member terminates TLS)", ps.flagText, ps.Pool, sec)
			}
		}
		if p, ok := protoOf[ps.Pool]; ok && p != protocols[ls.Proto] {
			return fmt.Errorf("-passthrough %q: pool %q serves %v and %s", ps.flagText, ps.Pool, p, ls.Proto)
		}
		seen[ls.Name+":"+ps.Name], ptPools[ps.Pool] = true, true
		protoOf[ps.Pool] = protocols[ls.Proto]
	}
	for _, ls := range g.opts.listens {
		if ptPools[ls.Pool] {
			return fmt.Errorf("-listen %q: pool %q is a passthrough pool; terminated sessions need members that greet", ls.flagText, ls.Pool)
		}
	}
	for _, b := range g.opts.backends {
		if b.Security == "passthrough" && !ptPools[b.Pool] {
			return fmt.Errorf("-backend %q: security=passthrough in pool %q, which no -passthrough names (a terminated session needs a member that greets)", b.flagText, b.Pool)
		}
	}
	return nil
}

// passthroughRoutes returns the Proxy.Passthrough of listener ls, or nil
// when no -passthrough names it. The pools are built.
func (g *gateway) passthroughRoutes(ls listenSpec) func(*tls.ClientHelloInfo) mailedge.Backend {
	routes := make(map[string]mailedge.Backend)
	for _, ps := range g.opts.passthrough {
		if ps.Listener == ls.Name {
			routes[ps.Name] = g.pools[ps.Pool]
		}
	}
	if len(routes) == 0 {
		return nil
	}
	return mailedge.PassthroughNames(routes)
}

// passthroughProbe is the health probe of a security=passthrough member:
// a TLS handshake with the member's own trust (servername=, ca=,
// insecure) for probe=tls or greeting (the default: the greeting is read
// inside TLS), else a TCP connect (probe=connect), each after the PROXY
// header the member expects.
func passthroughProbe(b backendSpec, proto starttls.Protocol, cfg *tls.Config, dial monitor.DialFunc) monitor.Probe {
	switch b.Probe {
	case "greeting":
		return monitor.Greeting{Protocol: proto, Security: starttls.TLS, TLSConfig: cfg, Dial: dial}
	case "tls":
		return monitor.Certificate{ServerName: cfg.ServerName, Roots: cfg.RootCAs, InsecureSkipVerify: cfg.InsecureSkipVerify,
			Protocol: proto, Dial: dial}
	case "connect":
		return connectProbe(dial)
	}
	return nil
}

// connectProbe succeeds when a TCP connection (and the PROXY header, with
// dial) is made.
func connectProbe(dial monitor.DialFunc) monitor.Probe {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return monitor.ProbeFunc(func(ctx context.Context, addr string) monitor.Result {
		start := time.Now()
		c, err := dial(ctx, "tcp", addr)
		res := monitor.Result{At: start, Latency: time.Since(start)}
		if err != nil {
			res.Err = &monitor.Error{Kind: monitor.ErrConnect, Reason: "connect: " + err.Error(), Err: err}
			return res
		}
		c.Close()
		res.OK, res.Detail = true, "connected"
		return res
	})
}

// checkPassthroughMember checks the options of a security=passthrough
// -backend: the mail dialogue is inside the client's TLS, so nothing that
// speaks it (xclient, imapid, probe=smtp|imap|pop3 with user=/pass=) can
// apply; the default probe is a TCP connect, since a TLS handshake needs
// the tenant's CA (ca=) or insecure.
func checkPassthroughMember(b *backendSpec) error {
	if b.Security != "passthrough" {
		if b.Probe == "connect" {
			return errors.New("probe=connect is for security=passthrough members")
		}
		return nil
	}
	switch {
	case b.XCLIENT || b.IMAPID:
		return errors.New("security=passthrough forwards the client's TLS unread: no xclient or imapid")
	case b.Probe == "":
		b.Probe = "connect"
	case b.Probe != "connect" && b.Probe != "greeting" && b.Probe != "tls" && b.Probe != "none":
		return fmt.Errorf("probe=%s: a security=passthrough member is probed with connect, greeting (inside TLS) or tls", b.Probe)
	}
	return nil
}
