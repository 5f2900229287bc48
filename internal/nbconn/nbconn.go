// Package nbconn provides the socket wrapper that goes under a *tls.Conn so
// that a bridge can read the TLS stream without blocking: with the wrapper
// switched to non-blocking reads, (*tls.Conn).Read returns ErrWouldBlock
// instead of waiting when it needs bytes the socket does not have yet. That
// is the one thing crypto/tls does not tell by itself: whether a record is
// buffered inside the *tls.Conn. After ErrWouldBlock nothing is, so waiting
// for the socket to become readable (without a buffer, without a goroutine
// parked inside crypto/tls) cannot miss data.
//
// crypto/tls treats ErrWouldBlock like a read deadline: a temporary
// net.Error that leaves the connection usable, with the bytes of a partial
// record kept for the next Read. That is undocumented behaviour, so
// TLSSafe checks it once per process with a self-test, and callers read a
// *tls.Conn over a Conn without blocking only while it reports true;
// TestNonblockingTLS is the canary that fails in CI first (see
// docs/go-upgrade.md).
package nbconn

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/mailedge/mailedge/internal/prefixconn"
)

// ErrWouldBlock is returned by Read in non-blocking mode when the socket has
// no bytes queued. It is a net.Error whose Timeout and Temporary report
// true, so crypto/tls keeps the connection usable.
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "nbconn: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Conn is a *net.TCPConn or *net.UnixConn whose reads can be switched to
// non-blocking. Everything but Read goes straight to the socket. It is safe
// for concurrent use as the socket is; SetNonblocking is meant to be called
// by the conn's only reader.
type Conn struct {
	net.Conn
	rc       syscall.RawConn
	nonblock atomic.Bool
	drained  bool         // the last non-blocking read was short; owned by the reader
	onFD     bool         // inside ReadReady's callback: Read reads fd directly; owned by the reader
	empty    bool         // inside ReadReady's callback: a read(2) found the socket empty
	split    bool         // a Conn of WrapServer before its first Read; owned by the reader
	fd       int          // the socket's descriptor while onFD
	pre      []byte       // bytes read from the socket ahead of it, served first; owned by the reader
	preLen   atomic.Int64 // len(pre), for Buffered
	fragLeft int32        // bytes of pre that are re-framed records, served one per Read; owned by the reader
	recLeft  int32        // bytes left of the re-framed record being served; owned by the reader

	wmu    sync.Mutex
	corked bool
	wbuf   *[]byte // pending writes while corked; pooled, nil when empty
}

// maxCork bounds the bytes a corked Conn gathers before it writes: four
// full TLS records and their overhead.
const maxCork = 4 * (16<<10 + 256)

// corkPool holds the buffers of corked Conns. It is a cache, not state: a
// Conn holds one only between Cork and Uncork.
var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, maxCork); return &b }}

var _ net.Conn = (*Conn)(nil)

// socket is what a Conn can wrap: a socket the runtime polls.
type socket interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
}

// Wrap returns c wrapped in a *Conn when c is a *net.TCPConn or
// *net.UnixConn, and c itself otherwise (a conn that may buffer cannot be
// read without blocking this way).
func Wrap(c net.Conn) net.Conn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c
	}
	rc, err := c.(socket).SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{Conn: c, rc: rc}
}

// WrapPrefix is Wrap for a socket that bytes were already read from (a
// peeked ClientHello): Read returns prefix first, in either mode, and only
// then reads the socket, so a non-blocking Read still returns ErrWouldBlock
// only when nothing is buffered anywhere. A conn Wrap would not wrap comes
// back as a prefixconn.Conn, which reads the same but never without
// blocking. It takes ownership of prefix.
func WrapPrefix(c net.Conn, prefix []byte) net.Conn {
	if _, wrapped := c.(*Conn); wrapped {
		return prefixconn.New(c, prefix) // its own prefix, if any, comes first
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		return prefixconn.New(c, prefix)
	}
	if len(prefix) > 0 {
		w.pre = prefix
		w.preLen.Store(int64(len(prefix)))
	}
	return w
}

// SetNonblocking switches Read between waiting for bytes (the default) and
// returning ErrWouldBlock when none are queued. Only the conn's reader may
// call it.
func (c *Conn) SetNonblocking(on bool) {
	c.nonblock.Store(on)
	c.drained = false
}

// Read reads from the socket; see SetNonblocking. In non-blocking mode, a
// read that got fewer bytes than asked for means the socket had no more:
// the next Read then returns ErrWouldBlock without asking it again (bytes
// that arrived meanwhile are found by the caller's readiness wait, which
// looks before it waits).
func (c *Conn) Read(p []byte) (int, error) {
	if c.split {
		return c.readFirst(p)
	}
	if len(c.pre) > 0 && len(p) > 0 {
		return c.readPrefix(p), nil
	}
	if c.onFD {
		return c.readFD(p)
	}
	if !c.nonblock.Load() || len(p) == 0 {
		return c.Conn.Read(p)
	}
	if c.drained {
		c.drained = false
		return 0, ErrWouldBlock
	}
	n, errno, err := readNow(c.rc, p)
	if err != nil { // closed, or a deadline passed
		return 0, c.opError(err)
	}
	return c.result(n, errno, len(p))
}

// result is Read's answer for one read(2) of up to asked bytes that
// returned n and errno: ErrWouldBlock when the socket was empty, io.EOF
// at its end, and after a short read it notes that the socket is drained.
func (c *Conn) result(n int, errno error, asked int) (int, error) {
	switch {
	case errno == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case errno != nil:
		return 0, c.opError(os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	c.drained = n < asked
	return n, nil
}

// ReadReady calls step on the socket's RawConn.Read callback, where every
// Read of c (through a *tls.Conn over it, say) is a non-blocking read(2)
// of the descriptor, and each time step returns false, waits on Go's
// poller until the socket is readable and calls it again. It returns when
// step returns true, or with the wait's error: a read deadline that passed
// (os.ErrDeadlineExceeded), or the socket closed.
//
// step returns false when a Read of c returned ErrWouldBlock and it has
// nothing to show for the call. The wait is safe only after a read(2) that
// found the socket empty, made after the runtime forgot its readiness as
// the callback began; an ErrWouldBlock from a short read (see Read) is not
// one, as an end of file may follow the bytes, so step is then called
// again and its read asks the socket. A flight then costs the read(2) that
// finds it and the one that finds the socket empty before the wait, where
// a readiness check before each read costs one more. step runs with the
// socket's read lock held: it must not close c, and a Close of c waits for
// it. Only the conn's reader may call ReadReady.
func (c *Conn) ReadReady(step func() bool) error {
	err := c.rc.Read(func(fd uintptr) bool {
		c.onFD, c.fd = true, int(fd)
		for {
			c.drained, c.empty = false, false
			done := step()
			if done || c.empty {
				c.onFD, c.drained = false, false
				return done
			}
		}
	})
	if err != nil {
		return c.opError(err)
	}
	return nil
}

// readFD is Read inside ReadReady's callback: one read(2), ErrWouldBlock
// when the socket is empty, and after a short read (no more bytes queued)
// without asking it again.
func (c *Conn) readFD(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.drained {
		return 0, ErrWouldBlock
	}
	n, errno := readFD(c.fd, p)
	c.empty = errno == syscall.EAGAIN
	return c.result(n, errno, len(p))
}

// readPrefix serves p from the prefix; see WrapPrefix. Records that
// WrapServer re-framed are served one per call.
func (c *Conn) readPrefix(p []byte) int {
	if c.fragLeft > 0 {
		if c.recLeft == 0 {
			c.recLeft = recordHeaderLen + int32(binary.BigEndian.Uint16(c.pre[3:5]))
		}
		p = p[:min(len(p), int(c.recLeft))]
	}
	n := copy(p, c.pre)
	if c.fragLeft > 0 {
		c.recLeft -= int32(n)
		c.fragLeft -= int32(n)
	}
	c.pre = c.pre[n:]
	if len(c.pre) == 0 {
		c.pre = nil // let the array go
	}
	c.preLen.Store(int64(len(c.pre)))
	return n
}

func (c *Conn) opError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return err
	}
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Cork makes writes gather in a buffer until Uncork, so that the records a
// *tls.Conn writes for one large Write leave in one write(2): one system
// call, and one trip through the loopback or NIC path, instead of one per
// 16 KiB record. A write that would overflow the buffer flushes it first.
func (c *Conn) Cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
}

// Uncork writes what Cork gathered and makes writes direct again.
func (c *Conn) Uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.corked = false
	return c.flushLocked()
}

// Write writes p to the socket, or gathers it while corked.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		if c.wbuf != nil && len(*c.wbuf)+len(p) > maxCork {
			if err := c.flushLocked(); err != nil {
				return 0, err
			}
		}
		if len(p) <= maxCork {
			if c.wbuf == nil {
				c.wbuf = corkPool.Get().(*[]byte)
			}
			*c.wbuf = append(*c.wbuf, p...)
			return len(p), nil
		}
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *Conn) flushLocked() error {
	if c.wbuf == nil {
		return nil
	}
	_, err := c.Conn.Write(*c.wbuf)
	*c.wbuf = (*c.wbuf)[:0]
	corkPool.Put(c.wbuf)
	c.wbuf = nil
	return err
}

// CloseWrite writes what is gathered, then shuts down the writing side of
// the socket.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	return c.Conn.(socket).CloseWrite()
}

// NetConn returns the socket, for readiness waits and splice(2).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Buffered returns how many prefix bytes (see WrapPrefix) Read still
// returns before it reads the socket: 0 for a Conn of Wrap. While it is 0,
// NetConn lets a bridge see the socket under it.
func (c *Conn) Buffered() int { return int(c.preLen.Load()) }

// SyscallConn returns the socket's raw conn.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }
