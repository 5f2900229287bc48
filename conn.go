package mailedge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// conn is one connection's state from Accept until its session ends: a
// single allocation that the copy's end hook finishes.
type conn struct {
	p       *Proxy
	nc      net.Conn // as accepted: its addresses are the client's, Close ends it
	io      net.Conn // what is read and written: nc, or the socket under it
	info    SessionInfo
	lease   ratelimit.Lease
	out     countConn                 // the client conn during the handover
	userEnd func(bridge.Stats, error) // the caller's Bridge.Hooks.End
	ended   chan<- SessionInfo        // ServeConn's; nil: Serve's WaitGroup
	wg      *sync.WaitGroup           // Serve's sessions
	id      uint64                    // for OnEvent; 0 without
}

// serve takes one connection through admission, the client side, the
// backend dial and the handover, then starts the copy and returns: the
// session goes on in the bridge, on goroutines of its own or parked in
// poller. When the session has ended, its conns are closed and OnSession
// has run, the SessionInfo goes to ended, or wg is told.
func (p *Proxy) serve(ctx context.Context, nc net.Conn, poller *bridge.Poller, ended chan<- SessionInfo, wg *sync.WaitGroup) {
	c := &conn{p: p, nc: nc, io: nc, ended: ended, wg: wg}
	c.info = SessionInfo{Start: time.Now(), Outcome: OutcomeOK, Implicit: p.Implicit}
	err := p.validate()
	if err == nil {
		err = c.inbound(ctx)
	}
	c.info.Client = nc.RemoteAddr()
	if p.OnEvent != nil {
		c.id = p.ids.Add(1)
		c.event(Event{Stage: StageAccepted, Err: err}, c.info.Start)
	}
	if err != nil {
		c.info.Outcome, c.info.Err = OutcomeClientError, err
		if p.Server != nil && isNil(p.Backend) && p.Login == nil {
			c.info.Outcome = OutcomeNoBackend
		}
		c.end()
		return
	}
	// Replies are written whole, and net turns Nagle off on every TCP conn
	// it makes, so a greeting never waits for the client's delayed ACK.
	src := IPOf(c.info.Client)
	if p.Limiter != nil {
		start := c.since()
		c.lease, err = p.Limiter.Admit(ctx, src)
		c.event(Event{Stage: StageAdmitted, Err: err}, start)
		if err != nil {
			c.info.Outcome, c.info.Err = OutcomeLimited, err
			p.limited(err)
			p.refuse(c.io, err)
			c.end()
			return
		}
	}
	if p.Implicit && p.Passthrough != nil && c.passthrough(ctx, poller) {
		return // passed through, or ended while its ClientHello was read
	}
	client, server, sess := c.prepare(ctx)
	if sess == nil {
		c.end()
		return
	}
	opt := p.bridgeOptions(ctx, sess.Protocol, src)
	opt.Poller = poller
	c.userEnd, opt.Hooks.End = opt.Hooks.End, c.copied
	bridge.Start(ctx, client, server, opt)
}

// inbound reads the PROXY header of a connection from ProxyListener's
// trusted sources, within ctx, and then goes on on the socket under it, so
// that the bridge can park, splice and half-close: the header was read
// exactly, nothing is buffered. The client's addresses stay nc's.
func (c *conn) inbound(ctx context.Context) error {
	ic, ok := c.nc.(*inboundConn)
	if !ok {
		return nil
	}
	if err := ic.headerContext(ctx); err != nil {
		return err
	}
	c.io = ic.Conn
	return nil
}

// dialed reports a backend dial begun at start.
func (c *conn) dialed(be *backend.Conn, err error, start time.Time) {
	if c.p.OnEvent == nil {
		return
	}
	e := Event{Stage: StageBackend, Err: err}
	if be != nil {
		e.Member, e.Identity = be.Member, be.Identity
	}
	c.event(e, start)
}

// copied is the bridge's end hook: it records how the copy ended.
func (c *conn) copied(st bridge.Stats, err error) {
	st.ServerToClient += c.out.n  // what the handover relayed
	st.ClientToServer += c.out.in // what the login at the edge read
	if c.userEnd != nil {
		c.userEnd(st, err)
	}
	c.info.Stats = st
	switch {
	case err == nil:
	case errors.Is(err, bridge.ErrForeignProtocol):
		c.info.Outcome, c.info.Err = OutcomeForeign, err
	case (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) && st.Goodbye:
		// The client said QUIT or LOGOUT and had its answer: a clean end,
		// whoever reset it after (swaks, Outlook and others reset at once).
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		c.info.Outcome = OutcomeReset // cut mid-session: a crash, a network
	default:
		c.info.Outcome, c.info.Err = OutcomeCopyError, err
	}
	c.end()
}

// end closes the client conn, releases the admission and reports.
func (c *conn) end() {
	c.nc.Close()
	c.lease.Release()
	c.info.Duration = time.Since(c.info.Start)
	if c.p.OnSession != nil {
		c.p.OnSession(c.info)
	}
	if c.p.OnEvent != nil {
		info := c.info
		c.event(Event{Stage: StageEnded, Err: info.Err, Info: &info}, c.info.Start)
	}
	if c.ended != nil {
		c.ended <- c.info
	} else {
		c.wg.Done()
	}
}

