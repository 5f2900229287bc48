package backend

import (
	"bytes"
	"errors"
	"net"
	"sync"

	"github.com/mailedge/mailedge/internal/prefixconn"
	"github.com/mailedge/mailedge/starttls"
)

// Conn is a backend connection in the state its Dialer promises: the
// greeting read (and checked), PROXY header or XCLIENT/ID sent, TLS on if
// the Dialer's Security asks for it, no deadline set. The next bytes on it
// are protocol bytes for the client's first command.
//
// Read through the Conn itself, not the embedded net.Conn, unless Buffered
// reports 0: bytes the backend sent after its greeting were already read
// into a buffer and only Conn.Read returns them.
type Conn struct {
	// Conn is the connection: a *net.TCPConn for Plain, a *tls.Conn for
	// TLS and STARTTLS.
	net.Conn
	// Greeting is the backend's greeting as read, every line with its
	// terminator. After XCLIENT it is the 220 reply to XCLIENT, which Postfix
	// sends as the new greeting. After STARTTLS it is the greeting sent
	// before TLS (an IMAP one may carry a stale [CAPABILITY] code).
	Greeting []byte
	// Upgraded reports that the Dialer did STARTTLS: the backend has seen
	// EHLO/CAPABILITY/CAPA and STARTTLS/STLS, and waits for the first
	// command over TLS.
	Upgraded bool
	// Member names the pool member (its Name, or the Dialer's Addr).
	Member string
	// Identity lists how the client's identity reached the backend, in
	// the order sent: "proxy-v1" or "proxy-v2" (the PROXY header),
	// "xclient" (accepted by the backend), "id" (IMAP ID answered OK).
	// Empty when nothing was sent, or a best-effort identity was not
	// taken (Dialer.IdentityBestEffort).
	Identity []string

	pending prefixconn.Buffer // read past the greeting; served first by Read

	closeOnce sync.Once
	closeErr  error
	release   func() // pool bookkeeping, run once on Close
}

// Compile-time checks of the interfaces the bridge relies on.
var (
	_ net.Conn    = (*Conn)(nil)
	_ closeWriter = (*Conn)(nil)
)

// closeWriter is implemented by *net.TCPConn and *tls.Conn.
type closeWriter interface{ CloseWrite() error }

// Read returns bytes buffered past the greeting first, then reads from the
// connection. It is safe to call concurrently with the other methods.
func (c *Conn) Read(p []byte) (int, error) { return c.pending.Read(p, c.Conn) }

// Unread puts p back in front of the bytes Read returns next. A caller that
// read from c through a buffer of its own (a bufio.Reader over c, for a
// login dialogue after Dial) gives back what its buffer holds past the last
// answer it consumed, so that nothing the backend sent is lost when c is
// handed on: the next Read returns p, then whatever was still buffered,
// then the connection's bytes. c keeps a copy of p. Unread must not run
// concurrently with Read or another Unread.
func (c *Conn) Unread(p []byte) {
	if len(p) == 0 {
		return
	}
	n := c.pending.Len()
	buf := make([]byte, len(p)+n)
	copy(buf, p)
	if n > 0 {
		k, _ := c.pending.Read(buf[len(p):], bytes.NewReader(nil)) // never reads the stream: n bytes are buffered
		buf = buf[:len(p)+k]
	}
	c.pending.Set(buf)
}

// NetConn returns the connection under c, as (*tls.Conn).NetConn does. Read
// and write through it only while Buffered reports 0, and close through c
// so the pool's counts stay right. The bridge uses it to wait for
// readability without a buffer and to splice plain TCP.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Buffered returns how many bytes Read will return without reading from the
// network.
func (c *Conn) Buffered() int { return c.pending.Len() }

// Close closes the connection and, the first time only, tells the pool the
// connection is gone, so least-connections counts stay exact however often
// Close is called.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		if c.release != nil {
			c.release()
		}
	})
	return c.closeErr
}

// CloseWrite shuts down the writing side, so a bridge can pass a
// half-close on: a TCP FIN on a plain connection, a TLS close_notify alert
// on a TLS one (crypto/tls leaves the TCP connection open).
func (c *Conn) CloseWrite() error {
	cw, ok := c.Conn.(closeWriter)
	if !ok {
		return errors.ErrUnsupported
	}
	return cw.CloseWrite()
}

// Backend returns c in the form starttls.Handover takes: c itself as the
// conn (so bytes buffered past the greeting are not lost), its greeting,
// and whether that greeting predates a STARTTLS upgrade.
func (c *Conn) Backend() starttls.Backend {
	return starttls.Backend{Conn: c, Greeting: c.Greeting, Upgraded: c.Upgraded}
}
