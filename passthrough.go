package mailedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/internal/nbconn"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// SNI passthrough (Proxy.Passthrough): on an implicit-TLS listener the
// ClientHello is peeked (sni.Peeker) before any handshake. A name the
// application routes through goes, bytes unchanged, to a backend that
// terminates TLS with its own certificate (a tenant that keeps its keys),
// as Traefik's HostSNI passthrough, HAProxy's req_ssl_sni and nginx's
// ssl_preread do; every other name is terminated here on a conn that
// replays the peeked bytes first.

// ErrPassthroughGreeting is reported (in SessionInfo.Err) when the backend
// that Proxy.Passthrough named read a mail greeting: it is not a
// passthrough member (backend.Dialer.Passthrough), and its greeting would
// have been sent to a client that waits for a TLS ServerHello.
var ErrPassthroughGreeting = errors.New("mailedge: passthrough backend sent a greeting (its Dialer lacks Passthrough)")

// passthrough peeks the ClientHello of an implicit-TLS connection and, when
// p.Passthrough names a backend for it, dials it, writes the peeked bytes,
// starts the copy and reports true: the session is under way (or has
// ended). When it names none, or the first bytes are not TLS at all, c.io
// becomes a conn that replays what was read, and it reports false: the
// handshake goes on as without Passthrough, and answers as it always has.
// The replaying conn is nbconn's socket wrapper, so that the bridge reads
// the terminated session without blocking and parks it when idle, as it
// does on a listener without Passthrough.
func (c *conn) passthrough(ctx context.Context, poller *bridge.Poller) bool {
	p := c.p
	pk := sni.Peeker{Timeout: p.Server.HandshakeTimeout} // a ClientHello is part of the handshake
	hello, raw, err := pk.Peek(ctx, c.io)
	switch {
	case errors.Is(err, sni.ErrNotTLS):
		c.io = nbconn.WrapPrefix(c.io, raw)
		return false
	case err != nil:
		c.info.Outcome, c.info.Err = OutcomeClientError, fmt.Errorf("tls handshake: %w", err)
		c.end()
		return true
	}
	be := p.Passthrough(hello)
	if isNil(be) {
		c.io = nbconn.WrapPrefix(c.io, raw)
		return false
	}
	name := strings.ToLower(hello.ServerName)
	c.info.Passthrough, c.info.ServerName = true, name
	bc, err := c.dialPassthrough(ctx, be, name, raw)
	if err != nil {
		// Nothing can be said: the client waits for a ServerHello that
		// only the backend could send. It is closed, as HAProxy does.
		c.info.Outcome, c.info.Err = OutcomeNoBackend, err
		c.end()
		return true
	}
	c.info.Member, c.info.BackendLocal = bc.Member, bc.LocalAddr()
	c.out.in = int64(len(raw)) // counted into Stats.ClientToServer by copied
	opt := p.passthroughOptions()
	opt.Poller = poller
	c.userEnd, opt.Hooks.End = opt.Hooks.End, c.copied
	bridge.Start(ctx, c.io, bc, opt)
	return true
}

// dialPassthrough dials be for a passed-through session with the client's
// addresses and its server name (PROXY v2 PP2_TYPE_AUTHORITY), and writes
// the peeked bytes to it, within the handshake timeout.
func (c *conn) dialPassthrough(ctx context.Context, be Backend, name string, raw []byte) (*backend.Conn, error) {
	start := c.since()
	bc, err := be.Dial(ctx, backend.ClientInfo{Src: c.nc.RemoteAddr(), Dst: c.nc.LocalAddr(), ServerName: name})
	c.dialed(bc, err, start)
	if err != nil {
		return nil, err
	}
	if bc.Greeting != nil {
		bc.Close()
		return nil, fmt.Errorf("%w: %s", ErrPassthroughGreeting, bc.Member)
	}
	bc.SetWriteDeadline(time.Now().Add(c.p.peekTimeout()))
	_, err = bc.Write(raw)
	if derr := bc.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	if err != nil {
		bc.Close()
		return nil, fmt.Errorf("backend: %s: writing the ClientHello: %w", bc.Member, err)
	}
	return bc, nil
}

// peekTimeout is the bound on the ClientHello: the Server's handshake
// timeout, whose default sni.DefaultPeekTimeout matches.
func (p *Proxy) peekTimeout() time.Duration {
	if p.Server.HandshakeTimeout > 0 {
		return p.Server.HandshakeTimeout
	}
	return sni.DefaultPeekTimeout
}

// passthroughOptions are the copy's options for a passed-through session:
// Bridge's, with the protocol's idle timeout, and no guard or SMTP
// inspector, since the bytes are encrypted. With two plain TCP conns, the
// bridge splices.
func (p *Proxy) passthroughOptions() bridge.Options {
	opt := p.Bridge
	if opt.IdleTimeout == 0 {
		opt.IdleTimeout = 10 * time.Minute
		if p.Server.Protocol == starttls.IMAP {
			opt.IdleTimeout = 31 * time.Minute
		}
	}
	opt.Guard, opt.SMTP, opt.RefuseForeign = bridge.GuardNone, nil, false // TLS records are what passes here
	return opt
}

// PassthroughNames returns a Proxy.Passthrough function that routes the
// names of routes (a map from server name to backend) and terminates
// every other name, matching as certificate selection does: the exact name
// first, then a "*.domain" entry for a name one label below domain;
// case-insensitive, one trailing dot ignored. A ClientHello without SNI
// is terminated. The map is read, never changed; do not change it while
// the Proxy runs.
func PassthroughNames(routes map[string]Backend) func(*tls.ClientHelloInfo) Backend {
	lower := make(map[string]Backend, len(routes))
	for name, be := range routes {
		lower[strings.TrimSuffix(strings.ToLower(name), ".")] = be
	}
	return func(hello *tls.ClientHelloInfo) Backend {
		name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
		if name == "" {
			return nil
		}
		if be, ok := lower[name]; ok {
			return be
		}
		if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
			return lower["*."+parent]
		}
		return nil
	}
}
