package auth

// The backend side of a login: once the Authenticator has allowed a login
// and named a backend, the proxy dials it (backend.Dialer reads the
// greeting) and logs in there with loginUpstream before it splices the
// client and the backend together.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/starttls"
)

// Bounds of the backend login dialogue.
const (
	// upstreamMaxLine bounds each line read from the backend, terminator
	// included, when upstream.MaxLineLength is 0: twice backend.Dialer's
	// greeting bound, since a capability list after login is the longest
	// line of a login (Dovecot's is about 500 octets).
	upstreamMaxLine = bufpool.Large
	// upstreamMaxLines bounds the lines of one SMTP reply or POP3 CAPA
	// answer, and the untagged IMAP answers read while waiting for one
	// tagged answer, as backend.Dialer does.
	upstreamMaxLines = 64
	// upstreamMaxSteps bounds the challenges of one SASL exchange: PLAIN
	// answers one, LOGIN two; anything further is refused as unexpected.
	upstreamMaxSteps = 4
	// upstreamTimeout bounds the dialogue when ctx has no earlier deadline,
	// as backend.Dialer's default HandshakeTimeout does the dial.
	upstreamTimeout = 15 * time.Second
	// smtpMaxCommand is the longest SMTP command line, CRLF included (RFC
	// 5321 §4.5.3.1.4): AUTH PLAIN without its initial response beyond it
	// (RFC 4954 §4).
	smtpMaxCommand = 512
	// pop3MaxCommand is the longest POP3 command line, CRLF included (RFC
	// 2449 §4; RFC 5034 §4 for AUTH's initial response).
	pop3MaxCommand = 255
	// literalMinusMax is the largest non-synchronising literal LITERAL-
	// allows (RFC 7888 §4).
	literalMinusMax = 4096
)

// Errors of the backend login other than a refusal. Each is wrapped
// together with ErrBackendLogin.
var (
	// errUpstreamUnsafe reports a credential or EHLO name holding CR, LF
	// or NUL, refused before anything is sent: such a value could end a
	// command and start another in the backend dialogue.
	errUpstreamUnsafe = errors.New("CR, LF or NUL in a value for the backend")
	// errNoMechanism reports a backend that offers no way of logging in
	// the proxy can use for this login (no PLAIN for a master user, no
	// XCLIENT LOGIN, LOGINDISABLED without AUTH=PLAIN or AUTH=LOGIN), or
	// NoLogin on IMAP or POP3, which have none.
	errNoMechanism = errors.New("no usable login mechanism")
	// errUnexpectedChallenge reports a SASL challenge after the mechanism
	// sent all it has to send.
	errUnexpectedChallenge = errors.New("unexpected SASL challenge")
)

// upstream is the backend side of one login.
type upstream struct {
	Protocol starttls.Protocol
	User     string
	Password string
	// AuthzID, when not empty, logs in with SASL PLAIN as this
	// authorization identity (Dovecot master users); the backend must offer
	// PLAIN.
	AuthzID string
	// NoLogin sends XCLIENT LOGIN=User instead of AUTH. SMTP only; on IMAP
	// and POP3 it fails with errNoMechanism.
	NoLogin bool
	// Helo is the EHLO argument sent to an SMTP backend (the client's
	// EHLO name); if empty, "localhost".
	Helo string
	// MaxLineLength bounds each line read from the backend, terminator
	// included; if 0, 8 KiB.
	MaxLineLength int
}

// upstreamReply is what the client is told of a successful backend login.
type upstreamReply struct {
	// Capabilities: IMAP only, the capabilities after login (the tagged OK's
	// [CAPABILITY ...] code, else an untagged CAPABILITY seen during the login),
	// with STARTTLS, LOGINDISABLED and AUTH= atoms removed; nil if none was sent.
	Capabilities []string
	// Text is the free text of the backend's success reply.
	Text string
}

// upstreamRefusal is a backend that refused the credentials: SMTP 4xx or
// 5xx to AUTH, IMAP NO, POP3 -ERR. It wraps ErrBackendLogin. Any other
// failure of the backend login (a broken answer, an I/O error, the end of
// ctx) is an error wrapping ErrBackendLogin that is not an upstreamRefusal.
type upstreamRefusal struct {
	// Temporary reports a refusal that says to try again later: SMTP 4xx,
	// IMAP [UNAVAILABLE], POP3 [SYS/TEMP], [IN-USE] or [LOGIN-DELAY].
	Temporary bool
	// Text is the backend's free text, without the reply code, enhanced
	// status code or response code; empty if it would show the
	// credentials.
	Text string
}

