package starttls

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/internal/prefixconn"
)

// Backend is the backend side at handover time.
type Backend struct {
	// Conn is ready for protocol bytes: plain, TLS, or after Client.Upgrade.
	// It may be a wrapper that holds buffered bytes internally.
	Conn net.Conn
	// Greeting is the greeting already read from Conn, complete lines with
	// their terminators. If empty, Handover reads the greeting from Conn.
	Greeting []byte
	// Upgraded reports that Greeting was read before a STARTTLS upgrade, so
	// it is stale and untrusted: an IMAP greeting is replayed without its
	// response code ([CAPABILITY ...] or any other).
	Upgraded bool
}

// DefaultFirstCommandTimeout bounds the wait of Handover for a TLS
// client's first command, and for the backend's answer to it, when ctx
// carries no deadline: 10 minutes, the shortest inactivity timer RFC 1939
// allows a POP3 server, and twice the command timeout of RFC 5321 section
// 4.5.3.2.7. A client that says nothing for that long ends the handover
// with an error wrapping os.ErrDeadlineExceeded.
const DefaultFirstCommandTimeout = 10 * time.Minute

// maxHandoverLine bounds each line Handover parses, from either side. A
// longer first client command is forwarded unparsed; a longer backend line
// in a reply Handover must filter is an error.
const maxHandoverLine = 8192

// Handover synchronises the client session and the backend conversation so
// that from then on bytes can be copied both ways unchanged. It returns the
// two conns to copy between; either may be a wrapper that first yields bytes
// already read. It implements the handover table of docs/architecture.md:
//
//   - s.Implicit (the client has not been greeted): the backend greeting is
//     passed on, IMAP [CAPABILITY] codes without STARTTLS and LOGINDISABLED,
//     or without any code if b.Upgraded.
//   - s.TLS after STARTTLS with the proxy: the backend greeting is swallowed.
//   - s.TLS false (a plain client that declined STARTTLS): the greeting is
//     swallowed and, for SMTP, "s.HeloVerb s.Helo" is replayed to the backend
//     and its 250 reply swallowed.
//
// Then the client's first command is looked at (in s.Pending or, when the
// client is on TLS, read from s.Conn). If it asks for capabilities (EHLO,
// CAPABILITY, CAPA), that command alone is forwarded and the backend's
// answer reaches the client without STARTTLS, STLS and LOGINDISABLED.
// Every other byte the client sent (s.Pending, or what it pipelined) is not
// forwarded here: the returned client conn yields it first, in order, so it
// reaches the backend through the copy that follows, with the same checks
// as everything after it (bridge's SMTP inspector and its rate limits). A
// plain session only has its answer filtered when s.Pending holds the whole
// command: Handover never waits for a plain client.
//
// A backend greeting that refuses service (SMTP other than 220, IMAP * BYE,
// POP3 -ERR) or an IMAP * PREAUTH is answered to the client with the
// protocol's own refusal (see Unavailable) and ErrRefused.
//
// With a TLS client (s.TLS or s.Implicit) Handover waits for that first
// command, and then for the backend's answer, until ctx's deadline or, if
// ctx has none, for DefaultFirstCommandTimeout: a client that completes
// the handshake and stays silent cannot hold the handover (a goroutine,
// its line readers, the backend conn) for longer. Applications that copy
// with the bridge's guards should use HandoverGuarded, which never waits
// for the client, so a silent one waits in the copy under its idle timeout
// instead.
//
// Deadlines from ctx apply to both conns during the handover and are cleared
// before it returns. On error Handover closes both conns; on success the
// caller owns the returned ones.
func Handover(ctx context.Context, s *Session, b Backend) (client, server net.Conn, err error) {
	return handoverConns(ctx, s, b, false, DefaultFirstCommandTimeout)
}

// HandoverGuarded is Handover for a copy that removes STARTTLS, STLS and
// LOGINDISABLED from every capability answer itself, as bridge.Join does
// with an SMTPInspector or a Guard, and as mailedge.Proxy always does. It
// never waits for the client's first command: it filters the answer to a
// capability command only when s.Pending holds it, as for a plain session,
// and returns right after the greeting. A client that is slow to speak
// then waits in the copy, under its idle timeout, instead of in the
// handover. Everything else (greetings, the plain SMTP replay, refusals,
// deadlines, ownership) is as for Handover.
func HandoverGuarded(ctx context.Context, s *Session, b Backend) (client, server net.Conn, err error) {
	return handoverConns(ctx, s, b, true, DefaultFirstCommandTimeout)
}

