// Package prefixconn provides a net.Conn whose reads first return bytes
// already read from it (read ahead while parsing a greeting or a command),
// then read from the connection itself, and the buffer of such bytes for
// types that wrap a conn their own way (backend.Conn).
package prefixconn

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Buffer holds bytes read ahead of a stream, served before the stream's
// own. Its zero value is empty and ready; it is safe for concurrent use.
type Buffer struct {
	mu  sync.Mutex
	buf []byte
}

// Set makes p the bytes served first. Buffer takes ownership of p.
func (b *Buffer) Set(p []byte) {
	b.mu.Lock()
	b.buf = p
	b.mu.Unlock()
}

// Read returns buffered bytes first and reads from r once none are left.
func (b *Buffer) Read(p []byte, r io.Reader) (int, error) {
	b.mu.Lock()
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		if len(b.buf) == 0 {
			b.buf = nil // let the array go
		}
		b.mu.Unlock()
		return n, nil
	}
	b.mu.Unlock()
	return r.Read(p)
}

// Len returns how many bytes Read returns before reading from the stream.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// Conn is a net.Conn whose Read yields a prefix first. Writes, deadlines
// and Close go straight to the embedded conn. It is safe for concurrent use
// as a net.Conn is.
type Conn struct {
	net.Conn
	pre Buffer
}

// New returns c reading prefix first. It takes ownership of prefix.
func New(c net.Conn, prefix []byte) *Conn {
	pc := &Conn{Conn: c}
	pc.pre.Set(prefix)
	return pc
}

var _ net.Conn = (*Conn)(nil)

// Read returns the prefix bytes first, then reads from the embedded conn.
func (c *Conn) Read(p []byte) (int, error) { return c.pre.Read(p, c.Conn) }

// Buffered returns how many prefix bytes Read still returns before reading
// from the embedded conn.
func (c *Conn) Buffered() int { return c.pre.Len() }

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
