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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/internal/netaddr"
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
	OutcomeReset       Outcome = "reset"        // a peer reset the connection before a QUIT or LOGOUT was answered
	OutcomeLimited     Outcome = "rate_limited" // refused by the Limiter before the dialogue
	OutcomeClientQuit  Outcome = "client_quit"  // QUIT/LOGOUT before reaching a backend
	OutcomeClientError Outcome = "client_error" // dialogue or handshake failed (see Err)
	OutcomeNoBackend   Outcome = "no_backend"   // no member could be dialled; the client was told
	OutcomeHandover    Outcome = "handover"     // the backend refused or broke the handover
	OutcomeCopyError   Outcome = "copy_error"   // the copy ended with an error (see Err)
	OutcomeAuthFailed  Outcome = "auth_failed"  // closed after refused logins (Login set)
	// OutcomeForeign: the client spoke another protocol where a mail
	// command was due (an HTTP request line or a TLS record, the ALPACA
	// attacks' application layer), before TLS or as its first line after
	// it; the connection was closed without an answer and nothing reached
	// the backend.
	OutcomeForeign Outcome = "foreign_protocol"
)

// SessionInfo describes one finished session: what OnSession receives.
type SessionInfo struct {
	Client   net.Addr      // the client: a PROXY header's source behind ProxyListener
	Start    time.Time     // when the connection was accepted
	Duration time.Duration // from Start to the session's end
	Outcome  Outcome
	Err      error             // nil for OK, reset and quit
	Session  *starttls.Session // nil when the dialogue failed
	Member   string            // backend member, "" if none was reached
	// BackendLocal is the proxy's own address on its connection to the
	// member, the client the backend logs: it matches a session in the
	// backend's log to this one. Nil if no member was reached.
	BackendLocal net.Addr
	// User is the user logged in at the edge (Proxy.Login), or the user of
	// the last refused attempt of a session that never logged in, or "". For an
	// inbound SMTP session (auth.Server.Relay) it is empty and Recipient
	// holds the first RCPT TO address the session was routed by.
	User      string
	Recipient string
	// Stats are the copy's, with ServerToClient counting too what the
	// handover wrote to the client before the copy (the backend greeting
	// of an implicit-TLS session, a capability answer, a refusal): every
	// byte the client received after TLS, or after the STARTTLS dialogue
	// of a plain session. The inspector's own SMTP replies are not counted.
	// With Login, ClientToServer counts too what the client sent during
	// the login at the edge (its commands and credentials), and
	// ServerToClient what the proxy answered there.
	Stats    bridge.Stats
	TLS      *tls.ConnectionState // client-side TLS, nil for a plain session
	Implicit bool
	// Passthrough reports a session passed through by Proxy.Passthrough:
	// its TLS is the backend's, so TLS and Session are nil, and Stats
	// count encrypted bytes. ServerName is the name (SNI) of its
	// ClientHello, in lower case.
	Passthrough bool
	ServerName  string
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
	// Backend is where sessions go. With Login it may be nil when every
	// Result names its backend or pool.
	Backend Backend
	// Limiter, if non-nil, admits each source before anything is said and
	// counts in-flight connections (ratelimit). If nil, no limits.
	Limiter *ratelimit.Limiter
	// InspectSMTP enforces the Limiter's message and recipient rates on SMTP
	// sessions through bridge's line inspector. Ignored without a Limiter.
	InspectSMTP bool
	// Bridge configures the copy. If its IdleTimeout is zero, the
	// protocol's own idle time is used: IMAP 31 minutes (RFC 9051
	// autologout is at least 30), POP3 10 minutes (RFC 1939), SMTP RFC
	// 5321 §4.5.3.2's per phase through the inspector's SMTPTimeouts (5
	// minutes for a command, 2 for the reply to DATA, 3 between data
	// blocks, 10 for the reply to the end of data).
	Bridge bridge.Options
	// HandoverTimeout bounds the handover of a plain session, where the
	// proxy talks to the backend before the copy (SMTP: the client's EHLO
	// replayed and its answer read). If zero, 30 seconds. If negative, only
	// ctx bounds it. A TLS session's handover reads nothing from the
	// backend (the Dialer has read the greeting) and needs no bound.
	HandoverTimeout time.Duration
	// Login, if non-nil, takes the client's login at the edge after TLS
	// (package auth): the Authenticator's Result names the backend (its
	// Backend, or Login.Pools(Result.Pool)), Backend above when it names
	// none; the proxy logs in there and then copies. Without Login the
	// session goes to Backend before the client has said who it is, and
	// the backend takes the login.
	Login *auth.Server
	// Passthrough, if non-nil, routes connections on an implicit-TLS
	// listener by their ClientHello before any handshake (SNI
	// passthrough): the ClientHello is read within Server.HandshakeTimeout
	// (at most sni.DefaultMaxHello bytes); when Passthrough returns a
	// Backend, that backend gets the client's bytes unchanged and
	// terminates TLS itself (its members are backend.Dialers with
	// Passthrough set), and the copy neither reads nor guards them. When
	// it returns nil, the connection is handshaken here as without it.
	// PassthroughNames builds one from a name table. Ignored unless
	// Implicit.
	Passthrough func(hello *tls.ClientHelloInfo) Backend
	// OnSession, if non-nil, is called once per connection when it ends.
	OnSession func(SessionInfo)
	// OnLimited, if non-nil, is called with each refusal by the Limiter,
	// connection or SMTP command.
	OnLimited func(error)
	// OnEvent, if non-nil, is called with each stage of each session as it
	// happens (see Stage), on the session's goroutine: it must be quick,
	// and safe for concurrent use. The last event of a session is its
	// StageEnded, after OnSession.
	OnEvent func(Event)

	ids    atomic.Uint64 // the last session ID given, for OnEvent
	mu     sync.Mutex
	serves map[*serving]struct{} // the Serve calls running
	closed bool                  // Shutdown or Close was called
}

