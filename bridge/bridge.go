package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors Join returns; callers branch on them with errors.Is.
var (
	// ErrIdleTimeout reports a session ended because no byte moved in
	// either direction for Options.IdleTimeout.
	ErrIdleTimeout = errors.New("bridge: idle timeout")
	// ErrMaxDuration reports a session ended by Options.MaxDuration.
	ErrMaxDuration = errors.New("bridge: maximum session duration reached")
)

// defaultIdleTimeout is the idle timeout when Options.IdleTimeout is zero:
// RFC 5321 §4.5.3.2 asks SMTP servers to wait 10 minutes for DATA, the
// longest of the SMTP timers; IMAP callers should pass 30 minutes or more.
const defaultIdleTimeout = 10 * time.Minute

// Options configure one Join. The zero value copies both ways with a
// 10-minute idle timeout, no session cap and no inspection.
type Options struct {
	// IdleTimeout ends the session when no byte has moved in either
	// direction for this long. If zero, 10 minutes. If negative, disabled.
	IdleTimeout time.Duration
	// MaxDuration ends the session this long after Join starts, whatever
	// the traffic. If zero or negative, there is no cap.
	MaxDuration time.Duration
	// SMTP, if non-nil, parses the client-to-server bytes as SMTP
	// commands and checks them (see SMTPInspector). If nil, bytes are
	// copied without looking at them and, when both conns are plain TCP,
	// by splice(2) on Linux.
	SMTP *SMTPInspector
	// Guard, if not GuardNone, keeps an IMAP or POP3 session on the TLS
	// of its handover: STARTTLS is removed from capability answers and a
	// client's STARTTLS/STLS is refused by the backend (see Guard). If
	// zero, bytes are copied without looking at them. Ignored when SMTP is
	// non-nil, which guards SMTP sessions itself.
	Guard Guard
	// RefuseForeign ends the session, forwarding nothing of it, when the
	// client's first bytes are a TLS record or its first line is an HTTP
	// request line (the application layer of the ALPACA attacks, after
	// TLS: a browser made to talk to a mail port through a certificate
	// that also covers a web server). The session's error then wraps
	// ErrForeignProtocol. The first line is held until its end (at most
	// 1 KiB; a longer one is passed on unread), which mail clients send
	// whole. If false, nothing is checked.
	RefuseForeign bool
	// Poller, if non-nil, holds the session's directions while they are
	// idle, so that an idle session keeps no goroutine (see Poller). If
	// nil, each direction waits on a goroutine of its own.
	Poller *Poller
	// Hooks report events as they happen. If zero, nothing is reported.
	Hooks Hooks
}

// Hooks are optional callbacks for metrics and logs. Each may be nil. They
// must be safe for concurrent use: the hooks of different sessions run at
// the same time. HalfClose runs on the copier goroutine of its direction,
// which waits for it. End runs on the goroutine that finishes the session:
// the last copier, the goroutine the session's timer or context watch
// started, or, with a Poller, a goroutine of the session's own that the
// Poller's shared clock or context watch starts for its ending; a slow End
// delays only its own session's return, never another session's timeout.
type Hooks struct {
	// HalfClose is called when the reading side of dir reached end of
	// file and the write side of the other conn was shut down.
	HalfClose func(dir Direction)
	// End is called once, just before Join returns, with its results.
	End func(Stats, error)
}

// idleTimeout returns the effective idle timeout; zero means disabled.
func (o *Options) idleTimeout() time.Duration {
	switch {
	case o.IdleTimeout == 0:
		return defaultIdleTimeout
	case o.IdleTimeout < 0:
		return 0
	}
	return o.IdleTimeout
}

// Direction names one half of a session.
type Direction int

const (
	// ClientToServer is the direction from the client conn to the server conn.
	ClientToServer Direction = iota
	// ServerToClient is the direction from the server conn to the client conn.
	ServerToClient
)

// String returns "client->server" or "server->client".
func (d Direction) String() string {
	if d == ServerToClient {
		return "server->client"
	}
	return "client->server"
}

// End tells how a session ended.
type End int