// Error describes the refusal with the backend's text.
func (e *upstreamRefusal) Error() string {
	how := "refused"
	if e.Temporary {
		how = "temporarily refused"
	}
	return fmt.Sprintf("%v: the backend %s the login: %q", ErrBackendLogin, how, e.Text)
}

// Unwrap returns ErrBackendLogin.
func (e *upstreamRefusal) Unwrap() error { return ErrBackendLogin }

// loginUpstream logs in on be, which has read the backend's greeting
// (be.Greeting; nil with be.Upgraded after STARTTLS), within ctx.
//
// The mechanism is chosen from what the backend advertises: SMTP AUTH
// PLAIN, AUTH LOGIN or XCLIENT LOGIN= after EHLO; IMAP LOGIN, or
// AUTHENTICATE PLAIN or LOGIN when a master user logs in or LOGINDISABLED
// is advertised; POP3 AUTH PLAIN, USER/PASS or AUTH LOGIN after CAPA. A
// refusal of the credentials is an *upstreamRefusal; anything else that
// goes wrong is an error wrapping ErrBackendLogin too. No error shows the
// password or a SASL response.
//
// The dialogue is bounded by ctx and, when ctx has no earlier deadline, by
// 15 seconds; be has no deadline set afterwards. Bytes the backend sent
// after its last answer are given back to be (Conn.Unread), so its next
// Read returns them.
func loginUpstream(ctx context.Context, be *backend.Conn, u upstream) (upstreamReply, error) {
	s := newUpstreamSession(be, u)
	if err := u.check(); err != nil {
		return upstreamReply{}, s.wrap(err)
	}
	if err := ctx.Err(); err != nil {
		return upstreamReply{}, s.wrap(err)
	}
	deadline := time.Now().Add(upstreamTimeout)
	ctxDeadline := false
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline, ctxDeadline = dl, true
	}
	if err := be.SetDeadline(deadline); err != nil {
		return upstreamReply{}, s.wrap(err)
	}
	// Cancellation without a deadline: unblock the I/O at once.
	stop := context.AfterFunc(ctx, func() { be.SetDeadline(time.Unix(1, 0)) })
	s.br = bufpool.Get(be, bufpool.Small)
	rep, err := s.run()
	if n := s.br.Buffered(); n > 0 {
		// Read past the last answer: give it back, so nothing is lost.
		buf, _ := s.br.Peek(n)
		be.Unread(buf) // Unread copies: the reader goes back to the pool
	}
	bufpool.Put(s.br)
	s.br = nil
	if !stop() {
		// The AfterFunc ran or runs: its deadline may land after any reset.
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return upstreamReply{}, s.wrap(err)
	}
	if err != nil {
		if ctxDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return upstreamReply{}, s.wrap(err)
	}
	if err := be.SetDeadline(time.Time{}); err != nil {
		return upstreamReply{}, s.wrap(err)
	}
	return rep, nil
}

// check refuses a value that could break out of a command line, before
// anything is sent (no CRLF injection into the backend dialogue), and
// names the field, never the value.
func (u *upstream) check() error {
	for _, f := range []struct{ name, v string }{
		{"user name", u.User},
		{"password", u.Password},
		{"authorization identity", u.AuthzID},
		{"EHLO name", u.Helo},
	} {
		if strings.ContainsAny(f.v, "\r\n\x00") {
			return fmt.Errorf("%w: in the %s", errUpstreamUnsafe, f.name)
		}
	}
	switch {
	case u.Protocol < starttls.SMTP || u.Protocol > starttls.POP3:
		return fmt.Errorf("%w: unknown protocol %d", errNoMechanism, int(u.Protocol))
	case u.NoLogin && u.Protocol != starttls.SMTP:
		return fmt.Errorf("%w: %v has no login without credentials", errNoMechanism, u.Protocol)
	}
	return nil
}

// upstreamSession is the state of one loginUpstream call.
type upstreamSession struct {
	u       upstream
	be      *backend.Conn
	br      *bufio.Reader
	max     int
	secrets []string // what no error may show: the password and the SASL responses
	tags    int      // IMAP tags used

	// IMAP: the capabilities of the last untagged CAPABILITY read, and
	// whether there was one since the login command was sent.
	untaggedCaps []string
	sawCaps      bool
}