// Errors of Serve and ServeConn.
var (
	// ErrConfig is wrapped by the error Serve returns, and ServeConn
	// reports, when a required field of Proxy is missing.
	ErrConfig = errors.New("mailedge: invalid Proxy")
	// ErrProxyClosed is returned by Serve called after Shutdown or Close.
	ErrProxyClosed = errors.New("mailedge: Proxy closed")
)

// validate reports a Proxy that could not serve a single connection, so
// that Serve fails at once instead of every connection failing (or a
// worker panicking) later.
func (p *Proxy) validate() error {
	switch {
	case p.Server == nil:
		return fmt.Errorf("%w: Server is nil", ErrConfig)
	case isNil(p.Backend) && p.Login == nil:
		return fmt.Errorf("%w: Backend is nil", ErrConfig)
	case p.Login != nil && p.Login.Authenticator == nil:
		return fmt.Errorf("%w: Login.Authenticator is nil", ErrConfig)
	case p.Server.TLSConfig == nil && (p.Implicit || p.Server.Mode != starttls.Disallow):
		return fmt.Errorf("%w: Server.TLSConfig is nil", ErrConfig)
	}
	return nil
}

// isNil reports a nil Backend, including a nil pointer of the package's
// own Backend types.
func isNil(b Backend) bool {
	switch b := b.(type) {
	case nil:
		return true
	case *backend.Pool:
		return b == nil
	case *backend.Dialer:
		return b == nil
	}
	return false
}

// serving is one running Serve, as Shutdown sees it.
type serving struct {
	l      net.Listener
	cancel context.CancelFunc // cuts its sessions
	done   chan struct{}      // closed when Serve returns
}

