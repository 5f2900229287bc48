package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/internal/nbconn"
)

// Errors of the backend-facing dialogue that callers may branch on.
var (
	// ErrBadResponse reports a backend reply that does not follow the
	// protocol before TLS: a tagged or garbled greeting, an unexpected
	// untagged response, a continuation request, a reply code out of step,
	// or an IMAP [ALERT] or [REFERRAL] code that must never reach a client.
	ErrBadResponse = errors.New("starttls: malformed or unexpected response from peer")
	// ErrPreAuth reports an IMAP backend that greeted with * PREAUTH: the
	// session is already authenticated in plain text, so STARTTLS is not
	// possible (RFC 9051 section 7.1.4) and the proxy fails closed.
	ErrPreAuth = errors.New("starttls: backend greeted with PREAUTH")
	// ErrConfig reports a Client that cannot verify its peer: no TLSConfig,
	// or no ServerName while certificate verification is on.
	ErrConfig = errors.New("starttls: invalid client configuration")
)

// Client upgrades a connection to a backend mail server with STARTTLS (SMTP,
// RFC 3207), STARTTLS (IMAP, RFC 9051 section 6.2.1) or STLS (POP3, RFC 2595).
// It is the proxy acting as a client; the zero value is not usable because a
// TLSConfig is required. A Client is safe for concurrent use once set up.
type Client struct {
	// Protocol is the protocol spoken by the backend.
	Protocol Protocol
	// TLSConfig configures the handshake. Certificate verification stays on:
	// ServerName must be set unless InsecureSkipVerify is. It is not modified.
	TLSConfig *tls.Config
	// Hostname is the name sent with EHLO (SMTP). If empty, "localhost".
	Hostname string
	// Timeout bounds the whole dialogue including the handshake. If zero,
	// 30 seconds. A deadline on the context passed to Upgrade also applies;
	// the earlier one wins.
	Timeout time.Duration
	// MaxLineLength bounds each line read from the backend, terminator
	// included. If zero, 8192.
	MaxLineLength int
}

// Upgraded is a backend connection after a successful STARTTLS upgrade.
type Upgraded struct {
	// Conn is the TLS connection, handshake done, with no deadline set.
	Conn *tls.Conn
	// Greeting is the backend's greeting as received before TLS, complete
	// lines with their terminators, kept so that it can be replayed to a
	// client (see Backend.Upgraded). It is pre-TLS data: never trust it.
	Greeting []byte
	// Capabilities is what the backend advertised before TLS (EHLO keywords
	// with their parameters, IMAP capability atoms, POP3 CAPA lines). It is
	// informational only: an attacker on the path could have changed it.
	Capabilities []string
}

// Defaults applied by the unexported getters.
const (
	clientDefaultTimeout  = 30 * time.Second
	clientDefaultMaxLine  = 8192
	clientDefaultHostname = "localhost"
	// maxReplyLines bounds the lines of one multi-line reply, so that a
	// backend cannot make the proxy buffer without limit before TLS.
	maxReplyLines = 256
)

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return clientDefaultTimeout
}

func (c *Client) maxLine() int {
	if c.MaxLineLength > 0 {
		return c.MaxLineLength
	}
	return clientDefaultMaxLine
}

func (c *Client) hostname() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	return clientDefaultHostname
}

// backendConn is the pre-TLS state of one Upgrade call: the raw conn and a
// reader over it whose buffer must be empty when the handshake starts.
type backendConn struct {
	conn net.Conn
	br   *bufio.Reader
	max  int
}

// line reads one line with its terminator.
func (b *backendConn) line() ([]byte, error) {
	return mailwire.ReadLine(b.br, b.max)
}

// send writes one command line; cmd has no terminator.
func (b *backendConn) send(cmd string) error {
	_, err := b.conn.Write([]byte(cmd + "\r\n"))
	return err
}

// quiet reports ErrInjection if the backend has sent bytes we did not ask
// for: at the go-ahead this is the response injection attack, earlier it is
// a backend out of lockstep whose next reply could be forged.
func (b *backendConn) quiet(after string) error {
	if n := b.br.Buffered(); n > 0 {
		return fmt.Errorf("%w: %d unsolicited bytes after %s", ErrInjection, n, after)
	}
	return nil
}