const (
	// EndClientClosed means the client finished sending first (end of
	// file), and the server then finished too.
	EndClientClosed End = iota + 1
	// EndServerClosed means the server finished sending first, and the
	// client then finished too.
	EndServerClosed
	// EndIdle means nothing moved for Options.IdleTimeout.
	EndIdle
	// EndMaxDuration means Options.MaxDuration elapsed.
	EndMaxDuration
	// EndCanceled means the context passed to Join was done.
	EndCanceled
	// EndError means a read or write failed (a reset, a TLS error).
	EndError
)

// String returns a short lower-case name such as "client closed".
func (e End) String() string {
	switch e {
	case EndClientClosed:
		return "client closed"
	case EndServerClosed:
		return "server closed"
	case EndIdle:
		return "idle timeout"
	case EndMaxDuration:
		return "max duration"
	case EndCanceled:
		return "canceled"
	case EndError:
		return "error"
	}
	return "unknown"
}

// Stats describe a finished session.
type Stats struct {
	// ClientToServer is the number of bytes read from the client.
	ClientToServer int64
	// ServerToClient is the number of bytes read from the server.
	ServerToClient int64
	// Duration is the time from the start of Join to its return.
	Duration time.Duration
	// End tells how the session ended.
	End End
	// SMTP holds the inspector's counters; zero when Options.SMTP is nil.
	SMTP SMTPStats
	// Goodbye reports that the client said goodbye and the server
	// answered it: SMTP QUIT and its 2xx reply, IMAP LOGOUT and its BYE,
	// POP3 QUIT and its +OK. A session that ends in a reset after that
	// ended cleanly (many clients reset right after reading the answer).
	// It is known only with a guard or the SMTP inspector; false without.
	Goodbye bool
	// Unfiltered reports that the POP3 guard met a response it did not
	// expect and stopped filtering the server's responses for the rest of
	// the session (see Guard); client STLS commands were still refused.
	Unfiltered bool
}

// Join copies bytes between client and server in both directions until
// both directions have reached end of file, one fails, the idle timeout or
// maximum duration passes, or ctx is done. When one side's read reaches end
// of file, the write side of the other conn is shut down (CloseWrite, on
// *net.TCPConn, *net.UnixConn, *tls.Conn and any conn that has it) so the
// half-close reaches the other peer.
//
// Join owns both conns: they are closed, and both copier goroutines have
// returned, when Join returns, on every path. The error is nil when both
// sides closed cleanly; otherwise it wraps ErrIdleTimeout, ErrMaxDuration,
// ctx.Err() or the I/O error, and Stats.End says which.
func Join(ctx context.Context, client, server net.Conn, opt Options) (Stats, error) {
	s := newSession(ctx, client, server, &opt)
	s.finished = make(chan joinResult, 1)
	// One copier runs on this goroutine: an idle session then costs one
	// goroutine stack fewer. A copier that fails aborts the session itself,
	// which unblocks the other wherever it runs. With a Poller, the copier
	// may park and return early; the session then ends elsewhere.
	go s.run(&s.dirs[0]) // client->server
	s.run(&s.dirs[1])    // server->client
	r := <-s.finished
	return r.st, r.err
}

// Start is Join without the wait: it returns at once, and the session runs
// on goroutines of its own (with opt.Poller, on the Poller's reused
// runners), or on none while it is parked in opt.Poller.
// opt.Hooks.End is called once, on the goroutine that ends the session,
// with the results Join would return; both conns are closed by then. Start
// owns both conns as Join does.
func Start(ctx context.Context, client, server net.Conn, opt Options) {
	s := newSession(ctx, client, server, &opt)
	if s.poller != nil {
		s.poller.goRun(s, &s.dirs[0]) // on its runners' grown stacks
		s.poller.goRun(s, &s.dirs[1])
		return
	}
	go s.run(&s.dirs[0])
	go s.run(&s.dirs[1])
}

// joinResult is what Join returns.
type joinResult struct {
	st  Stats
	err error
}

// copyResult is what a copier reports when it returns.
type copyResult struct {
	dir Direction
	err error // nil at a clean end of file
}

// session is the shared state of one Join.
type session struct {
	client, server net.Conn
	opt            *Options
	ctx            context.Context
	poller         *Poller       // nil: directions never park
	token          atomic.Uint64 // in poller, once a direction parked; 0 before
	parkAfter      time.Duration
	start          time.Time
	idle           time.Duration
	last           atomic.Int64  // nanoseconds since start of the last activity
	reason         atomic.Int32  // End chosen by abort; 0 while none
	firstEOF       atomic.Int32  // Direction+1 of the first clean end of file; 0 while none
	done           chan struct{} // closed at teardown; nil without an SMTP inspector
	closeOnce      sync.Once
	dirs           [2]direction // in one allocation with the session
	smtp           *smtpSession
	bye            goodbye     // set by the guards and the SMTP inspector
	pop3           *pop3State  // GuardPOP3's; nil without
	resetClient    atomic.Bool // the server reset: so is the client, at close

	// Results, filled in as the directions finish.
	errs      [2]error        // by Direction: nil at a clean end of file
	firstDone atomic.Int32    // Direction+1 of the first to finish; 0 while none
	live      atomic.Int32    // unfinished directions and endings under way; the last out finishes
	finished  chan joinResult // Join's: receives the results; nil for Start

	// Timeouts and cancellation (timers.go): a timer and a context
	// watcher of the session's own, or entries in its Poller's clock and
	// watch list.
	timerMu sync.Mutex
	stopped bool        // finish has begun: no more checks
	timer   *time.Timer // without a Poller
	stopCtx func() bool // without a Poller
	dueAt   int64       // in the Poller's clock: when, on its scale
	heapIdx int         // in the Poller's clock: index in its heap, -1 if not in it
	watch   *ctxWatch   // in the Poller's watch of ctx, if ctx can end
	prev    *session    // in watch's list
	next    *session
}

// newSession sets up the session of one Join or Start and arms its
// context and timers; the caller starts the copiers.
func newSession(ctx context.Context, client, server net.Conn, opt *Options) *session {
	s := &session{
		client: client,
		server: server,
		opt:    opt,
		ctx:    ctx,
		start:  time.Now(),
		idle:   opt.idleTimeout(),
	}
	s.live.Store(2) // the directions; see hold
	if opt.Poller.enabled() {
		s.poller, s.parkAfter = opt.Poller, opt.Poller.parkAfter()
	}
	s.dirs[0] = direction{dir: ClientToServer, src: client, dst: server}
	s.dirs[1] = direction{dir: ServerToClient, src: server, dst: client}
	if opt.SMTP != nil {
		s.done = make(chan struct{}) // only the inspector waits on it
		s.smtp = newSMTPSession(opt.SMTP, client, server, s.done)
		s.smtp.bye = &s.bye
		s.smtp.onPhase = s.rearm
		s.dirs[0].filter = s.smtp.commands
		s.dirs[1].filter = s.smtp.replies
	}
	s.setGuard(opt)
	if opt.RefuseForeign {
		s.dirs[0].filter = &firstLine{next: s.dirs[0].filter, dst: server}
	}
	s.startTimers()
	return s
}

// finishDir ends direction d with err (nil at a clean end of file): it
// passes the half-close on, or aborts the session on an error, and the
// last direction to finish ends the session.
func (s *session) finishDir(d *direction, err error) {
	if d.filter != nil {
		d.filter.closed()
	}
	s.errs[d.dir] = err
	s.firstDone.CompareAndSwap(0, int32(d.dir)+1)
	if err == nil {
		// Record who ended first before passing the half-close on: once
		// the peer sees it, the other direction may finish and report
		// before this goroutine does.
		s.firstEOF.CompareAndSwap(0, int32(d.dir)+1)
		if closeWrite(d.dst) && s.opt.Hooks.HalfClose != nil {
			s.opt.Hooks.HalfClose(d.dir)
		}
	} else {
		if d.dir == ServerToClient && errors.Is(err, syscall.ECONNRESET) {
			// The backend reset: the client sees a reset too, not a clean
			// end it would take for a finished session.
			s.resetClient.Store(true)
		}
		s.abort(EndError) // the first reason wins; unblocks the other copier
	}
	s.release()
}