// Serve accepts connections on l and serves each until l is closed, ctx is
// done (which closes l) or Shutdown or Close is called; it then waits for
// the sessions it started, which end on their own, when ctx is done, or
// when Shutdown's context is. Serve returns nil then, an error wrapping
// ErrConfig at once if a required field is missing, ErrProxyClosed after
// Shutdown, or the listener's error. It always closes l. Serve may be
// called for several listeners at once; each waits only for its own
// sessions.
//
// Idle sessions are parked in Bridge.Poller, or in a Poller of Serve's own
// when that is nil, so that a session waiting for its next command holds
// no goroutine (see bridge.Poller).
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	if err := p.validate(); err != nil {
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &serving{l: l, cancel: cancel, done: make(chan struct{})}
	if !p.track(s) {
		l.Close()
		return ErrProxyClosed
	}
	defer p.untrack(s) // last: after every session has ended
	poller := p.Bridge.Poller
	if poller == nil {
		poller = new(bridge.Poller)
		defer poller.Close() // after the sessions: deferred calls run last first
	}
	w := &workers{p: p, ctx: ctx, poller: poller, conns: make(chan net.Conn)}
	defer w.sessions.Wait()
	defer w.stop()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	return p.accept(ctx, l, w)
}

// accept is Serve's loop: it hands each connection to a worker until l
// fails for good.
func (p *Proxy) accept(ctx context.Context, l net.Listener, w *workers) error {
	defer l.Close()
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
		w.sessions.Add(1)
		w.serve(c)
	}
}

// track records a starting Serve; it reports false after Shutdown.
func (p *Proxy) track(s *serving) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.serves == nil {
		p.serves = make(map[*serving]struct{})
	}
	p.serves[s] = struct{}{}
	return true
}

// untrack forgets a Serve that is returning and tells Shutdown.
func (p *Proxy) untrack(s *serving) {
	p.mu.Lock()
	delete(p.serves, s)
	p.mu.Unlock()
	close(s.done)
}

// Shutdown stops the Proxy gracefully, as http.Server.Shutdown does: it
// closes the listeners of every Serve call, so no new connection is
// accepted, and waits for their sessions to end on their own. If ctx ends
// first, it cuts the sessions still running (as cancelling Serve's context
// does), waits for them to be gone, and returns ctx's error. Once
// Shutdown has returned, every Serve call has returned too. A Serve called
// after Shutdown returns ErrProxyClosed. Sessions of ServeConn are the
// caller's and are not waited for.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	serves := make([]*serving, 0, len(p.serves))
	for s := range p.serves {
		serves = append(serves, s)
	}
	p.mu.Unlock()
	for _, s := range serves {
		s.l.Close()
	}
	for _, s := range serves {
		select {
		case <-s.done:
		case <-ctx.Done():
			for _, s := range serves {
				s.cancel()
			}
			for _, s := range serves {
				<-s.done
			}
			return ctx.Err()
		}
	}
	return nil
}

// Close stops the Proxy at once: Shutdown with no time for the sessions,
// which are cut. It returns when every Serve call has returned.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Shutdown(ctx)
	return nil
}

// ServeConn serves one client connection to its end, closes it, and
// returns what OnSession also receives. It parks the session in
// Bridge.Poller if that is set. If a required field of the Proxy is
// missing, the connection is closed at once and the SessionInfo's Err
// wraps ErrConfig.
func (p *Proxy) ServeConn(ctx context.Context, conn net.Conn) SessionInfo {
	ended := make(chan SessionInfo, 1)
	p.serve(ctx, conn, p.Bridge.Poller, ended, nil)
	return <-ended
}

// IPOf returns the IP address of a net.Addr without its port, IPv4-mapped
// IPv6 unmapped, or the zero Addr when a has none: the key that
// ratelimit.Limiter.Admit takes, from a conn's RemoteAddr.
func IPOf(a net.Addr) netip.Addr { return netaddr.IP(a) }

// String formats the session for a log line: client, outcome, SNI, backend,
// bytes each way, duration, and the error if any.
func (in SessionInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client=%v outcome=%s", in.Client, in.Outcome)
	if in.TLS != nil {
		fmt.Fprintf(&b, " sni=%q tls=%q", in.TLS.ServerName, tls.VersionName(in.TLS.Version))
	}
	if in.Passthrough {
		fmt.Fprintf(&b, " sni=%q passthrough=true", in.ServerName)
	}
	fmt.Fprintf(&b, " backend=%q in=%d out=%d duration=%v", in.Member, in.Stats.ClientToServer, in.Stats.ServerToClient,
		in.Duration.Round(time.Millisecond))
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
