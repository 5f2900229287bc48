package pop3client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client is a POP3 client connection. Create one with [Dial] or [NewClient];
// the zero value is not usable.
type Client struct {
	conn net.Conn
	r    *Reader
	tls  bool
}

// Dial connects to addr ("host:port") over TCP and returns a Client. It
// reads nothing; call [Client.Greeting] next.
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// NewClient returns a Client that owns conn. It reads nothing; call
// [Client.Greeting] next. If conn is a *tls.Conn the client treats the
// session as already encrypted (implicit TLS, port 995).
func NewClient(conn net.Conn) *Client {
	_, isTLS := conn.(*tls.Conn)
	return &Client{conn: conn, r: NewReader(conn, 0), tls: isTLS}
}

// Conn returns the connection in use: the *tls.Conn after [Client.StartTLS].
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection without QUIT.
func (c *Client) Close() error { return c.conn.Close() }

// bind applies ctx to the connection for one exchange: its deadline (or none)
// and, on cancellation, a deadline in the past that fails pending I/O. The
// returned func ends the cancellation watch.
func (c *Client) bind(ctx context.Context) func() bool {
	dl, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(dl)
	conn := c.conn
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

// ctxErr reports an I/O error cut short by ctx as the context's error, so
// callers see context.DeadlineExceeded rather than an i/o timeout they did
// not set. The conn's deadline is the context's own, and its timer may fire
// a moment before the context records the fact.
func ctxErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// Greeting reads the server's greeting and returns its text. A -ERR
// greeting is an [*Error].
func (c *Client) Greeting(ctx context.Context) (string, error) {
	defer c.bind(ctx)()
	text, err := c.r.ReadReply()
	return text, ctxErr(ctx, err)
}

// cmd sends one command line and reads its status reply.
func (c *Client) cmd(ctx context.Context, verb string, args ...string) (string, error) {
	line := verb
	for _, a := range args {
		if strings.ContainsAny(a, "\r\n") {
			return "", ErrBadArgument
		}
		line += " " + a
	}
	defer c.bind(ctx)()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		return "", ctxErr(ctx, err)
	}
	text, err := c.r.ReadReply()
	return text, ctxErr(ctx, err)
}

// Capa sends CAPA and returns the capability lines, for example "STLS",
// "USER" and "SASL PLAIN".
func (c *Client) Capa(ctx context.Context) ([]string, error) {
	if _, err := c.cmd(ctx, "CAPA"); err != nil {
		return nil, err
	}
	defer c.bind(ctx)()
	lines, err := c.r.ReadLines()
	return lines, ctxErr(ctx, err)
}

// StartTLS sends STLS and, after +OK, performs the TLS handshake with cfg
// (nil means a zero tls.Config). Bytes the server sent after its +OK and
// before the handshake fail the upgrade with [ErrInjection].
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if c.tls {
		return errors.New("pop3client: TLS already active")
	}
	if _, err := c.cmd(ctx, "STLS"); err != nil {
		return err
	}
	if c.r.Buffered() > 0 {
		return ErrInjection
	}
	if cfg == nil {
		cfg = &tls.Config{}
	}
	tc := tls.Client(c.conn, cfg)
	defer c.bind(ctx)()
	if err := tc.HandshakeContext(ctx); err != nil {
		return ctxErr(ctx, err)
	}
	c.conn, c.r, c.tls = tc, NewReader(tc, 0), true
	return nil
}

// User sends USER name.
func (c *Client) User(ctx context.Context, name string) error {
	_, err := c.cmd(ctx, "USER", name)
	return err
}

// Pass sends PASS password.
func (c *Client) Pass(ctx context.Context, password string) error {
	_, err := c.cmd(ctx, "PASS", password)
	return err
}

// Stat sends STAT and returns the number of messages and their total size
// in octets.
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	text, err := c.cmd(ctx, "STAT")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(text)
}

// parseStat parses the "nn mm" of a STAT reply; trailing text is allowed.
func parseStat(text string) (int, int64, error) {
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("%w: STAT reply %q", ErrMalformed, truncate(text, 64))
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || n < 0 || size < 0 {
		return 0, 0, fmt.Errorf("%w: STAT reply %q", ErrMalformed, truncate(text, 64))
	}
	return n, size, nil
}

// Quit sends QUIT, reads the reply and closes the connection, whatever the
// reply was. The error is the reply's; a failure to close a connection the
// server has already closed is not reported.
func (c *Client) Quit(ctx context.Context) error {
	_, err := c.cmd(ctx, "QUIT")
	_ = c.conn.Close()
	return err
}
