package starttls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/nbconn"
)

// Server speaks the client-facing half of a mail protocol on a freshly
// accepted connection until the client has switched to TLS (STARTTLS, STLS),
// has declined it (Mode Allow or Disallow), or has quit. It answers only the
// few commands that make sense before TLS; everything else belongs to the
// backend the returned Session is handed to.
//
// The zero value is not usable alone: TLSConfig is required unless Mode is
// Disallow. All other fields have safe zero values. A Server is not changed
// by Serve and may be used by many goroutines at once.
type Server struct {
	// Protocol is the protocol spoken. If zero, SMTP.
	Protocol Protocol
	// Mode is the STARTTLS activation mode. If zero, Require.
	Mode Mode
	// TLSConfig is used for STARTTLS and for ServeTLS. It must hold a
	// certificate (or GetCertificate/GetConfigForClient); it is required
	// unless Mode is Disallow.
	TLSConfig *tls.Config
	// Hostname is the name the server greets with. It must not contain
	// white space or control characters. If empty, "localhost".
	Hostname string
	// Greeting replaces the free text of the greeting: after "220 <host> "
	// (SMTP, where RFC 5321 puts the domain first), after
	// "* OK [CAPABILITY ...] " (IMAP) or after "+OK " (POP3). It must not
	// contain control characters. If empty, "ESMTP ready", "<host> ready" or
	// "<host> POP3 ready".
	Greeting string
	// SMTPExtensions are the EHLO keywords (with parameters, such as
	// "SIZE 35882577" or "AUTH PLAIN LOGIN") advertised besides STARTTLS.
	// Only a plain session (Mode Allow or Disallow) ever acts on them: after
	// STARTTLS the client must issue EHLO again (RFC 3207 §4.2) and the
	// backend answers it. If nil, PIPELINING, SIZE, 8BITMIME and
	// ENHANCEDSTATUSCODES. An empty non-nil slice advertises none.
	SMTPExtensions []string
	// IMAPCapabilities are capability atoms advertised besides IMAP4rev1,
	// STARTTLS and LOGINDISABLED. As with SMTPExtensions only a plain session
	// acts on them (RFC 9051 §6.2.1: capabilities are re-read after
	// STARTTLS). If nil, IDLE, NAMESPACE, UIDPLUS and UNSELECT. An empty
	// non-nil slice advertises none.
	IMAPCapabilities []string
	// POP3Capabilities are CAPA lines advertised besides STLS, USER (when
	// plain login is allowed), RESP-CODES and AUTH-RESP-CODE. If nil, TOP,
	// UIDL and PIPELINING. An empty non-nil slice advertises none.
	POP3Capabilities []string
	// Timeout bounds the whole dialogue before the TLS handshake, from the
	// first byte of the greeting; as one deadline for reads and writes it is
	// also the longest a single command is awaited. If zero or negative,
	// 5 minutes (RFC 5321 §4.5.3.2 initial and command timeouts).
	Timeout time.Duration
	// HandshakeTimeout bounds the TLS handshake, counted from the go-ahead
	// reply (or, for ServeTLS, from the call). If zero or negative, 15
	// seconds.
	HandshakeTimeout time.Duration
	// MaxLineLength is the longest command line accepted, counting its CRLF.
	// A longer line gets the protocol's error and counts as a bad command.
	// If zero or negative, 512 for SMTP (RFC 5321 §4.5.3.1.4), 255 for POP3
	// (RFC 2449 §4) and 8192 for IMAP (RFC 7162 §4 recommends at least 8192).
	MaxLineLength int
	// MaxErrors is the number of bad commands (unknown, malformed, too long
	// or refused before TLS) after which the server answers with the
	// protocol's closing reply (SMTP 421, IMAP "* BYE", POP3 "-ERR") and
	// Serve fails with ErrTooManyErrors, as nginx's max_errors. If zero, 5.
	// If negative, no limit.
	MaxErrors int
	// MaxCommands is the number of commands accepted before TLS; the next
	// one is answered with the closing reply and Serve fails with
	// ErrTooManyErrors. If zero, 100. If negative, no limit.
	MaxCommands int
}

const (
	defaultTimeout          = 5 * time.Minute
	defaultHandshakeTimeout = 15 * time.Second
	defaultMaxErrors        = 5
	defaultMaxCommands      = 100
)

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return defaultTimeout
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return defaultHandshakeTimeout
}

func (s *Server) hostname() string {
	if s.Hostname != "" {
		return s.Hostname
	}
	return "localhost"
}

// LineLimit returns the longest command line the Server accepts, counting
// its CRLF: MaxLineLength, or the protocol's default when that is zero or
// negative. Package auth reads the login dialogue with the same limit.
func (s *Server) LineLimit() int { return s.maxLineLength() }

func (s *Server) maxLineLength() int {
	if s.MaxLineLength > 0 {
		return s.MaxLineLength
	}
	switch s.Protocol {
	case POP3:
		return 255
	case IMAP:
		return 8192
	}
	return 512
}