func newUpstreamSession(be *backend.Conn, u upstream) *upstreamSession {
	s := &upstreamSession{u: u, be: be, max: u.MaxLineLength}
	if s.max <= 0 {
		s.max = upstreamMaxLine
	}
	plain := base64.StdEncoding.EncodeToString([]byte(u.AuthzID + "\x00" + u.User + "\x00" + u.Password))
	for _, v := range []string{u.Password, plain, base64.StdEncoding.EncodeToString([]byte(u.Password))} {
		if v == "" {
			continue
		}
		// As %q would show it, too.
		q := strconv.Quote(v)
		s.secrets = append(s.secrets, v, q[1:len(q)-1])
	}
	return s
}

// wrap makes err the error loginUpstream returns: a refusal as it is,
// anything else wrapped with ErrBackendLogin and the protocol.
func (s *upstreamSession) wrap(err error) error {
	if r, ok := err.(*upstreamRefusal); ok {
		return r
	}
	return fmt.Errorf("%w: %v: %w", ErrBackendLogin, s.u.Protocol, err)
}

// leaks reports whether text shows a secret.
func (s *upstreamSession) leaks(text string) bool {
	for _, v := range s.secrets {
		if strings.Contains(text, v) {
			return true
		}
	}
	return false
}

// show quotes what the backend sent for an error message, shortened, or
// withholds it if it shows the credentials (a backend that echoes them).
func (s *upstreamSession) show(b []byte) string {
	b = mailwire.TrimEOL(b)
	q := b
	if len(q) > 120 {
		q = q[:120]
	}
	out := strconv.Quote(string(q))
	if s.leaks(string(b)) || s.leaks(out) {
		return "(withheld: it shows the credentials)"
	}
	return out
}

// text returns the backend's free text for a reply or a refusal: empty if
// it shows the credentials.
func (s *upstreamSession) text(b []byte) string {
	if s.leaks(string(b)) || s.leaks(strconv.Quote(string(b))) {
		return ""
	}
	return string(b)
}

// protocolError reports a backend answer that breaks the protocol.
func (s *upstreamSession) protocolError(what string, answer []byte) error {
	return fmt.Errorf("%w: %s %s", backend.ErrProtocol, what, s.show(answer))
}

func (s *upstreamSession) run() (upstreamReply, error) {
	switch s.u.Protocol {
	case starttls.SMTP:
		return s.smtp()
	case starttls.IMAP:
		return s.imap()
	default:
		return s.pop3()
	}
}

func (s *upstreamSession) write(line string) error {
	_, err := io.WriteString(s.be, line)
	return err
}

func (s *upstreamSession) readLine() ([]byte, error) {
	return mailwire.ReadLine(s.br, s.max)
}

// saslSteps hands out the responses of one SASL exchange: the initial
// response first (sent with the command or at the first challenge), then
// what the mechanism answers to the next challenges.
type saslSteps struct {
	mech    string
	c       sasl.Client
	ir      []byte
	irSent  bool
	answers int // challenges c answers after the initial response
}

// loginPrompt is the challenge go-sasl's LOGIN client answers with the
// password. The prompts of the LOGIN mechanism carry no meaning and servers
// word them differently ("Password:", "password", localised), so every
// second challenge is passed on as this one.
var loginPrompt = []byte("Password:")

func newSASL(c sasl.Client) (*saslSteps, error) {
	mech, ir, err := c.Start()
	if err != nil {
		return nil, err
	}
	st := &saslSteps{mech: mech, c: c, ir: ir}
	if mech == sasl.Login {
		st.answers = 1
	}
	return st, nil
}

// initial returns the initial response and marks it sent.
func (st *saslSteps) initial() []byte {
	st.irSent = true
	return st.ir
}

// next returns the base64 response to the next challenge.
func (st *saslSteps) next() (string, error) {
	if !st.irSent {
		return base64.StdEncoding.EncodeToString(st.initial()), nil
	}
	if st.answers == 0 {
		return "", errUnexpectedChallenge
	}
	st.answers--
	resp, err := st.c.Next(loginPrompt)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(resp), nil
}

// plainClient is SASL PLAIN for the login's credentials.
func (s *upstreamSession) plainClient() sasl.Client {
	return sasl.NewPlainClient(s.u.AuthzID, s.u.User, s.u.Password)
}

// loginClient is SASL LOGIN for the login's credentials.
func (s *upstreamSession) loginClient() sasl.Client {
	return sasl.NewLoginClient(s.u.User, s.u.Password)
}