// handoverConns runs a handover. wait bounds the wait for a TLS client's
// first command and the backend's answer when ctx has no deadline.
func handoverConns(ctx context.Context, s *Session, b Backend, guarded bool, wait time.Duration) (client, server net.Conn, err error) {
	if s == nil || s.Conn == nil || b.Conn == nil {
		return nil, nil, fmt.Errorf("%w: Handover needs a session conn and a backend conn", ErrConfig)
	}
	h := &handover{s: s, b: b, waitClient: (s.TLS || s.Implicit) && !guarded}
	var limit time.Time // zero: only ctx bounds the handover
	if _, ok := ctx.Deadline(); !ok && h.waitClient {
		limit = time.Now().Add(wait)
	}
	releaseC := guardDeadline(ctx, s.Conn, limit)
	releaseB := guardDeadline(ctx, b.Conn, limit)
	h.br = bufpool.Get(b.Conn, bufpool.Small)
	defer func() {
		bufpool.Put(h.br) // serverConn copied out what it holds
		releaseC()
		releaseB()
		if err != nil {
			if cerr := ctxErr(ctx); cerr != nil {
				err = fmt.Errorf("%w (%w)", err, cerr)
			} else if !limit.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%w (no first command and answer within %v)", err, wait)
			}
			s.Conn.Close()
			b.Conn.Close()
		}
	}()
	if err := h.run(); err != nil {
		return nil, nil, fmt.Errorf("starttls: %s handover: %w", s.Protocol, err)
	}
	return h.clientConn(), h.serverConn(), nil
}

// handover is the state of one Handover call.
type handover struct {
	s          *Session
	b          Backend
	br         *bufio.Reader // over b.Conn; what it still holds goes to the client
	clientRest []byte        // client bytes read and not forwarded: for the copy
	waitClient bool          // wait for a TLS client's first command
}

// run performs the handover steps in order.
func (h *handover) run() error {
	greeting, err := h.greeting()
	if err != nil {
		return h.refuse(err)
	}
	switch {
	case h.s.Implicit:
		if err := h.toClient(h.replayGreeting(greeting)); err != nil {
			return err
		}
	case !h.s.TLS && h.s.Protocol == SMTP:
		if err := h.replayHelo(); err != nil {
			return err
		}
	}
	return h.firstCommand(h.waitClient)
}

// refuse tells the client the service is unavailable and returns err.
func (h *handover) refuse(err error) error {
	host := h.s.ServerName
	if _, werr := h.s.Conn.Write(Unavailable(h.s.Protocol, host, "")); werr != nil {
		return fmt.Errorf("%w (refusal not delivered: %w)", err, werr)
	}
	return err
}

// backendLine reads one raw line from the backend.
func (h *handover) backendLine() ([]byte, error) {
	return mailwire.ReadLine(h.br, maxHandoverLine)
}

func (h *handover) toClient(p []byte) error {
	_, err := h.s.Conn.Write(p)
	return err
}

func (h *handover) toBackend(p []byte) error {
	_, err := h.b.Conn.Write(p)
	return err
}

// greeting returns the backend greeting, from b.Greeting or read from the
// backend, after checking that it accepts the session.
func (h *handover) greeting() ([]byte, error) {
	next := h.backendLine
	var gr *bufio.Reader
	if len(h.b.Greeting) > 0 {
		gr = bufpool.Get(bytes.NewReader(h.b.Greeting), bufpool.Small)
		defer bufpool.Put(gr) // readGreeting returns copies
		next = func() ([]byte, error) { return mailwire.ReadLine(gr, maxHandoverLine) }
	}
	raw, err := readGreeting(h.s.Protocol, next)
	if err != nil {
		return nil, err
	}
	if gr != nil && gr.Buffered() > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the saved greeting", ErrBadResponse, gr.Buffered())
	}
	return raw, nil
}