// prepare runs the client side, the backend dial and the handover. It
// returns a nil session when the connection ended there.
func (c *conn) prepare(ctx context.Context) (client, server net.Conn, sess *starttls.Session) {
	sess, err := c.clientSide(ctx)
	if err != nil {
		return nil, nil, nil
	}
	var ok bool
	if c.p.Login != nil {
		client, server, ok = c.login(ctx, sess)
	} else {
		client, server, ok = c.toBackend(ctx, sess)
	}
	if !ok {
		return nil, nil, nil
	}
	return client, server, sess
}

func (c *conn) clientSide(ctx context.Context) (*starttls.Session, error) {
	p, info := c.p, &c.info
	serve := p.Server.Serve
	if p.Implicit {
		serve = p.Server.ServeTLS
	}
	start := c.since()
	sess, err := serve(ctx, c.io)
	if p.OnEvent != nil {
		e := Event{Stage: StageClient, Err: err}
		if err == nil && sess.TLS {
			e.TLS = &sess.State
		}
		c.event(e, start)
	}
	switch {
	case errors.Is(err, starttls.ErrClientQuit):
		info.Outcome = OutcomeClientQuit
	case errors.Is(err, starttls.ErrForeignProtocol):
		info.Outcome, info.Err = OutcomeForeign, err
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

func (c *conn) toBackend(ctx context.Context, sess *starttls.Session) (client, server net.Conn, ok bool) {
	p, info := c.p, &c.info
	// What is written to the client before the copy is counted into
	// Stats.ServerToClient, so that it tells what the client received.
	c.out = countConn{Conn: sess.Conn}
	sess.Conn = &c.out
	defer c.endCount(sess)
	start := c.since()
	be, err := p.Backend.Dial(ctx, backend.ClientInfo{
		Src: c.nc.RemoteAddr(), Dst: c.nc.LocalAddr(), TLS: info.TLS,
		ServerName: sess.ServerName, Helo: sess.Helo, HeloVerb: sess.HeloVerb,
	})
	c.dialed(be, err, start)
	if err != nil {
		info.Outcome, info.Err = OutcomeNoBackend, err
		sess.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		sess.Conn.Write(starttls.Unavailable(sess.Protocol, p.Server.Hostname, ""))
		sess.Conn.Close()
		return nil, nil, false
	}
	info.Member, info.BackendLocal = be.Member, be.LocalAddr()
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
	start = c.since()
	client, server, err = starttls.HandoverGuarded(hctx, sess, be.Backend())
	c.event(Event{Stage: StageHandover, Err: err}, start)
	if err != nil {
		be.Close()
		info.Outcome, info.Err = OutcomeHandover, err
		return nil, nil, false
	}
	be.Greeting = nil // relayed or swallowed: not kept for the session's life
	if client == &c.out {
		client = c.out.Conn // the copy counts from here, on the conn itself
	}
	return client, server, true
}

// login runs the login at the edge (Proxy.Login) and returns the
// client conn, with what it pipelined after its login, and the backend
// conn logged in.
func (c *conn) login(ctx context.Context, sess *starttls.Session) (client, server net.Conn, ok bool) {
	p, info := c.p, &c.info
	// The login dialogue's replies are counted as the handover's are.
	c.out = countConn{Conn: sess.Conn, reads: true}
	sess.Conn = &c.out
	defer c.endCount(sess)
	ci := backend.ClientInfo{Src: c.nc.RemoteAddr(), Dst: c.nc.LocalAddr(), TLS: info.TLS, ServerName: sess.ServerName}
	dial := func(ctx context.Context, req *auth.Request, res *auth.Result) (*backend.Conn, error) {
		b := res.Backend
		if b == nil && res.Pool != "" {
			if p.Login.Pools == nil {
				return nil, fmt.Errorf("%w: no pool %q", backend.ErrNoBackend, res.Pool)
			}
			if b = p.Login.Pools(res.Pool); b == nil {
				return nil, fmt.Errorf("%w: no pool %q", backend.ErrNoBackend, res.Pool)
			}
		}
		if b == nil {
			if isNil(p.Backend) {
				return nil, fmt.Errorf("%w: the login names no backend", backend.ErrNoBackend)
			}
			b = p.Backend
		}
		ci.Helo, ci.HeloVerb = req.Helo, "EHLO"
		start := c.since()
		be, err := b.Dial(ctx, ci)
		c.dialed(be, err, start)
		return be, err
	}
	start := c.since()
	out, err := p.Login.Login(ctx, p.Server, sess, auth.Peer{Client: c.nc.RemoteAddr(), Local: c.nc.LocalAddr()}, dial)
	if le, ok := errors.AsType[*auth.LoginError](err); ok {
		info.User = le.User
	}
	if p.OnEvent != nil {
		e := Event{Stage: StageLogin, Err: err, User: info.User}
		if err == nil {
			e.User = out.Request.User
		}
		c.event(e, start)
	}
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrClientQuit):
		info.Outcome = OutcomeClientQuit
		return nil, nil, false
	case errors.Is(err, auth.ErrTooManyFailures):
		info.Outcome, info.Err = OutcomeAuthFailed, err
		return nil, nil, false
	case errors.Is(err, starttls.ErrForeignProtocol):
		info.Outcome, info.Err = OutcomeForeign, err
		return nil, nil, false
	default:
		info.Outcome, info.Err = OutcomeClientError, err
		return nil, nil, false
	}
	info.Member, info.BackendLocal = out.Backend.Member, out.Backend.LocalAddr()
	info.User, info.Recipient = out.Request.User, out.Request.RcptTo
	out.Backend.Greeting = nil
	if b, ok := out.Conn.(interface{ Buffered() int }); ok {
		c.out.in -= int64(b.Buffered()) // read during the login, counted again by the copy
	}
	client = out.Conn
	if client == &c.out {
		client = c.out.Conn // the copy counts from here, on the conn itself
	}
	return client, out.Backend, true
}