func containsFold(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

// ---- SMTP (RFC 5321, RFC 4954, Postfix XCLIENT) ----

func (s *upstreamSession) readReply() (mailwire.Reply, error) {
	rp, err := mailwire.ReadReply(s.readLine, upstreamMaxLines)
	if errors.Is(err, mailwire.ErrMalformed) {
		// mailwire's message quotes the line: show it our way instead.
		return rp, s.protocolError("malformed SMTP reply", rp.Raw)
	}
	return rp, err
}

func (s *upstreamSession) smtpCommand(line string) (mailwire.Reply, error) {
	if err := s.write(line + "\r\n"); err != nil {
		return mailwire.Reply{}, err
	}
	return s.readReply()
}

func (s *upstreamSession) ehlo() (mailwire.Reply, error) {
	helo := s.u.Helo
	if helo == "" {
		helo = "localhost"
	}
	rp, err := s.smtpCommand("EHLO " + helo)
	if err != nil {
		return rp, err
	}
	if rp.Code != 250 {
		return rp, s.protocolError("EHLO answered", rp.Raw)
	}
	return rp, nil
}

// smtpKeyword returns the parameters of an EHLO keyword, and whether it
// was advertised.
func smtpKeyword(rp mailwire.Reply, kw string) ([]string, bool) {
	for _, l := range rp.Keywords() {
		if mailwire.KeywordIs([]byte(l), kw) {
			return strings.Fields(l)[1:], true
		}
	}
	return nil, false
}

// smtpAuthMechs returns the SASL mechanisms of an EHLO reply: the AUTH
// keyword's, and those of the "AUTH=" form some servers still send for
// old Outlook clients.
func smtpAuthMechs(rp mailwire.Reply) []string {
	mechs, _ := smtpKeyword(rp, "AUTH")
	for _, l := range rp.Keywords() {
		f := strings.Fields(l)
		if len(f) > 0 && len(f[0]) > 5 && strings.EqualFold(f[0][:5], "AUTH=") {
			mechs = append(mechs, f[0][5:])
			mechs = append(mechs, f[1:]...)
		}
	}
	return mechs
}

func (s *upstreamSession) smtp() (upstreamReply, error) {
	rp, err := s.ehlo()
	if err != nil {
		return upstreamReply{}, err
	}
	if s.u.NoLogin {
		return s.xclientLogin(rp)
	}
	mechs := smtpAuthMechs(rp)
	var c sasl.Client
	switch {
	case s.u.AuthzID != "" && !containsFold(mechs, sasl.Plain):
		return upstreamReply{}, fmt.Errorf("%w: an authorization identity needs AUTH PLAIN, offered: %s", errNoMechanism, s.show([]byte(strings.Join(mechs, " "))))
	case containsFold(mechs, sasl.Plain):
		c = s.plainClient()
	case containsFold(mechs, sasl.Login):
		c = s.loginClient()
	default:
		return upstreamReply{}, fmt.Errorf("%w: neither AUTH PLAIN nor AUTH LOGIN offered, offered: %s", errNoMechanism, s.show([]byte(strings.Join(mechs, " "))))
	}
	st, err := newSASL(c)
	if err != nil {
		return upstreamReply{}, err
	}
	line := "AUTH " + st.mech
	if st.mech == sasl.Plain {
		// RFC 4954 §4: the initial response, unless the line would be too long.
		if ir := line + " " + base64.StdEncoding.EncodeToString(st.ir); len(ir)+2 <= smtpMaxCommand {
			line = ir
			st.initial()
		}
	}
	// LOGIN sends the user name at the first challenge: not every server
	// takes it as an initial response.
	if err := s.write(line + "\r\n"); err != nil {
		return upstreamReply{}, err
	}
	for range upstreamMaxSteps {
		rp, err := s.readReply()
		if err != nil {
			return upstreamReply{}, err
		}
		if rp.Code != 334 {
			return s.smtpResult(rp)
		}
		resp, err := st.next()
		if err != nil {
			return upstreamReply{}, fmt.Errorf("%w: AUTH %s: %w after %s", backend.ErrProtocol, st.mech, err, s.show(rp.Raw))
		}
		if err := s.write(resp + "\r\n"); err != nil {
			return upstreamReply{}, err
		}
	}
	return upstreamReply{}, fmt.Errorf("%w: AUTH %s: more than %d challenges", backend.ErrProtocol, st.mech, upstreamMaxSteps)
}

// smtpResult reads the final reply to AUTH: 235 is success, 4xx a
// temporary refusal, 5xx a refusal (RFC 4954 §6).
func (s *upstreamSession) smtpResult(rp mailwire.Reply) (upstreamReply, error) {
	text := s.text(smtpText(rp))
	switch {
	case rp.Code == 235:
		return upstreamReply{Text: text}, nil
	case rp.Code >= 400 && rp.Code < 500:
		return upstreamReply{}, &upstreamRefusal{Temporary: true, Text: text}
	case rp.Code >= 500:
		return upstreamReply{}, &upstreamRefusal{Text: text}
	}
	return upstreamReply{}, s.protocolError("AUTH answered", rp.Raw)
}

// xclientLogin sends XCLIENT LOGIN= (Postfix's XCLIENT_README), reads the
// new 220 greeting and sends EHLO again, as the new session needs.
func (s *upstreamSession) xclientLogin(rp mailwire.Reply) (upstreamReply, error) {
	attrs, ok := smtpKeyword(rp, "XCLIENT")
	if !ok || !containsFold(attrs, "LOGIN") {
		return upstreamReply{}, fmt.Errorf("%w: %w: XCLIENT LOGIN not advertised", errNoMechanism, backend.ErrIdentity)
	}
	line := "XCLIENT LOGIN=" + backend.XText(s.u.User)
	if len(line)+2 > smtpMaxCommand {
		return upstreamReply{}, fmt.Errorf("%w: %w: user name too long for XCLIENT", errNoMechanism, backend.ErrIdentity)
	}
	rp, err := s.smtpCommand(line)
	if err != nil {
		return upstreamReply{}, err
	}
	if rp.Code != 220 {
		return upstreamReply{}, fmt.Errorf("%w: XCLIENT answered %s", backend.ErrIdentity, s.show(rp.Raw))
	}
	text := s.text(smtpText(rp))
	if _, err := s.ehlo(); err != nil {
		return upstreamReply{}, err
	}
	return upstreamReply{Text: text}, nil
}

// smtpText is the free text of a reply: its lines joined by spaces, each
// without an enhanced status code of the reply's class (RFC 3463).
func smtpText(rp mailwire.Reply) []byte {
	var b []byte
	for i, l := range rp.Lines {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, stripEnhanced(l, rp.Code/100)...)
	}
	return b
}

// stripEnhanced removes a leading "class.subject.detail " from l.
func stripEnhanced(l string, class int) string {
	parts := strings.SplitN(l, " ", 2)
	f := strings.Split(parts[0], ".")
	if len(f) != 3 || f[0] != strconv.Itoa(class) {
		return l
	}
	for _, n := range f[1:] {
		if len(n) == 0 || len(n) > 3 || strings.Trim(n, "0123456789") != "" {
			return l
		}
	}
	if len(parts) == 1 {
		return ""
	}
	return parts[1]
}

// ---- IMAP (RFC 9051, RFC 3501, RFC 4959 SASL-IR, RFC 7888 literals) ----

func (s *upstreamSession) nextTag() string {
	s.tags++
	return "A" + strconv.Itoa(s.tags)
}

// imapAnswer reads up to the tagged answer to tag or, if cont, a
// continuation request. Untagged answers are skipped but for CAPABILITY,
// which is kept; an untagged BYE ends the login. A literal in an answer is
// a protocol error: nothing in a login answer carries one.
func (s *upstreamSession) imapAnswer(tag string, cont bool) (mailwire.Response, []byte, error) {
	for range upstreamMaxLines {
		line, err := s.readLine()
		if err != nil {
			return mailwire.Response{}, nil, err
		}
		r, err := mailwire.ParseResponse(line)
		if err != nil {
			return r, nil, s.protocolError("malformed IMAP answer", line)
		}
		if _, ok := mailwire.ParseLiteral(line); ok && !r.NoLiteral() {
			return r, nil, s.protocolError("IMAP answer with a literal", line)
		}
		switch {
		case r.Continuation():
			if cont {
				return r, line, nil
			}
			return r, nil, s.protocolError("unexpected continuation request", line)
		case string(r.Tag) == tag:
			return r, line, nil
		case !r.Untagged():
			return r, nil, s.protocolError("IMAP answer for another tag", line)
		case r.IsKind("BYE"):
			return r, nil, fmt.Errorf("%w: %s", backend.ErrRefused, s.show(line))
		case r.Caps != nil:
			s.untaggedCaps, s.sawCaps = r.Capabilities(), true
		}
	}
	return mailwire.Response{}, nil, fmt.Errorf("%w: more than %d untagged IMAP answers", backend.ErrProtocol, upstreamMaxLines)
}

// imapText is the free text of a status response: after its code.
func imapText(r mailwire.Response, line []byte) []byte {
	t := mailwire.TrimEOL(line)
	if r.CodeEnd > 0 {
		return t[r.CodeEnd:]
	}
	i := len(r.Tag) + 1 + len(r.Kind) // "tag SP kind"
	if i < len(t) {
		return t[i+1:]
	}
	return nil
}

// imapCaps returns the backend's capabilities before login: the
// greeting's [CAPABILITY] code, unless the greeting predates STARTTLS,
// else the answer to CAPABILITY.
func (s *upstreamSession) imapCaps() ([]string, error) {
	if !s.be.Upgraded {
		if r, err := mailwire.ParseResponse(s.be.Greeting); err == nil && r.IsCode("CAPABILITY") {
			return r.Capabilities(), nil
		}
	}
	tag := s.nextTag()
	if err := s.write(tag + " CAPABILITY\r\n"); err != nil {
		return nil, err
	}
	r, line, err := s.imapAnswer(tag, false)
	if err != nil {
		return nil, err
	}
	if !r.IsKind("OK") {
		return nil, s.protocolError("CAPABILITY answered", line)
	}
	return s.untaggedCaps, nil
}

func (s *upstreamSession) imap() (upstreamReply, error) {
	caps, err := s.imapCaps()
	if err != nil {
		return upstreamReply{}, err
	}
	s.untaggedCaps, s.sawCaps = nil, false
	plain, login := containsFold(caps, "AUTH=PLAIN"), containsFold(caps, "AUTH=LOGIN")
	switch {
	case s.u.AuthzID != "":
		if !plain {
			return upstreamReply{}, fmt.Errorf("%w: an authorization identity needs AUTH=PLAIN", errNoMechanism)
		}
		return s.imapAuthenticate(s.plainClient(), caps)
	case !containsFold(caps, "LOGINDISABLED"):
		return s.imapLogin(caps)
	case plain:
		return s.imapAuthenticate(s.plainClient(), caps)
	case login:
		return s.imapAuthenticate(s.loginClient(), caps)
	}
	return upstreamReply{}, fmt.Errorf("%w: LOGINDISABLED without AUTH=PLAIN or AUTH=LOGIN", errNoMechanism)
}

// imapLogin sends LOGIN with the user name and password as astrings.
// A synchronising literal waits for the backend's continuation request;
// a tagged answer instead ends the login there.
func (s *upstreamSession) imapLogin(caps []string) (upstreamReply, error) {
	tag := s.nextTag()
	pending := tag + " LOGIN"
	for _, v := range []string{s.u.User, s.u.Password} {
		arg, lit, sync := imapAstring(v, caps)
		pending += " " + arg
		if lit == "" {
			continue
		}
		if !sync {
			pending += lit
			continue
		}
		if err := s.write(pending); err != nil {
			return upstreamReply{}, err
		}
		r, line, err := s.imapAnswer(tag, true)
		if err != nil {
			return upstreamReply{}, err
		}
		switch {
		case r.IsKind("NO"):
			return s.imapResult(r, line)
		case r.IsKind("BAD"):
			// The backend refused the literal (too long, or not taken
			// before login): a refusal, as NO is.
			return upstreamReply{}, &upstreamRefusal{Text: s.text(imapText(r, line))}
		case !r.Continuation():
			return upstreamReply{}, s.protocolError("LOGIN answered before the password", line)
		}
		pending = lit
	}
	if err := s.write(pending + "\r\n"); err != nil {
		return upstreamReply{}, err
	}
	r, line, err := s.imapAnswer(tag, false)
	if err != nil {
		return upstreamReply{}, err
	}
	return s.imapResult(r, line)
}

// imapAstring encodes v as an IMAP astring (RFC 9051 §4): an atom, a
// quoted string if v is printable 7-bit, else a literal. For a literal,
// arg is its "{n}" or "{n+}" header with the line's CRLF, lit the data and
// sync whether the header must wait for a continuation request:
// non-synchronising with LITERAL+, or with LITERAL- up to 4096 octets
// (RFC 7888).
func imapAstring(v string, caps []string) (arg, lit string, sync bool) {
	atom, quotable := v != "", true
	for i := 0; i < len(v); i++ {
		c := v[i]
		atom = atom && mailwire.IsAtomChar(c)
		quotable = quotable && c >= 0x20 && c < 0x7f
	}
	switch {
	case atom:
		return v, "", false
	case quotable:
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(v); i++ {
			if v[i] == '"' || v[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[i])
		}
		b.WriteByte('"')
		return b.String(), "", false
	}
	n := strconv.Itoa(len(v))
	if containsFold(caps, "LITERAL+") || containsFold(caps, "LITERAL-") && len(v) <= literalMinusMax {
		return "{" + n + "+}\r\n", v, false
	}
	return "{" + n + "}\r\n", v, true
}