// readGreeting reads and judges a greeting: ErrRefused for a refusal or
// PREAUTH, ErrBadResponse for anything that is not a greeting.
func readGreeting(p Protocol, next func() ([]byte, error)) ([]byte, error) {
	switch p {
	case SMTP:
		r, err := readSMTPReply(next)
		if err != nil {
			return nil, fmt.Errorf("greeting: %w", err)
		}
		if r.Code != 220 {
			return nil, fmt.Errorf("%w: greeting %s", ErrRefused, r.String())
		}
		return r.Raw, nil
	case IMAP:
		raw, err := next()
		if err != nil {
			return nil, fmt.Errorf("greeting: %w", err)
		}
		g, err := parseIMAPLine(mailwire.TrimEOL(raw))
		if err != nil {
			return nil, fmt.Errorf("greeting: %w", err)
		}
		err = imapGreetingOK(g, raw)
		switch {
		case errors.Is(err, ErrPreAuth):
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		case g.tag == "*" && g.kind == "OK":
			// [ALERT] and [REFERRAL] from a plain or implicit-TLS backend
			// are its own words; after an upgrade every code is stripped.
			return raw, nil
		}
		return nil, err
	case POP3:
		raw, err := next()
		if err != nil {
			return nil, fmt.Errorf("greeting: %w", err)
		}
		switch mailwire.POP3Status(mailwire.TrimEOL(raw)) {
		case -1:
			return nil, fmt.Errorf("%w: greeting %q", ErrRefused, mailwire.TrimEOL(raw))
		case 0:
			return nil, fmt.Errorf("%w: greeting %q", ErrBadResponse, mailwire.TrimEOL(raw))
		}
		return raw, nil
	}
	return nil, fmt.Errorf("%w: unknown protocol %d", ErrConfig, int(p))
}

// replayGreeting returns the greeting to send to a client that has not been
// greeted, with the IMAP capability code made true for the proxied session.
func (h *handover) replayGreeting(raw []byte) []byte {
	if h.s.Protocol != IMAP {
		return raw
	}
	if h.b.Upgraded {
		return stripIMAPCode(raw)
	}
	return filterIMAPLine(raw)
}

// replayHelo repeats a plain SMTP client's EHLO or HELO to the backend and
// swallows the reply, which the client already had from the proxy.
func (h *handover) replayHelo() error {
	if h.s.HeloVerb == "" {
		return nil
	}
	verb := strings.ToUpper(h.s.HeloVerb)
	if verb != "EHLO" && verb != "HELO" || strings.ContainsAny(h.s.Helo, "\r\n") {
		return fmt.Errorf("%w: cannot replay %q %q", ErrConfig, h.s.HeloVerb, h.s.Helo)
	}
	if err := h.toBackend([]byte(verb + " " + h.s.Helo + "\r\n")); err != nil {
		return err
	}
	r, err := readSMTPReply(h.backendLine)
	if err != nil {
		return fmt.Errorf("reply to replayed %s: %w", verb, err)
	}
	if r.Code != 250 {
		return h.refuse(fmt.Errorf("%w: replayed %s answered %s", ErrRefused, verb, r.String()))
	}
	return nil
}

// clientConn returns the client conn, wrapped if the handover read bytes
// from the client that it did not forward.
func (h *handover) clientConn() net.Conn {
	if len(h.clientRest) == 0 {
		return h.s.Conn
	}
	return prefixconn.New(h.s.Conn, h.clientRest)
}

// serverConn returns the backend conn, wrapped if the handover read bytes
// from it that belong to the client.
func (h *handover) serverConn() net.Conn {
	n := h.br.Buffered()
	if n == 0 {
		return h.b.Conn
	}
	buf, _ := h.br.Peek(n)
	return prefixconn.New(h.b.Conn, bytes.Clone(buf))
}

// prefixConn is a conn whose reads first yield bytes already read: the
// client's unforwarded bytes or the backend's read-ahead.
type prefixConn = prefixconn.Conn

// Unavailable returns the protocol's own "service not available" refusal,
// valid at any point of a session: SMTP "421 4.3.2 hostname text" (RFC 5321
// section 3.8, RFC 3463), IMAP "* BYE [UNAVAILABLE] text" (RFC 5530), POP3
// "-ERR [SYS/TEMP] text" (RFC 3206). hostname is used by SMTP only; if
// empty, "localhost". If text is empty a standard phrase is used. CR, LF
// and other control characters in hostname and text become spaces, so the
// result is always exactly one line. For an unknown protocol it is nil.
func Unavailable(p Protocol, hostname, text string) []byte {
	hostname, text = singleLine(hostname), singleLine(text)
	if text == "" {
		text = "Service not available"
	}
	switch p {
	case SMTP:
		if hostname == "" {
			hostname = clientDefaultHostname
		}
		return []byte("421 4.3.2 " + hostname + " " + text + "\r\n")
	case IMAP:
		return []byte("* BYE [UNAVAILABLE] " + text + "\r\n")
	case POP3:
		return []byte("-ERR [SYS/TEMP] " + text + "\r\n")
	}
	return nil
}

// singleLine replaces control characters with spaces and trims the result.
func singleLine(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}
