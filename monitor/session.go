package monitor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// session is one probe's connection, clock and TLS findings. Every probe
// runs as: begin, dial, steps, end.
type session struct {
	ctx      context.Context
	cancel   context.CancelFunc
	start    time.Time
	deadline time.Time
	raw      net.Conn // the TCP connection; closed by end or by ctx
	conn     net.Conn // what the steps talk to: bounded raw, or TLS over it
	stop     func() bool
	dialFn   DialFunc // nil: net.Dialer

	tls     *tls.ConnectionState // set by the handshake's VerifyConnection
	expires time.Time
}

// begin starts a probe: it applies DefaultTimeout when ctx has no deadline.
func begin(ctx context.Context) *session {
	s := &session{start: time.Now()}
	if _, ok := ctx.Deadline(); !ok {
		ctx, s.cancel = context.WithTimeout(ctx, DefaultTimeout)
	}
	s.ctx = ctx
	s.deadline, _ = ctx.Deadline()
	return s
}

// timeout is the probe's time budget for reasons, rounded up to the
// millisecond so a 2 s budget reads "2s" rather than "1.99998s".
func (s *session) timeout() time.Duration {
	d := max(s.deadline.Sub(s.start), 0)
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// dial connects to addr. Cancelling the context closes the connection, and
// every deadline a library sets on it is capped at the context's deadline,
// so no step can outlive the probe.
func (s *session) dial(addr string) *Error {
	fn := s.dialFn
	if fn == nil {
		var d net.Dialer
		fn = d.DialContext
	}
	c, err := fn(s.ctx, "tcp", addr)
	if err != nil {
		if s.ctx.Err() != nil || isTimeout(err) {
			return &Error{Kind: ErrConnect, Reason: fmt.Sprintf("connect: no answer within %s", s.timeout()), Err: err}
		}
		return fail(ErrConnect, err, "connect")
	}
	s.raw = c
	_ = c.SetDeadline(s.deadline)
	s.stop = context.AfterFunc(s.ctx, func() { _ = c.Close() })
	s.conn = boundConn{Conn: c, deadline: s.deadline}
	return nil
}

// end closes the connection and builds the result.
func (s *session) end(e *Error) Result {
	if s.stop != nil {
		s.stop()
	}
	if s.raw != nil {
		_ = s.raw.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	r := Result{OK: e == nil, Latency: time.Since(s.start), At: s.start, Expires: s.expires}
	if e != nil {
		r.Err = e
	}
	if s.tls != nil {
		r.Detail = tlsDetail(s.tls, s.expires, s.start)
	}
	return r
}

// ioFail describes a failed exchange: a timeout or cancellation as such
// (with the budget), anything else with its error text.
func (s *session) ioFail(kind error, what string, err error) *Error {
	switch {
	case errors.Is(s.ctx.Err(), context.Canceled):
		return &Error{Kind: kind, Reason: what + ": probe cancelled", Err: s.ctx.Err()}
	case s.ctx.Err() != nil || isTimeout(err):
		return &Error{Kind: kind, Reason: fmt.Sprintf("%s: no reply within %s", what, s.timeout()), Err: err}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Kind: kind, Reason: what + ": connection closed by server", Err: err}
	}
	return fail(kind, err, what)
}

// greetFail describes a failure to read a greeting: silence is
// "no greeting within <timeout>", the reason the issue asks for.
func (s *session) greetFail(err error) *Error {
	if errors.Is(s.ctx.Err(), context.Canceled) {
		return &Error{Kind: ErrNoGreeting, Reason: "no greeting: probe cancelled", Err: err}
	}
	if s.ctx.Err() != nil || isTimeout(err) {
		return &Error{Kind: ErrNoGreeting, Reason: fmt.Sprintf("no greeting within %s", s.timeout()), Err: err}
	}
	if errors.Is(err, io.EOF) {
		return &Error{Kind: ErrNoGreeting, Reason: "connection closed without greeting", Err: err}
	}
	return fail(ErrNoGreeting, err, "no greeting")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// boundConn caps every deadline set through it at the probe's deadline; a
// zero deadline (none) becomes the probe's. Libraries that set their own
// per-command timeouts (go-smtp: 5 minutes, imapclient: 30 seconds) thus
// cannot extend a probe.
type boundConn struct {
	net.Conn
	deadline time.Time
}

func (c boundConn) bound(t time.Time) time.Time {
	if t.IsZero() || t.After(c.deadline) {
		return c.deadline
	}
	return t
}

// SetDeadline sets the read and write deadlines, capped at the probe's.
func (c boundConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.bound(t)) }

// SetReadDeadline sets the read deadline, capped at the probe's.
func (c boundConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.bound(t)) }

// SetWriteDeadline sets the write deadline, capped at the probe's.
func (c boundConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }

// replayConn hands a library bytes the probe already read (a greeting)
// before the rest of the stream.
type replayConn struct {
	net.Conn
	r io.Reader
}

// Read reads the replayed bytes, then the connection.
func (c replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }
