// Package prefixconn provides a net.Conn whose reads first return bytes
// already read from it (read ahead while parsing a greeting or a command),
// then read from the connection itself.
package prefixconn

import (
	"fmt"
	"net"
	"sync"
)

// Conn is a net.Conn whose Read yields Prefix first. Writes, deadlines and
// Close go straight to the embedded conn. It is safe for concurrent use as
// a net.Conn is.
type Conn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

// New returns c reading prefix first. It takes ownership of prefix.
func New(c net.Conn, prefix []byte) *Conn { return &Conn{Conn: c, buf: prefix} }

var _ net.Conn = (*Conn)(nil)

// Read returns the prefix bytes first, then reads from the embedded conn.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// Buffered returns how many prefix bytes Read still returns before reading
// from the embedded conn.
func (c *Conn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// NetConn returns the embedded conn. Read through it only when Buffered is
// 0; the bridge uses it to wait for readability without a buffer.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the embedded conn if it supports it (TCP, TLS), so
// that a bridge can pass an end of stream on.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("prefixconn: %T cannot half-close", c.Conn)
}
