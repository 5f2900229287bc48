package mailedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// Backend is where a Proxy sends sessions: a *backend.Pool or a single
// *backend.Dialer. The returned conn has read the greeting; the Proxy owns it.
type Backend interface {
	Dial(ctx context.Context, ci backend.ClientInfo) (*backend.Conn, error)
}

// Outcome says how a session ended, for logs and metrics.
type Outcome string

// The outcomes a Proxy reports.
const (
	OutcomeOK          Outcome = "ok"           // copied until one side closed
	OutcomeReset       Outcome = "reset"        // a peer reset the connection (common after QUIT)
	OutcomeLimited     Outcome = "rate_limited" // refused by the Limiter before the dialogue
	OutcomeClientQuit  Outcome = "client_quit"  // QUIT/LOGOUT before reaching a backend
	OutcomeClientError Outcome = "client_error" // dialogue or handshake failed (see Err)
	OutcomeNoBackend   Outcome = "no_backend"   // no member could be dialled; the client was told
	OutcomeHandover    Outcome = "handover"     // the backend refused or broke the handover
	OutcomeCopyError   Outcome = "copy_error"   // the copy ended with an error (see Err)
)

// SessionInfo describes one finished session: what OnSession receives.
type SessionInfo struct {
	Client   net.Addr
	Start    time.Time
	Outcome  Outcome
	Err      error                // nil for OK, reset and quit
	Session  *starttls.Session    // nil when the dialogue failed
	Member   string               // backend member, "" if none was reached
	Stats    bridge.Stats         // bytes, duration, SMTP counters
	TLS      *tls.ConnectionState // client-side TLS, nil for a plain session
	Implicit bool
}

// Proxy serves one mail listener end to end: admission by a Limiter, the
// client side (implicit TLS, or the STARTTLS dialogue of Server), a backend
// dial, the handover of starttls, and the copy of bridge.Start. It is the
// path of docs/architecture.md in one value, for applications that need no
// more control; each step is also usable on its own.
//
// Set the fields before Serve and do not change them afterwards.
type Proxy struct {
	// Server speaks the client side; its Protocol is the listener's.
	Server *starttls.Server
	// Implicit selects TLS from the first byte (993, 465, 995) instead of
	// the STARTTLS dialogue (143, 587, 25, 110).
	Implicit bool
	// Backend is where sessions go.
	Backend Backend
	// Limiter, if non-nil, admits each source before anything is said and
	// counts in-flight connections (ratelimit). If nil, no limits.
	Limiter *ratelimit.Limiter
	// InspectSMTP enforces the Limiter's message and recipient rates on SMTP
	// sessions through bridge's line inspector. Ignored without a Limiter.
	InspectSMTP bool
	// Bridge configures the copy. If its IdleTimeout is zero, the
	// protocol's own idle time is used: IMAP 31 minutes (RFC 9051
	// autologout is at least 30), SMTP and POP3 10 minutes (RFC 5321
	// §4.5.3.2 DATA timeout, RFC 1939).
	Bridge bridge.Options
	// HandoverTimeout bounds the handover of a plain session, where the
	// proxy talks to the backend before the copy (SMTP: the client's EHLO
	// replayed and its answer read). If zero, 30 seconds. If negative, only
	// ctx bounds it. A TLS session's handover reads nothing from the
	// backend (the Dialer has read the greeting) and needs no bound.
	HandoverTimeout time.Duration
	// OnSession, if non-nil, is called once per connection when it ends.
	OnSession func(SessionInfo)
	// OnLimited, if non-nil, is called with each refusal by the Limiter,
	// connection or SMTP command.
	OnLimited func(error)

	wg sync.WaitGroup
}

// Serve accepts connections on l and serves each until l is closed or ctx
// is done (which closes l); it then waits for the sessions it started,
// which end on their own or when ctx is done. For a graceful stop, close
// l, wait for a grace period, then cancel ctx.
//
// Idle sessions are parked in Bridge.Poller, or in a Poller of Serve's own
// when that is nil, so that a session waiting for its next command holds
// no goroutine (see bridge.Poller).
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	poller := p.Bridge.Poller
	if poller == nil {
		poller = new(bridge.Poller)
		defer poller.Close() // after the sessions: deferred calls run last first
	}
	defer p.wg.Wait()
	w := &workers{p: p, ctx: ctx, poller: poller, conns: make(chan net.Conn)}
	defer w.stop()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !temporaryAccept(err) {
				return err
			}
			// Out of descriptors or memory, or a connection aborted before
			// it was accepted: wait and retry, as net/http does, so a flood
			// does not stop the listener.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		p.wg.Add(1)
		w.serve(c)
	}
}

// ServeConn serves one client connection to its end, closes it, and
// returns what OnSession also receives. It parks the session in
// Bridge.Poller if that is set.
func (p *Proxy) ServeConn(ctx context.Context, conn net.Conn) SessionInfo {
	ended := make(chan SessionInfo, 1)
	p.serve(ctx, conn, p.Bridge.Poller, ended)
	return <-ended
}

// conn is one connection's state from Accept until its session ends: a
// single allocation that the copy's end hook finishes.
type conn struct {
	p       *Proxy
	nc      net.Conn
	info    SessionInfo
	lease   ratelimit.Lease
	userEnd func(bridge.Stats, error) // the caller's Bridge.Hooks.End
	ended   chan<- SessionInfo        // nil: Serve's WaitGroup
}

// serve takes one connection through admission, the client side, the
// backend dial and the handover, then starts the copy and returns: the
// session goes on in the bridge, on goroutines of its own or parked in
// poller. When the session has ended, its conns are closed and OnSession
// has run, the SessionInfo goes to ended, or Serve's WaitGroup is told.
func (p *Proxy) serve(ctx context.Context, nc net.Conn, poller *bridge.Poller, ended chan<- SessionInfo) {
	c := &conn{p: p, nc: nc, ended: ended}
	c.info = SessionInfo{Client: nc.RemoteAddr(), Start: time.Now(), Outcome: OutcomeOK, Implicit: p.Implicit}
	// Replies are written whole, and net turns Nagle off on every TCP conn
	// it makes, so a greeting never waits for the client's delayed ACK.
	src := AddrOf(c.info.Client)
	if p.Limiter != nil {
		var err error
		if c.lease, err = p.Limiter.Admit(src); err != nil {
			c.info.Outcome, c.info.Err = OutcomeLimited, err
			p.limited(err)
			p.refuse(nc, err)
			c.end()
			return
		}
	}
	client, server, sess := p.prepare(ctx, nc, &c.info)
	if sess == nil {
		c.end()
		return
	}
	opt := p.bridgeOptions(sess.Protocol, src)
	opt.Poller = poller
	c.userEnd, opt.Hooks.End = opt.Hooks.End, c.copied
	bridge.Start(ctx, client, server, opt)
}

// copied is the bridge's end hook: it records how the copy ended.
func (c *conn) copied(st bridge.Stats, err error) {
	if c.userEnd != nil {
		c.userEnd(st, err)
	}
	c.info.Stats = st
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		c.info.Outcome = OutcomeReset // swaks, Outlook and others reset after QUIT
	default:
		c.info.Outcome, c.info.Err = OutcomeCopyError, err
	}
	c.end()
}

// end closes the client conn, releases the admission and reports.
func (c *conn) end() {
	c.nc.Close()
	c.lease.Release()
	if c.p.OnSession != nil {
		c.p.OnSession(c.info)
	}
	if c.ended != nil {
		c.ended <- c.info
	} else {
		c.p.wg.Done()
	}
}

// prepare runs the client side, the backend dial and the handover. It
// returns a nil session when the connection ended there.
func (p *Proxy) prepare(ctx context.Context, conn net.Conn, info *SessionInfo) (client, server net.Conn, sess *starttls.Session) {
	sess, err := p.clientSide(ctx, conn, info)
	if err != nil {
		return nil, nil, nil
	}
	client, server, ok := p.toBackend(ctx, conn, sess, info)
	if !ok {
		return nil, nil, nil
	}
	return client, server, sess
}

func (p *Proxy) clientSide(ctx context.Context, conn net.Conn, info *SessionInfo) (*starttls.Session, error) {
	serve := p.Server.Serve
	if p.Implicit {
		serve = p.Server.ServeTLS
	}
	sess, err := serve(ctx, conn)
	switch {
	case errors.Is(err, starttls.ErrClientQuit):
		info.Outcome = OutcomeClientQuit
	case err != nil:
		info.Outcome, info.Err = OutcomeClientError, err
	default:
		info.Session = sess
		if sess.TLS {
			info.TLS = &sess.State // not a copy: it is big, and kept with the session
		}
	}
	return sess, err
}