// imapAuthenticate runs AUTHENTICATE with c, with the initial response on
// the command line when the backend offers SASL-IR (RFC 4959).
func (s *upstreamSession) imapAuthenticate(c sasl.Client, caps []string) (upstreamReply, error) {
	st, err := newSASL(c)
	if err != nil {
		return upstreamReply{}, err
	}
	tag := s.nextTag()
	line := tag + " AUTHENTICATE " + st.mech
	if st.mech == sasl.Plain && containsFold(caps, "SASL-IR") {
		ir := base64.StdEncoding.EncodeToString(st.initial())
		if ir == "" {
			ir = "="
		}
		line += " " + ir
	}
	if err := s.write(line + "\r\n"); err != nil {
		return upstreamReply{}, err
	}
	for range upstreamMaxSteps {
		r, line, err := s.imapAnswer(tag, true)
		if err != nil {
			return upstreamReply{}, err
		}
		if !r.Continuation() {
			return s.imapResult(r, line)
		}
		resp, err := st.next()
		if err != nil {
			return upstreamReply{}, fmt.Errorf("%w: AUTHENTICATE %s: %w after %s", backend.ErrProtocol, st.mech, err, s.show(line))
		}
		if err := s.write(resp + "\r\n"); err != nil {
			return upstreamReply{}, err
		}
	}
	return upstreamReply{}, fmt.Errorf("%w: AUTHENTICATE %s: more than %d challenges", backend.ErrProtocol, st.mech, upstreamMaxSteps)
}

// imapResult reads the tagged answer to the login: OK is success, NO a
// refusal (temporary with [UNAVAILABLE], RFC 5530), BAD a protocol error.
func (s *upstreamSession) imapResult(r mailwire.Response, line []byte) (upstreamReply, error) {
	text := s.text(imapText(r, line))
	switch {
	case r.IsKind("OK"):
		caps := r.Capabilities() // the [CAPABILITY] code, if any
		if caps == nil && s.sawCaps {
			caps = s.untaggedCaps
		}
		return upstreamReply{Capabilities: clientCaps(caps), Text: text}, nil
	case r.IsKind("NO"):
		return upstreamReply{}, &upstreamRefusal{Temporary: r.IsCode("UNAVAILABLE"), Text: text}
	case r.IsKind("BAD"):
		return upstreamReply{}, s.protocolError("login answered", line)
	}
	return upstreamReply{}, s.protocolError("unexpected answer to the login", line)
}

// clientCaps is caps without the atoms that mean nothing after login:
// STARTTLS, LOGINDISABLED and AUTH=; nil for nil.
func clientCaps(caps []string) []string {
	if caps == nil {
		return nil
	}
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		if strings.EqualFold(c, "STARTTLS") || strings.EqualFold(c, "LOGINDISABLED") ||
			len(c) >= 5 && strings.EqualFold(c[:5], "AUTH=") {
			continue
		}
		out = append(out, c)
	}
	return out
}

// ---- POP3 (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH, RFC 3206 codes) ----

// pop3Capa sends CAPA and returns its lines; known is false when the
// backend answered -ERR (it predates RFC 2449).
func (s *upstreamSession) pop3Capa() (lines []string, known bool, err error) {
	if err := s.write("CAPA\r\n"); err != nil {
		return nil, false, err
	}
	line, err := s.readLine()
	if err != nil {
		return nil, false, err
	}
	switch mailwire.POP3Status(line) {
	case -1:
		return nil, false, nil
	case 0:
		return nil, false, s.protocolError("CAPA answered", line)
	}
	_, texts, err := mailwire.ReadPOP3Multi(s.readLine, upstreamMaxLines)
	if errors.Is(err, mailwire.ErrMalformed) {
		return nil, false, fmt.Errorf("%w: CAPA answer longer than %d lines", backend.ErrProtocol, upstreamMaxLines)
	}
	return texts, true, err
}