// Upgrade speaks the protocol on conn up to the TLS switch, checks that the
// backend offered and accepted STARTTLS, and performs the TLS handshake on
// conn itself (never on a buffered reader). It fails closed: a backend that
// greets with a refusal, hides STARTTLS, refuses it, or sends anything after
// its go-ahead yields an error (ErrRefused, ErrNoStartTLS, ErrInjection,
// ErrPreAuth, ErrBadResponse), never a plain-text session.
//
// Upgrade owns conn for the duration of the call. On success the returned
// Upgraded.Conn wraps conn and has no deadline set. On error Upgrade closes
// conn, since a half-finished dialogue leaves it unusable. Cancelling ctx, or
// reaching Timeout or ctx's deadline, unblocks every read and write.
func (c *Client) Upgrade(ctx context.Context, conn net.Conn) (up *Upgraded, err error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: nil conn", ErrConfig)
	}
	if err := c.check(); err != nil {
		conn.Close()
		return nil, err
	}
	release := guardDeadline(ctx, conn, time.Now().Add(c.timeout()))
	defer func() {
		release()
		if err != nil {
			if cerr := ctxErr(ctx); cerr != nil {
				err = fmt.Errorf("%w (%w)", err, cerr)
			}
			conn.Close()
		}
	}()
	b := &backendConn{conn: conn, br: bufio.NewReader(conn), max: c.maxLine()}
	up = new(Upgraded)
	if err := c.dialogue(b, up); err != nil {
		return nil, fmt.Errorf("starttls: %s backend: %w", c.Protocol, err)
	}
	tc := tls.Client(nbconn.Wrap(unprefixed(conn)), c.TLSConfig) // see Server.handshake
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, handshakeError(err)
	}
	up.Conn = tc
	return up, nil
}

// check validates the configuration before any byte is exchanged.
func (c *Client) check() error {
	switch {
	case c.TLSConfig == nil:
		return fmt.Errorf("%w: TLSConfig is nil", ErrConfig)
	case c.TLSConfig.ServerName == "" && !c.TLSConfig.InsecureSkipVerify:
		return fmt.Errorf("%w: TLSConfig.ServerName is empty and verification is on", ErrConfig)
	case c.Protocol != SMTP && c.Protocol != IMAP && c.Protocol != POP3:
		return fmt.Errorf("%w: unknown protocol %d", ErrConfig, int(c.Protocol))
	case strings.ContainsFunc(c.Hostname, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		// It goes on the EHLO line: a CR or LF would add a command.
		return fmt.Errorf("%w: Hostname %q", ErrConfig, c.Hostname)
	}
	return nil
}

// dialogue runs the protocol's pre-TLS exchange and leaves b positioned
// right after the go-ahead, with nothing buffered.
func (c *Client) dialogue(b *backendConn, up *Upgraded) error {
	var err error
	switch c.Protocol {
	case SMTP:
		err = c.smtp(b, up)
	case IMAP:
		err = imapDialogue(b, up)
	default:
		err = pop3Dialogue(b, up)
	}
	if err != nil {
		return err
	}
	return b.quiet("the go-ahead")
}

// handshakeError classifies a failed handshake. A first record that is not
// TLS means the backend wrote plain text after its go-ahead that arrived too
// late for the buffer check: the same response injection.
func handshakeError(err error) error {
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return fmt.Errorf("starttls: %w: non-TLS bytes %q after the go-ahead: %w", ErrInjection, rhe.RecordHeader[:], err)
	}
	return fmt.Errorf("starttls: TLS handshake with backend: %w", err)
}

// guardDeadline sets conn's deadline to the earlier of limit and ctx's
// deadline, and arranges for ctx's cancellation to expire it at once. The
// returned function stops the watch and clears the deadline; after it
// returns no deadline set here remains on conn.
func guardDeadline(ctx context.Context, conn net.Conn, limit time.Time) (release func()) {
	if d, ok := ctx.Deadline(); ok && d.Before(limit) {
		limit = d
	}
	conn.SetDeadline(limit)
	var mu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			conn.SetDeadline(expiredDeadline)
		}
	})
	return func() {
		stop()
		// Taking mu waits for a cancellation callback already running, so
		// it cannot set a deadline after we cleared it.
		mu.Lock()
		done = true
		mu.Unlock()
		conn.SetDeadline(time.Time{})
	}
}

// ctxErr returns ctx's error, or DeadlineExceeded once its deadline has
// passed: the conn deadline copied from it can fire a moment before the
// context's own timer marks it done.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// expiredDeadline is a deadline in the past that makes pending I/O fail now.
var expiredDeadline = time.Unix(1, 0)

// unprefixed returns the conn under a read-ahead wrapper (backend.Conn,
// prefixconn) once all its read-ahead bytes have been read, so that the
// non-blocking socket can go under the TLS session; conn itself otherwise.
// The dialogue has read them all when it ends quiet.
func unprefixed(conn net.Conn) net.Conn {
	if pc, ok := conn.(interface {
		NetConn() net.Conn
		Buffered() int
	}); ok && pc.Buffered() == 0 {
		return pc.NetConn()
	}
	return conn
}