func (p *Proxy) toBackend(ctx context.Context, conn net.Conn, sess *starttls.Session, info *SessionInfo) (client, server net.Conn, ok bool) {
	be, err := p.Backend.Dial(ctx, backend.ClientInfo{
		Src: conn.RemoteAddr(), Dst: conn.LocalAddr(), TLS: info.TLS,
		ServerName: sess.ServerName, Helo: sess.Helo, HeloVerb: sess.HeloVerb,
	})
	if err != nil {
		info.Outcome, info.Err = OutcomeNoBackend, err
		sess.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		sess.Conn.Write(starttls.Unavailable(sess.Protocol, p.Server.Hostname, ""))
		sess.Conn.Close()
		return nil, nil, false
	}
	info.Member = be.Member
	// The bridge's guards and SMTP inspector filter every capability
	// answer, so the handover need not wait for the client's first
	// command: a client slow to speak waits parked in the copy, under the
	// idle timeout, holding no goroutine or reader.
	hctx := ctx
	if d := p.handoverTimeout(); !sess.TLS && d > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	client, server, err = starttls.HandoverWith(hctx, sess, be.Backend(), starttls.HandoverOptions{Guarded: true})
	if err != nil {
		be.Close()
		info.Outcome, info.Err = OutcomeHandover, err
		return nil, nil, false
	}
	be.Greeting = nil // relayed or swallowed: not kept for the session's life
	return client, server, true
}

// defaultHandoverTimeout is the bound on a plain session's handover when
// Proxy.HandoverTimeout is zero.
const defaultHandoverTimeout = 30 * time.Second

func (p *Proxy) handoverTimeout() time.Duration {
	if p.HandoverTimeout == 0 {
		return defaultHandoverTimeout
	}
	return p.HandoverTimeout
}

// refuse writes the Limiter's refusal in the protocol's words on a plain
// listener. On an implicit-TLS listener the words could only be read inside
// a handshake, and spending one on a source over its limit is what a flood
// wants, so the connection is just closed.
func (p *Proxy) refuse(conn net.Conn, err error) {
	if p.Implicit {
		return
	}
	var reply string
	switch p.Server.Protocol {
	case starttls.SMTP:
		reply = ratelimit.SMTPReply(err, p.Server.Hostname)
	case starttls.IMAP:
		reply = ratelimit.IMAPReply(err)
	case starttls.POP3:
		reply = ratelimit.POP3Reply(err)
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte(reply))
}

func (p *Proxy) limited(err error) {
	if p.OnLimited != nil {
		p.OnLimited(err)
	}
}

func (p *Proxy) bridgeOptions(proto starttls.Protocol, src netip.Addr) bridge.Options {
	opt := p.Bridge
	if opt.IdleTimeout == 0 {
		opt.IdleTimeout = 10 * time.Minute
		if proto == starttls.IMAP {
			opt.IdleTimeout = 31 * time.Minute
		}
	}
	switch proto {
	case starttls.IMAP, starttls.POP3:
		// The guard keeps the session on the client's TLS: a backend that
		// offers STARTTLS/STLS has it removed from every capability
		// answer, and answers a second STARTTLS/STLS BAD or -ERR itself.
		opt.Guard = bridge.GuardIMAP
		if proto == starttls.POP3 {
			opt.Guard = bridge.GuardPOP3
		}
		return opt
	}
	if proto != starttls.SMTP || opt.SMTP != nil {
		return opt
	}
	// Every SMTP session gets the inspector: it answers a STARTTLS sent
	// after the handover itself (the client is already on TLS; forwarded,
	// it would start a second negotiation with the backend) and bounds
	// command lines. With InspectSMTP it also enforces the message and
	// recipient rates.
	opt.SMTP = &bridge.SMTPInspector{}
	if p.InspectSMTP && p.Limiter != nil {
		lim := p.Limiter
		opt.SMTP.Check = func(c bridge.SMTPCommand) string {
			var err error
			switch c.Verb {
			case "MAIL":
				err = lim.AllowMessage(src)
			case "RCPT":
				err = lim.AllowRecipient(src)
			}
			if err == nil {
				return ""
			}
			p.limited(err)
			return ratelimit.SMTPReply(err, p.Server.Hostname)
		}
	}
	return opt
}

// AddrOf returns the IP address of a TCP or UDP net.Addr, IPv4-mapped IPv6
// unmapped, or the zero Addr when a has none.
func AddrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// String formats the session for a log line: client, outcome, SNI, backend,
// bytes each way, duration, and the error if any.
func (in SessionInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client=%v outcome=%s", in.Client, in.Outcome)
	if in.TLS != nil {
		fmt.Fprintf(&b, " sni=%q tls=%q", in.TLS.ServerName, tls.VersionName(in.TLS.Version))
	}
	fmt.Fprintf(&b, " backend=%q in=%d out=%d duration=%v", in.Member, in.Stats.ClientToServer, in.Stats.ServerToClient,
		time.Since(in.Start).Round(time.Millisecond))
	if in.Err != nil {
		fmt.Fprintf(&b, " err=%q", in.Err.Error())
	}
	return b.String()
}

// temporaryAccept reports whether an Accept error is worth retrying.
func temporaryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