func (s *upstreamSession) pop3() (upstreamReply, error) {
	capa, known, err := s.pop3Capa()
	if err != nil {
		return upstreamReply{}, err
	}
	var mechs []string
	hasSASL := false
	for _, l := range capa {
		if mailwire.KeywordIs([]byte(l), "SASL") {
			mechs, hasSASL = append(mechs, strings.Fields(l)[1:]...), true
		}
	}
	plain := containsFold(mechs, sasl.Plain)
	switch {
	case s.u.AuthzID != "":
		if known && !plain {
			return upstreamReply{}, fmt.Errorf("%w: an authorization identity needs SASL PLAIN", errNoMechanism)
		}
		return s.pop3Auth(s.plainClient())
	case plain:
		return s.pop3Auth(s.plainClient())
	case known && hasSASL && !mailwire.HasKeyword(capa, "USER"):
		if !containsFold(mechs, sasl.Login) {
			return upstreamReply{}, fmt.Errorf("%w: neither USER nor SASL PLAIN or LOGIN offered", errNoMechanism)
		}
		return s.pop3Auth(s.loginClient())
	}
	return s.pop3UserPass()
}

// pop3Command sends line and reads a status line: +OK, -ERR or, if cont,
// a continuation request ("+ " and base64, RFC 5034 §4).
func (s *upstreamSession) pop3Command(line string, cont bool) (status int, answer []byte, err error) {
	if err := s.write(line + "\r\n"); err != nil {
		return 0, nil, err
	}
	answer, err = s.readLine()
	if err != nil {
		return 0, nil, err
	}
	status = mailwire.POP3Status(answer)
	if status == 0 && !(cont && pop3Continuation(answer)) {
		return 0, nil, s.protocolError("unexpected POP3 answer", answer)
	}
	return status, answer, nil
}

// pop3Continuation reports a SASL continuation: "+" alone or "+ " and a
// challenge (RFC 5034 §4), which "+OK" is not.
func pop3Continuation(line []byte) bool {
	t := mailwire.TrimEOL(line)
	return len(t) > 0 && t[0] == '+' && (len(t) == 1 || t[1] == ' ')
}

func (s *upstreamSession) pop3UserPass() (upstreamReply, error) {
	status, answer, err := s.pop3Command("USER "+s.u.User, false)
	if err != nil {
		return upstreamReply{}, err
	}
	if status < 0 {
		return s.pop3Result(answer)
	}
	if _, answer, err = s.pop3Command("PASS "+s.u.Password, false); err != nil {
		return upstreamReply{}, err
	}
	return s.pop3Result(answer)
}

func (s *upstreamSession) pop3Auth(c sasl.Client) (upstreamReply, error) {
	st, err := newSASL(c)
	if err != nil {
		return upstreamReply{}, err
	}
	line := "AUTH " + st.mech
	if st.mech == sasl.Plain {
		if ir := line + " " + base64.StdEncoding.EncodeToString(st.ir); len(ir)+2 <= pop3MaxCommand {
			line = ir
			st.initial()
		}
	}
	for range upstreamMaxSteps {
		status, answer, err := s.pop3Command(line, true)
		if err != nil {
			return upstreamReply{}, err
		}
		if status != 0 {
			return s.pop3Result(answer)
		}
		if line, err = st.next(); err != nil {
			return upstreamReply{}, fmt.Errorf("%w: AUTH %s: %w after %s", backend.ErrProtocol, st.mech, err, s.show(answer))
		}
	}
	return upstreamReply{}, fmt.Errorf("%w: AUTH %s: more than %d challenges", backend.ErrProtocol, st.mech, upstreamMaxSteps)
}

// pop3Result reads the final status line of a login: +OK is success,
// -ERR a refusal, temporary with [SYS/TEMP] (RFC 3206), [IN-USE] or
// [LOGIN-DELAY] (RFC 2449 §8).
func (s *upstreamSession) pop3Result(answer []byte) (upstreamReply, error) {
	t := mailwire.TrimEOL(answer)
	ok := mailwire.POP3Status(t) > 0
	if ok {
		t = t[len("+OK"):]
	} else {
		t = t[len("-ERR"):]
	}
	t = bytes.TrimPrefix(t, []byte(" "))
	var code []byte
	if len(t) > 0 && t[0] == '[' {
		if end := bytes.IndexByte(t, ']'); end > 0 {
			code, t = t[1:end], bytes.TrimPrefix(t[end+1:], []byte(" "))
		}
	}
	text := s.text(t)
	if ok {
		return upstreamReply{Text: text}, nil
	}
	temp := false
	for _, c := range []string{"SYS/TEMP", "IN-USE", "LOGIN-DELAY"} {
		temp = temp || bytes.EqualFold(code, []byte(c))
	}
	return upstreamReply{}, &upstreamRefusal{Temporary: temp, Text: text}
}