// limit maps a configured count to its effective value: 0 for no limit.
func limit(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// validate rejects configurations that would put malformed bytes on the
// wire or cannot work at all.
func (s *Server) validate() error {
	switch s.Protocol {
	case SMTP, IMAP, POP3:
	default:
		return fmt.Errorf("starttls: unknown Server.Protocol %d", int(s.Protocol))
	}
	if s.Mode != Disallow && s.TLSConfig == nil {
		return fmt.Errorf("starttls: Server.TLSConfig is nil with Mode %v", s.Mode)
	}
	if strings.ContainsFunc(s.Hostname, isSpaceOrCtl) {
		return fmt.Errorf("starttls: invalid Server.Hostname %q", s.Hostname)
	}
	if strings.ContainsFunc(s.Greeting, isCtl) {
		return fmt.Errorf("starttls: invalid Server.Greeting %q", s.Greeting)
	}
	for _, list := range [][]string{s.SMTPExtensions, s.IMAPCapabilities, s.POP3Capabilities} {
		for _, v := range list {
			if v == "" || strings.ContainsFunc(v, isCtl) {
				return fmt.Errorf("starttls: invalid capability %q", v)
			}
		}
	}
	for _, v := range s.IMAPCapabilities {
		if strings.ContainsFunc(v, isSpaceOrCtl) {
			return fmt.Errorf("starttls: invalid IMAP capability %q", v)
		}
	}
	return nil
}

func isCtl(r rune) bool        { return r < 0x20 || r == 0x7f }
func isSpaceOrCtl(r rune) bool { return r <= 0x20 || r == 0x7f }

// Serve greets the client on conn, a plain connection just accepted, and
// runs the pre-TLS dialogue of s.Protocol until one of:
//   - the client issued STARTTLS/STLS and the TLS handshake succeeded:
//     the Session holds the *tls.Conn, TLS is true;
//   - in Mode Allow or Disallow, the client sent a command that belongs to
//     the backend (SMTP MAIL/AUTH/..., IMAP LOGIN/..., POP3 USER/...): the
//     Session holds conn itself, TLS is false, and Pending holds that
//     command line and every byte the client pipelined after it, which
//     Serve read but did not answer;
//   - an error. ErrClientQuit after QUIT/LOGOUT was answered;
//     ErrTooManyErrors, ErrLineTooLong after the protocol's closing reply;
//     ErrInjection when the client sent bytes after its STARTTLS line (not
//     answered); the context's error when ctx ended; or an I/O or handshake
//     error. Nothing is written on a timeout.
//
// On success the Session owns conn and conn has no deadline set. On error
// Serve does not close conn: the caller does. Serve sets conn's deadlines
// while it runs (Timeout, then HandshakeTimeout), and cancelling ctx makes
// the pending read or write fail at once.
func (s *Server) Serve(ctx context.Context, conn net.Conn) (*Session, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s.guard(ctx, conn, time.Now().Add(s.timeout()), func() (*Session, error) {
		d := newDialogue(ctx, s, conn)
		defer bufpool.Put(d.br) // everything kept from it was copied out
		return d.run()
	})
}

// ServeTLS runs the TLS handshake on conn, a connection accepted on an
// implicit-TLS port (465, 993, 995), within HandshakeTimeout. Nothing is
// written before the handshake: the returned Session has Implicit set and the
// client has not been greeted. Ownership and errors are as for Serve.
func (s *Server) ServeTLS(ctx context.Context, conn net.Conn) (*Session, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if s.TLSConfig == nil {
		return nil, errors.New("starttls: Server.TLSConfig is nil")
	}
	return s.guard(ctx, conn, time.Now().Add(s.handshakeTimeout()), func() (*Session, error) {
		sess, err := s.tlsHandshake(conn)
		if err != nil {
			// No STARTTLS on this port: the error must not say so.
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		sess.Implicit = true
		return sess, nil
	})
}

// guard runs fn with conn's deadline at deadline and a context watcher that
// expires the deadline when ctx ends. The watcher (context.AfterFunc) is
// always stopped or waited for before guard returns, so no goroutine
// outlives the call and no stale deadline is left on a returned session.
func (s *Server) guard(ctx context.Context, conn net.Conn, deadline time.Time, fn func() (*Session, error)) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("starttls: setting deadline: %w", err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		_ = conn.SetDeadline(time.Unix(1, 0)) // in the past: unblock I/O now
	})
	sess, err := fn()
	if !stop() {
		// ctx ended while fn ran: even a success is void, its deadline gone.
		<-fired
		if err == nil {
			return nil, fmt.Errorf("starttls: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("starttls: %w: %w", context.Cause(ctx), err)
	}
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("starttls: clearing deadline: %w", err)
	}
	return sess, nil
}

// handshake runs the server side of TLS after STARTTLS/STLS; see
// tlsHandshake.
func (s *Server) handshake(conn net.Conn) (*Session, error) {
	sess, err := s.tlsHandshake(conn)
	if err != nil {
		return nil, fmt.Errorf("starttls: TLS handshake: %w", err)
	}
	return sess, nil
}

// tlsHandshake runs the server side of TLS on the raw conn, never on a
// buffered reader, so no plaintext byte can reach the TLS layer or survive
// into the encrypted session. The deadline is the caller's.
func (s *Server) tlsHandshake(conn net.Conn) (*Session, error) {
	// nbconn lets the bridge later read the session without blocking, so
	// an idle session needs no goroutine parked inside crypto/tls; its
	// server side serves a long ClientHello in short records, so that an
	// idle session does not keep a ClientHello-sized read buffer.
	tc := tls.Server(nbconn.WrapServer(conn), s.TLSConfig)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	st := tc.ConnectionState()
	return &Session{
		Protocol:   s.Protocol,
		Conn:       tc,
		TLS:        true,
		State:      st,
		ServerName: st.ServerName,
	}, nil
}

func (s *Server) handler() handler {
	switch s.Protocol {
	case IMAP:
		return imapHandler{}
	case POP3:
		return pop3Handler{}
	}
	return smtpHandler{}
}