// finish runs once, on the goroutine of the last direction or ending to
// let go of the session (see release): it stops the timers, closes both
// conns, sets the results, calls Hooks.End and releases Join.
func (s *session) finish() {
	s.stopTimers()
	s.closeBoth(false)
	if s.poller != nil {
		s.poller.unregister(s)
	}
	f := Direction(s.firstDone.Load() - 1)
	first := copyResult{dir: f, err: s.errs[f]}
	second := copyResult{dir: 1 - f, err: s.errs[1-f]}
	st, err := s.result(s.ctx, first, second)
	if s.opt.Hooks.End != nil {
		s.opt.Hooks.End(st, err)
	}
	if s.finished != nil {
		s.finished <- joinResult{st, err}
	}
}

// touch records activity now, and returns now (since the start); one
// atomic store, no deadline change.
func (s *session) touch() time.Duration {
	now := time.Since(s.start)
	s.last.Store(int64(now))
	return now
}

// abort ends the session for reason: the first reason wins, and both conns
// are closed at once so blocked reads and writes return.
func (s *session) abort(reason End) {
	s.reason.CompareAndSwap(0, int32(reason))
	s.closeBoth(true)
	// A parked direction has no goroutine to see the close: end it here.
	for i := range s.dirs {
		if d := &s.dirs[i]; d.state.CompareAndSwap(dirParked, dirDone) {
			s.finishDir(d, net.ErrClosed)
		}
	}
}

// resetOnClose makes the close of c's TCP socket send a reset (SO_LINGER
// 0), through the TLS and wrapper layers over it.
func resetOnClose(c net.Conn) {
	for c != nil {
		switch u := c.(type) {
		case *net.TCPConn:
			_ = u.SetLinger(0)
			return
		case *tls.Conn:
			c = u.NetConn()
		case interface{ NetConn() net.Conn }:
			c = u.NetConn()
		default:
			return
		}
	}
}

// closeBoth closes both conns once. With hard set, a *tls.Conn's socket is
// closed first so that Close does not wait to send close_notify to a peer
// that is not reading.
func (s *session) closeBoth(hard bool) {
	s.closeOnce.Do(func() {
		if s.done != nil {
			close(s.done)
		}
		if s.resetClient.Load() {
			resetOnClose(s.client)
		}
		for _, c := range []net.Conn{s.client, s.server} {
			if hard {
				if u := underlying(c); u != nil {
					u.Close()
				}
			}
			c.Close()
		}
	})
}

// result builds the Stats and error of a finished session.
func (s *session) result(ctx context.Context, first, second copyResult) (Stats, error) {
	st := Stats{
		ClientToServer: s.dirs[0].n.Load(),
		ServerToClient: s.dirs[1].n.Load(),
		Duration:       time.Since(s.start),
	}
	if s.smtp != nil {
		st.SMTP = s.smtp.stats()
	}
	st.Goodbye = s.bye.said()
	st.Unfiltered = s.pop3 != nil && s.pop3.lost()
	var err error
	switch st.End = End(s.reason.Load()); st.End {
	case EndIdle:
		err = ErrIdleTimeout
	case EndMaxDuration:
		err = ErrMaxDuration
	case EndCanceled:
		err = fmt.Errorf("bridge: %w", context.Cause(ctx))
	case EndError:
		r := first
		if r.err == nil {
			r = second
		}
		err = fmt.Errorf("bridge: %s: %w", r.dir, r.err)
	default:
		ended := first.dir
		if f := s.firstEOF.Load(); f != 0 {
			ended = Direction(f - 1)
		}
		st.End = EndClientClosed
		if ended == ServerToClient {
			st.End = EndServerClosed
		}
		if second.err != nil { // the later direction failed after a clean half
			st.End = EndError
			err = fmt.Errorf("bridge: %s: %w", second.dir, second.err)
		}
	}
	return st, err
}
