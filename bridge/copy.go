package bridge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// bufSize is the size of the pooled buffers a burst is read into.
const bufSize = 32 << 10

// spliceChunk bounds one splice(2) run so activity is recorded at least
// this often during a long transfer.
const spliceChunk = 4 << 20

// bufPool holds the burst buffers shared by all sessions. It is a cache,
// not state: a session takes a buffer only while bytes are ready to read
// and returns it before it blocks again, so idle sessions hold none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// filter is an optional processor between a source and its destination:
// the SMTP inspector. write forwards (or answers) p; closed is called once
// when the source reached end of file or failed.
type filter interface {
	write(p []byte) error
	closed()
}

// direction is one half of a session.
type direction struct {
	dir      Direction
	src, dst net.Conn
	n        atomic.Int64 // bytes read from src
	filter   filter       // nil: copy verbatim
}

// copier moves bytes for one direction until src ends, then shuts down the
// write side of dst. It is named, rather than a closure, so stack dumps
// say what a goroutine does.
func (s *session) copier(d *direction, results chan<- copyResult) {
	var err error
	switch {
	case d.filter == nil && canSplice(d.src, d.dst):
		err = s.spliceCopy(d)
	default:
		err = s.bufferedCopy(d)
	}
	if d.filter != nil {
		d.filter.closed()
	}
	if err == nil {
		// Record who ended first before passing the half-close on: once
		// the peer sees it, the other direction may finish and report
		// before this goroutine does.
		s.firstEOF.CompareAndSwap(0, int32(d.dir)+1)
		if closeWrite(d.dst) && s.opt.Hooks.HalfClose != nil {
			s.opt.Hooks.HalfClose(d.dir)
		}
	}
	if err != nil {
		s.abort(EndError) // the first reason wins; unblocks the other copier
	}
	results <- copyResult{dir: d.dir, err: err}
}

// canSplice reports whether src to dst can go through splice(2): both are
// plain *net.TCPConn and the platform lets us wait for readability without
// a buffer.
func canSplice(src, dst net.Conn) bool {
	_, ok1 := src.(*net.TCPConn)
	_, ok2 := dst.(*net.TCPConn)
	return ok1 && ok2 && readinessSupported
}

// spliceCopy waits for src to be readable without holding any buffer, then
// lets io.Copy move exactly the bytes already queued. io.Copy finds
// (*net.TCPConn).ReadFrom, which sees an *io.LimitedReader around a
// *net.TCPConn and uses splice(2), so the payload never enters user space.
func (s *session) spliceCopy(d *direction) error {
	src, dst := d.src.(*net.TCPConn), d.dst.(*net.TCPConn)
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	lr := &io.LimitedReader{R: src}
	for {
		avail, err := waitReadable(rc)
		if err != nil {
			return err
		}
		if avail == 0 {
			return nil // end of file
		}
		lr.N = int64(min(avail, spliceChunk))
		n, err := io.Copy(dst, lr)
		d.n.Add(n)
		s.touch()
		if err != nil {
			return err
		}
		if n == 0 { // readable but nothing queued: end of file raced the count
			return nil
		}
	}
}

// bufferedCopy reads bursts into pooled buffers. While idle it blocks
// either in a readiness wait (plain sockets, no buffer held) or in a
// one-byte read (TLS and other conns; a *tls.Conn decrypts a whole record
// into its own buffer, so the rest of the record is then read at once).
func (s *session) bufferedCopy(d *direction) error {
	var one [1]byte
	var rc syscall.RawConn
	if readinessSupported {
		rc = rawConn(d.src)
	}
	for {
		head := 0
		if rc != nil {
			avail, err := waitReadable(rc)
			if err != nil {
				return err
			}
			if avail == 0 {
				return nil
			}
		} else {
			n, err := d.src.Read(one[:])
			if n == 0 {
				if err == nil {
					continue
				}
				return eofIsNil(err)
			}
			head = 1
		}
		if err := s.burst(d, one[:head]); err != nil {
			return eofIsNil(err)
		}
	}
}

// burst reads what is ready into a pooled buffer, after the head byte
// already read, and writes it on; the buffer goes back before the next wait.
func (s *session) burst(d *direction, head []byte) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	copy(buf, head)
	n, rerr := d.src.Read(buf[len(head):])
	n += len(head)
	if n > 0 {
		d.n.Add(int64(n))
		s.touch()
		var werr error
		if d.filter != nil {
			werr = d.filter.write(buf[:n])
		} else {
			_, werr = d.dst.Write(buf[:n])
		}
		if werr != nil {
			return werr
		}
	}
	return rerr
}

func eofIsNil(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// rawConn returns the raw socket of conns whose Read is a plain socket
// read, so that readiness means Read will not block. Wrappers are not
// trusted: they may buffer.
func rawConn(c net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// unwrapper is implemented by conns that wrap another and may hold bytes
// read ahead, such as backend.Conn: while Buffered reports 0, reads and
// writes may go to NetConn directly. *tls.Conn has NetConn but no Buffered,
// so it is never unwrapped.
type unwrapper interface {
	NetConn() net.Conn
	Buffered() int
}

// ioConn returns the conn to read and write c through: c itself, or the
// conn under a wrapper holding no read-ahead bytes, so readiness waits and
// splice(2) see the socket. Closing still goes through c.
func ioConn(c net.Conn) net.Conn {
	for {
		u, ok := c.(unwrapper)
		if !ok || u.Buffered() != 0 {
			return c
		}
		c = u.NetConn()
	}
}

// closeWriter is implemented by conns that can shut down their write side
// alone: *net.TCPConn, *net.UnixConn, *tls.Conn.
type closeWriter interface {
	CloseWrite() error
}

// closeWrite passes a half-close on to c and reports whether c could take
// one. For a *tls.Conn it sends close_notify and then shuts down the TCP
// write side too, for peers that wait for the FIN.
func closeWrite(c net.Conn) bool {
	cw, ok := c.(closeWriter)
	if !ok {
		return false
	}
	cw.CloseWrite()
	if u, ok := underlying(c).(closeWriter); ok {
		u.CloseWrite()
	}
	return true
}

// underlying returns the conn under a *tls.Conn (after unwrapping), or nil.
func underlying(c net.Conn) net.Conn {
	if tc, ok := ioConn(c).(*tls.Conn); ok {
		return tc.NetConn()
	}
	return nil
}
