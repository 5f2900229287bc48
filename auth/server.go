package auth

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/internal/netaddr"
	"github.com/mailedge/mailedge/internal/prefixconn"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// Server takes a client's login at the edge, after the client side of
// starttls (implicit TLS, or STARTTLS in Mode Require), asks an
// Authenticator who the user is and where the mailbox lives, logs in to
// that backend and hands both connections on for the copy: what nginx's
// mail module and Dovecot's proxy do.
//
// The zero value is not usable: Authenticator is required. Every other
// field has a safe zero value. A Server is not changed by Login and may be
// used by many goroutines at once.
type Server struct {
	// Authenticator decides each login.
	Authenticator Authenticator
	// Mechanisms are the SASL mechanisms offered, among Plain, Login and
	// External. If nil, PLAIN and LOGIN, and EXTERNAL to a client that
	// presented a verified certificate. EXTERNAL is never offered to a
	// client without one.
	Mechanisms []string
	// AllowPlaintext accepts passwords on a session without TLS (a
	// listener in starttls Mode Allow or Disallow). If false, such a
	// session is told that TLS is required (IMAP LOGINDISABLED and
	// [PRIVACYREQUIRED], SMTP 538, POP3 -ERR) and only EXTERNAL, which
	// needs TLS anyway, or NONE would do.
	AllowPlaintext bool
	// Relay makes an SMTP listener one for inbound mail (port 25, nginx's
	// smtp_auth none): AUTH is not offered, and the Authenticator is asked
	// at the first RCPT TO with Mechanism None, MailFrom and RcptTo, so
	// that mail can be routed by recipient. The MAIL and RCPT commands are
	// then replayed to the backend and its answer to RCPT relayed.
	Relay bool
	// MaxAttempts is the number of refused logins after which the session
	// is closed in the protocol's words. If zero, 3. If negative, no limit.
	MaxAttempts int
	// FailureDelay is the wait before the answer to the first refused
	// login; it doubles with each further one, up to 8 times itself
	// (Dovecot's auth_failure_delay is 2 seconds). If zero, 2 seconds.
	// If negative, none.
	FailureDelay time.Duration
	// Limiter, if non-nil, counts login attempts per source and failures
	// per source and per user, and refuses sources and users locked out
	// (ratelimit.Limits AuthRate, LoginFailures, UserLoginFailures).
	Limiter *ratelimit.Limiter
	// AuthTimeout bounds one Authenticator call. If zero, 30 seconds.
	AuthTimeout time.Duration
	// BackendTimeout bounds the dial of the chosen backend and the login
	// there. If zero, 30 seconds.
	BackendTimeout time.Duration
	// Pools resolves Result.Pool. If nil, or if it returns nil, a Result
	// naming a pool is a temporary failure.
	Pools func(name string) Backend
	// OnError, if non-nil, is told of failures that the client sees only
	// as a temporary refusal: an Authenticator error, a backend that could
	// not be dialled or refused the login, a Limiter's Store that failed.
	// A Store error wrapping ratelimit.ErrUnavailable is not passed on: the
	// Store reports its outage itself, once. The errors never hold a
	// password.
	OnError func(error)
}

// Peer is the client connection's addresses, as a Request reports them.
type Peer struct {
	// Client and Local are the client's and the listener's addresses.
	Client, Local net.Addr
}

// Session is a session logged in at its backend: the two connections to
// copy between and what the login decided.
type Session struct {
	// Conn is the client connection. It may be a wrapper that first
	// returns bytes the client sent after its login command; read it, not
	// the conn under it.
	Conn net.Conn
	// Backend is the backend connection, logged in.
	Backend *backend.Conn
	// Request is the login that was allowed, its Password cleared.
	Request Request
	// Result is the Authenticator's answer, its Password cleared.
	Result Result
}

// Defaults of Server.
const (
	defaultMaxAttempts    = 3
	defaultFailureDelay   = 2 * time.Second
	defaultAuthTimeout    = 30 * time.Second
	defaultBackendTimeout = 30 * time.Second
	defaultLoginTimeout   = 5 * time.Minute
	// maxSecretLine bounds a line or literal that carries credentials.
	maxSecretLine = 8192
)

func (s *Server) maxAttempts() int {
	switch {
	case s.MaxAttempts == 0:
		return defaultMaxAttempts
	case s.MaxAttempts < 0:
		return 0
	}
	return s.MaxAttempts
}

func (s *Server) failureDelay(failures int) time.Duration {
	d := s.FailureDelay
	switch {
	case d == 0:
		d = defaultFailureDelay
	case d < 0:
		return 0
	}
	for i := 1; i < failures && i < 4; i++ {
		d *= 2
	}
	return d
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// offers reports whether mech is offered to the session.
func (s *Server) offers(mech string, hasCert bool) bool {
	if mech == External && !hasCert {
		return false
	}
	if s.Mechanisms == nil {
		return mech == Plain || mech == Login || mech == External
	}
	for _, m := range s.Mechanisms {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// mechanisms lists what is offered, in the order PLAIN, LOGIN, EXTERNAL.
func (s *Server) mechanisms(hasCert bool) []string {
	var out []string
	for _, m := range [...]string{Plain, Login, External} {
		if s.offers(m, hasCert) {
			out = append(out, m)
		}
	}
	return out
}

// Errors of Login that callers branch on; see also the package's others.
var (
	// ErrClientQuit reports a client that ended the session with
	// QUIT/LOGOUT before logging in; it is not a failure. It is the same
	// value as starttls.ErrClientQuit.
	ErrClientQuit = starttls.ErrClientQuit
	// ErrTooManyErrors reports a client closed after too many bad
	// commands; the same value as starttls.ErrTooManyErrors.
	ErrTooManyErrors = starttls.ErrTooManyErrors
)

// LoginError is the error of a Login that ended without a login after the
// client had tried at least once: it says who tried, for logs and
// fail2ban-style tools. Err is the reason the session ended; with
// Failures > 0 and a client that went away, errors.Is(err,
// ErrTooManyFailures) holds too, since the client gave up on its refusals.
type LoginError struct {
	// User is the user name of the last attempt ("" for a relay session).
	User string
	// Attempts counts the logins tried, Failures those refused by the
	// Authenticator.
	Attempts, Failures int
	// Err is why the session ended.
	Err error
}

// Error returns Err's text with the attempts counted; never a password.
func (e *LoginError) Error() string {
	return fmt.Sprintf("%v (after %d login attempts, %d refused)", e.Err, e.Attempts, e.Failures)
}

// Unwrap returns Err, and ErrTooManyFailures when the client left after a
// refused login.
func (e *LoginError) Unwrap() []error {
	if e.Failures > 0 && !errors.Is(e.Err, ErrTooManyFailures) && !errors.Is(e.Err, ErrClientQuit) {
		return []error{e.Err, ErrTooManyFailures}
	}
	return []error{e.Err}
}

// Login runs the login dialogue on sess, which ls (the listener's
// starttls.Server: its Hostname, Greeting, capabilities, MaxLineLength,
// MaxErrors and Timeout apply) has just returned, until a login is
// allowed and accepted by its backend. The client is greeted first if
// sess.Implicit; a plain session's Pending command is answered first.
//
// dial reaches the backend of an allowed login; it is called with the
// Request and the Authenticator's Result (whose Backend and Pool it may
// use, or ignore for its own choice). Nil dial means Result.Backend, else
// the pool named by Result.Pool. A backend that cannot be dialled, or
// refuses the login, gives the client a temporary refusal, and it may try
// again.
//
// On success the Session owns sess.Conn and the backend conn, and the
// client has been told it is logged in, in the backend's words where the
// protocol carries them (IMAP's capabilities after login). On error the
// client has been told why where the protocol allows; Login closes neither
// conn, except a backend conn it opened. The errors are ErrClientQuit,
// ErrTooManyErrors, ErrTooManyFailures, starttls.ErrLineTooLong, ctx's, or
// an I/O error; none holds a password.
func (s *Server) Login(ctx context.Context, ls *starttls.Server, sess *starttls.Session, peer Peer, dial func(ctx context.Context, req *Request, res *Result) (*backend.Conn, error)) (*Session, error) {
	if s.Authenticator == nil {
		return nil, errors.New("auth: Server.Authenticator is nil")
	}
	if sess == nil || sess.Conn == nil {
		return nil, errors.New("auth: no session")
	}
	d := newDialogue(ctx, s, ls, sess, peer, dial)
	defer d.release()
	conn := sess.Conn
	if err := conn.SetDeadline(time.Now().Add(d.timeout)); err != nil {
		return nil, fmt.Errorf("auth: setting deadline: %w", err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = conn.SetDeadline(time.Unix(1, 0))
	})
	out, err := d.run()
	if !stop() {
		<-fired
		if err == nil {
			out.Backend.Close()
			out = nil
			err = fmt.Errorf("auth: %w", context.Cause(ctx))
		}
	}
	if err != nil {
		if d.attempts > 0 {
			err = &LoginError{User: d.lastUser, Attempts: d.attempts, Failures: d.failures, Err: err}
		}
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		out.Backend.Close()
		return nil, fmt.Errorf("auth: clearing deadline: %w", err)
	}
	return out, nil
}

// handler is one protocol's half of the login dialogue.
type handler interface {
	// greet appends the greeting of an implicit-TLS session.
	greet(d *dialogue)
	// handle answers one command line (without CRLF); done reports a
	// session logged in.
	handle(d *dialogue, line []byte) (done bool)
	// closing returns the reply sent before the session is closed.
	closing(d *dialogue, reason string) string
	// tooLong returns the reply to an over-long line.
	tooLong(d *dialogue) string
}

// dialogue is one login conversation.
type dialogue struct {
	ctx     context.Context
	s       *Server
	ls      *starttls.Server
	sess    *starttls.Session
	peer    Peer
	dial    func(ctx context.Context, req *Request, res *Result) (*backend.Conn, error)
	h       handler
	in      *prefixconn.Conn // the client conn, reading sess.Pending first
	br      *bufio.Reader
	out     []byte
	timeout time.Duration
	maxLine int
	maxErrs int
	errs    int
	cmds    int

	attempts int    // logins tried
	failures int    // logins refused
	lastUser string // the user of the last attempt
	err      error  // set to end the dialogue after the pending replies
	done     *Session

	cert *x509.Certificate // the client's verified certificate
	helo string            // SMTP
}

func newDialogue(ctx context.Context, s *Server, ls *starttls.Server, sess *starttls.Session, peer Peer, dial func(context.Context, *Request, *Result) (*backend.Conn, error)) *dialogue {
	if ls == nil {
		ls = &starttls.Server{Protocol: sess.Protocol}
	}
	d := &dialogue{
		ctx: ctx, s: s, ls: ls, sess: sess, peer: peer, dial: dial,
		in:      prefixconn.New(sess.Conn, sess.Pending),
		out:     make([]byte, 0, 512),
		timeout: orDefault(ls.Timeout, defaultLoginTimeout),
		maxLine: ls.LineLimit(),
		maxErrs: ls.MaxErrors,
	}
	if !sess.TLS {
		d.helo = sess.Helo // after STARTTLS the client must say EHLO again
	}
	sess.Pending = nil
	if d.dial == nil {
		d.dial = s.dialResult
	}
	d.br = bufpool.Get(d.in, bufpool.Small)
	switch {
	case d.maxErrs == 0:
		d.maxErrs = 5
	case d.maxErrs < 0:
		d.maxErrs = 0
	}
	if sess.TLS && len(sess.State.VerifiedChains) > 0 && len(sess.State.VerifiedChains[0]) > 0 {
		d.cert = sess.State.VerifiedChains[0][0]
	}
	switch sess.Protocol {
	case starttls.IMAP:
		d.h = &imapHandler{}
	case starttls.POP3:
		d.h = &pop3Handler{}
	default:
		d.h = &smtpHandler{}
	}
	return d
}

func (d *dialogue) release() {
	if d.br != nil {
		bufpool.Put(d.br)
		d.br = nil
	}
}

func (d *dialogue) hostname() string {
	if d.ls.Hostname != "" {
		return d.ls.Hostname
	}
	return "localhost"
}

// run greets an implicit session and answers commands until the login is
// done or the dialogue ends.
func (d *dialogue) run() (*Session, error) {
	if d.sess.Implicit {
		d.h.greet(d)
	}
	for {
		if err := d.flushIfIdle(); err != nil {
			return nil, err
		}
		if d.cmds == 0 && mailwire.StartsWithTLSRecord(d.br) {
			return nil, d.foreign("a TLS record")
		}
		raw, err := mailwire.ReadLine(d.br, d.maxLine)
		if err == nil && mailwire.IsHTTPRequest(raw) {
			return nil, d.foreign("an HTTP request")
		}
		if err != nil {
			if mailwire.Resynced(err) {
				d.bad(d.h.tooLong(d))
				if d.err != nil {
					return nil, d.finish(d.err)
				}
				continue
			}
			if errors.Is(err, mailwire.ErrLineTooLong) {
				d.reply(d.h.closing(d, "Line too long"))
				return nil, d.finish(err)
			}
			return nil, fmt.Errorf("auth: reading command: %w", err)
		}
		d.cmds++
		done := d.h.handle(d, mailwire.TrimEOL(raw))
		if d.err != nil {
			if d.done != nil {
				d.done.Backend.Close()
				d.done = nil
			}
			return nil, d.finish(d.err)
		}
		if done {
			return d.finishLogin()
		}
	}
}

// foreign ends a dialogue in which the client spoke another protocol (what
// it is): at once and without a reply, not even one owed to a command
// pipelined before, so that nothing the client sent comes back (an IMAP
// BAD would echo the "tag" of an HTTP request line).
func (d *dialogue) foreign(what string) error {
	d.out = d.out[:0]
	return fmt.Errorf("auth: %w: %s", starttls.ErrForeignProtocol, what)
}

// finishLogin writes the success reply and hands the client conn on with
// whatever it pipelined after its login.
func (d *dialogue) finishLogin() (*Session, error) {
	out := d.done
	if err := d.flush(); err != nil {
		out.Backend.Close()
		return nil, err
	}
	var rest []byte
	if n := d.br.Buffered(); n > 0 {
		b, _ := d.br.Peek(n)
		rest = append(rest, b...)
	}
	if n := d.in.Buffered(); n > 0 {
		b := make([]byte, n)
		m, _ := d.in.Read(b) // served from the prefix: never blocks
		rest = append(rest, b[:m]...)
	}
	out.Conn = d.sess.Conn
	if len(rest) > 0 {
		out.Conn = prefixconn.New(d.sess.Conn, rest)
	}
	return out, nil
}

// reply appends one reply line (without its CRLF).
func (d *dialogue) reply(parts ...string) {
	for _, p := range parts {
		d.out = append(d.out, p...)
	}
	d.out = append(d.out, "\r\n"...)
}

// bad appends the reply to a bad command, or the closing reply when it is
// the MaxErrors-th, and marks the dialogue for closing.
func (d *dialogue) bad(reply string) {
	d.errs++
	if d.maxErrs > 0 && d.errs >= d.maxErrs {
		d.reply(d.h.closing(d, "Too many errors"))
		d.err = fmt.Errorf("%w: %d bad commands", ErrTooManyErrors, d.errs)
		return
	}
	d.reply(reply)
}

// quit appends the goodbye and ends the dialogue with ErrClientQuit.
func (d *dialogue) quit(lines ...string) {
	for _, l := range lines {
		d.reply(l)
	}
	d.err = ErrClientQuit
}

func (d *dialogue) flushIfIdle() error {
	if len(d.out) == 0 {
		return nil
	}
	if n := d.br.Buffered(); n > 0 {
		buf, _ := d.br.Peek(n)
		for _, c := range buf {
			if c == '\n' {
				return nil
			}
		}
	}
	return d.flush()
}

func (d *dialogue) flush() error {
	if len(d.out) == 0 {
		return nil
	}
	_, err := d.sess.Conn.Write(d.out)
	d.out = d.out[:0]
	if err != nil {
		return fmt.Errorf("auth: writing reply: %w", err)
	}
	return nil
}

func (d *dialogue) finish(err error) error {
	if werr := d.flush(); werr != nil {
		return fmt.Errorf("%w; %w", err, werr)
	}
	return err
}

// readSecret reads one more line of a SASL exchange or a literal's data,
// after flushing what the client waits for. A line of "*" aborts.
func (d *dialogue) readLine() ([]byte, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	raw, err := mailwire.ReadLine(d.br, maxSecretLine)
	if err != nil {
		if mailwire.Resynced(err) {
			return nil, errSASLTooLong
		}
		return nil, fmt.Errorf("auth: reading: %w", err)
	}
	return mailwire.TrimEOL(raw), nil
}

// verdict is what a login attempt comes to, for the protocol's words.
type verdict struct {
	ok        bool
	up        upstreamReply
	temporary bool
	message   string // the Authenticator's words, sanitised
	smtpCode  string // from the Result, "" or valid
	privacy   bool   // refused because the session has no TLS
}

// baseRequest returns a Request with the session's facts filled in.
func (d *dialogue) baseRequest(mech string) *Request {
	r := &Request{
		Protocol:   d.sess.Protocol,
		Mechanism:  mech,
		Client:     d.peer.Client,
		Local:      d.peer.Local,
		ServerName: d.sess.ServerName,
		ClientCert: d.cert,
		Helo:       d.helo,
	}
	if d.sess.TLS {
		r.TLS = &d.sess.State
	}
	return r
}

func (d *dialogue) onError(err error) {
	if d.s.OnError != nil {
		d.s.OnError(err)
	}
}

// try runs one login: limits, the Authenticator, the delays, the backend
// dial and the backend login. On success d.done is set. A verdict that ends
// the session sets d.err.
func (d *dialogue) try(req *Request) verdict {
	d.attempts++
	req.Attempt = d.attempts
	d.lastUser = req.User
	if (req.Mechanism == Plain || req.Mechanism == Login) && !d.sess.TLS && !d.s.AllowPlaintext {
		return verdict{privacy: true}
	}
	src := netaddr.IP(d.peer.Client)
	if lim := d.s.Limiter; lim != nil {
		if err := lim.AllowLogin(d.ctx, src, req.User); err != nil {
			return d.limited(err)
		}
	}
	res := d.ask(req)
	if res == nil {
		return verdict{temporary: true}
	}
	if !res.OK {
		return d.refused(req, res)
	}
	up, be, err := d.connect(req, res)
	if err != nil {
		d.onError(err)
		if r, ok := errors.AsType[*upstreamRefusal](err); ok && !r.Temporary {
			// The backend checked the password and refused it: a failed
			// login like the Authenticator's own refusal, so an
			// Authenticator that only routes still limits guessing.
			d.failed(req, 0, false)
			return verdict{}
		}
		return verdict{temporary: true}
	}
	clean := *req
	clean.Password = ""
	out := *res
	out.Password = ""
	d.done = &Session{Backend: be, Request: clean, Result: out}
	return verdict{ok: true, up: up}
}

// ask asks the Authenticator about req within AuthTimeout. A failure (an
// error, or no Result) goes to OnError and returns nil: no decision.
func (d *dialogue) ask(req *Request) *Result {
	ctx, cancel := context.WithTimeout(d.ctx, orDefault(d.s.AuthTimeout, defaultAuthTimeout))
	defer cancel()
	res, err := d.s.Authenticator.Authenticate(ctx, req)
	if err == nil && res == nil {
		err = errors.New("nil Result")
	}
	if err != nil {
		d.onError(fmt.Errorf("%w: %w", ErrAuthService, err))
		return nil
	}
	return res
}

// limited answers a login the Limiter refused, by the kind of refusal: a
// locked-out source or user, or a denied source, ends the session; an
// auth rate over its limit, or a Store that failed, is a temporary refusal
// the client may retry later on the same session.
func (d *dialogue) limited(err error) verdict {
	le, ok := errors.AsType[*ratelimit.LimitError](err)
	switch {
	case !ok:
		if !errors.Is(err, ratelimit.ErrUnavailable) { // the Store reports its outage, once
			d.onError(err)
		}
		return verdict{temporary: true}
	case le.Kind == ratelimit.AuthRate:
		return verdict{temporary: true, message: "Too many logins, try again later"}
	case le.Kind == ratelimit.Denied:
		d.err = fmt.Errorf("%w: %w", ErrTooManyFailures, err)
		return verdict{message: "Access denied"}
	}
	d.err = fmt.Errorf("%w: %w", ErrTooManyFailures, err)
	return verdict{temporary: true, message: "Too many failed logins, try again later"}
}

// refused handles an Authenticator's refusal: counts it (unless
// temporary), waits, and decides whether the session goes on.
func (d *dialogue) refused(req *Request, res *Result) verdict {
	v := verdict{temporary: res.Temporary, message: sanitize(res.Message), smtpCode: smtpCode(res.SMTPCode)}
	if res.Temporary {
		if res.Close {
			d.err = fmt.Errorf("%w: refused", ErrTooManyFailures)
		}
		d.pause(res.Wait)
		return v
	}
	d.failed(req, res.Wait, res.Close)
	return v
}

// failed counts a refused login (per session, and per source and user in
// the Limiter), waits the failure delay plus wait, and ends the session
// after MaxAttempts refusals or when closing is asked for.
func (d *dialogue) failed(req *Request, wait time.Duration, close bool) {
	d.failures++
	if lim := d.s.Limiter; lim != nil {
		if err := lim.LoginFailed(d.ctx, netaddr.IP(d.peer.Client), req.User); err != nil && !errors.Is(err, ratelimit.ErrUnavailable) {
			d.onError(err)
		}
	}
	wait += d.s.failureDelay(d.failures)
	if max := d.s.maxAttempts(); close || max > 0 && d.failures >= max {
		d.err = fmt.Errorf("%w: %d refused", ErrTooManyFailures, d.failures)
	}
	d.pause(wait) // also before the last answer: a reconnect is no faster
}

// connect dials the backend of an allowed login and logs in there.
func (d *dialogue) connect(req *Request, res *Result) (upstreamReply, *backend.Conn, error) {
	ctx, cancel := context.WithTimeout(d.ctx, orDefault(d.s.BackendTimeout, defaultBackendTimeout))
	defer cancel()
	be, err := d.dial(ctx, req, res)
	if err != nil {
		return upstreamReply{}, nil, fmt.Errorf("auth: backend: %w", err)
	}
	u := upstream{
		Protocol: d.sess.Protocol,
		User:     req.User,
		Password: string(req.Password),
		AuthzID:  res.AuthzID,
		NoLogin:  res.NoLogin,
		Helo:     d.helo,
	}
	if res.User != "" {
		u.User = res.User
	}
	if res.Password != "" {
		u.Password = string(res.Password)
	}
	if req.Mechanism == External && res.User == "" && res.Password == "" && !res.NoLogin {
		be.Close()
		return upstreamReply{}, nil, fmt.Errorf("%w: EXTERNAL login needs Result.User and Password, or NoLogin", ErrBackendLogin)
	}
	up, err := loginUpstream(ctx, be, u)
	if err != nil {
		be.Close()
		return upstreamReply{}, nil, err
	}
	return up, be, nil
}

// dialResult dials the backend a Result names.
func (s *Server) dialResult(ctx context.Context, req *Request, res *Result) (*backend.Conn, error) {
	b := res.Backend
	if b == nil && res.Pool != "" && s.Pools != nil {
		b = s.Pools(res.Pool)
	}
	if b == nil {
		return nil, fmt.Errorf("%w: no backend for %q", backend.ErrNoBackend, res.Pool)
	}
	return b.Dial(ctx, backend.ClientInfo{Src: req.Client, Dst: req.Local, TLS: req.TLS, ServerName: req.ServerName, Helo: req.Helo, HeloVerb: "EHLO"})
}

// sanitize makes an Authenticator's message one safe line.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// smtpCode returns code if it is "4xx", "5xx", or either with an enhanced
// status code "c.s.d" of the same class, else "".
func smtpCode(code string) string {
	code = strings.TrimSpace(code)
	basic, enh, _ := strings.Cut(code, " ")
	if len(basic) != 3 || (basic[0] != '4' && basic[0] != '5') || basic[1] < '0' || basic[1] > '5' || basic[2] < '0' || basic[2] > '9' {
		return ""
	}
	if enh == "" {
		return basic
	}
	parts := strings.Split(enh, ".")
	if len(parts) != 3 || parts[0] != basic[:1] {
		return ""
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return basic + " " + enh
}