// endCount stops counting the handover's writes, gives sess its conn back
// and, for a session that ends before the copy, reports what the client
// received.
func (c *conn) endCount(sess *starttls.Session) {
	c.out.off = true
	sess.Conn = c.out.Conn
	c.info.Stats.ServerToClient = c.out.n
	c.info.Stats.ClientToServer = c.out.in
}

// countConn counts the bytes written through it until off is set: what the
// handover or the login at the edge writes to the client; with reads, also
// the bytes read, which only the login at the edge reads through it. It
// reads nothing ahead, so a bridge handed it (inside a wrapper holding
// client bytes) sees through it.
type countConn struct {
	net.Conn
	n     int64 // bytes written before off
	in    int64 // bytes read before off, when reads
	reads bool
	off   bool // set before the copy starts, so never raced
}

// Write writes p and counts it.
func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if !c.off {
		c.n += int64(n)
	}
	return n, err
}

// Read reads into p and counts what it read.
func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.reads && !c.off {
		c.in += int64(n)
	}
	return n, err
}

// NetConn returns the conn counted.
func (c *countConn) NetConn() net.Conn { return c.Conn }

// Buffered returns 0: a countConn holds no bytes.
func (c *countConn) Buffered() int { return 0 }

// CloseWrite half-closes the conn counted, if it can.
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("mailedge: %T cannot half-close", c.Conn)
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

func (p *Proxy) bridgeOptions(ctx context.Context, proto starttls.Protocol, src netip.Addr) bridge.Options {
	opt := p.Bridge
	// The client's first line after TLS must be mail: an HTTP request or a
	// TLS record there is a cross-protocol attempt (ALPACA), closed before
	// a byte of it reaches the backend.
	opt.RefuseForeign = true
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
	case starttls.SMTP:
	default:
		return opt
	}
	// Every SMTP session gets the inspector: it answers a STARTTLS sent
	// after the handover itself (the client is already on TLS; forwarded,
	// it would start a second negotiation with the backend) and bounds
	// command lines. With InspectSMTP it also enforces the message and
	// recipient rates, before the Check of an inspector in p.Bridge (as
	// Postfix checks its anvil rates before its restrictions), which is
	// copied, never changed.
	in := bridge.SMTPInspector{}
	if opt.SMTP != nil {
		in = *opt.SMTP
	}
	if in.Timeouts == nil && p.Bridge.IdleTimeout == 0 {
		// The protocol's own idle times: RFC 5321's per phase (5 minutes
		// for a command, 10 for the reply to the end of data, ...).
		in.Timeouts = &bridge.SMTPTimeouts{}
	}
	if p.InspectSMTP && p.Limiter != nil {
		in.Check = p.rateCheck(ctx, src, in.Check)
	}
	opt.SMTP = &in
	return opt
}

// rateCheck returns an SMTP inspector Check that counts MAIL and RCPT
// against the Limiter's rates for src, within the session's ctx, then asks
// next (if not nil).
func (p *Proxy) rateCheck(ctx context.Context, src netip.Addr, next func(bridge.SMTPCommand) string) func(bridge.SMTPCommand) string {
	lim := p.Limiter
	return func(c bridge.SMTPCommand) string {
		var err error
		switch c.Verb {
		case "MAIL":
			err = lim.AllowMessage(ctx, src)
		case "RCPT":
			err = lim.AllowRecipient(ctx, src)
		}
		if err != nil {
			p.limited(err)
			if _, ok := errors.AsType[*ratelimit.LimitError](err); !ok {
				// The Store failed (a fleet's Redis, fail-closed): the
				// command is refused, not the session, as Postfix answers
				// a temporary lookup failure.
				return "451 4.3.0 Error: temporary failure, try again later"
			}
			return ratelimit.SMTPReply(err, p.Server.Hostname)
		}
		if next != nil {
			return next(c)
		}
		return ""
	}
}
