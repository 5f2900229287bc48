package bridge

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"time"

	"github.com/mailedge/mailedge/internal/nbconn"
)

// Waiting for bytes without a buffer, and parking in a Poller.

// socketOf returns the socket whose readability means src has bytes, and
// the nbconn under src when src is a *tls.Conn; nil when src may buffer
// bytes out of sight, the platform cannot wait for readability, or this
// Go release's crypto/tls failed nbconn's self-test.
func socketOf(src net.Conn) (sock net.Conn, nb *nbconn.Conn) {
	if !readinessSupported {
		return nil, nil
	}
	switch c := src.(type) {
	case *net.TCPConn, *net.UnixConn:
		return c, nil
	case *tls.Conn:
		// TLSSafe checks, once per process, that crypto/tls still keeps
		// a *tls.Conn usable after ErrWouldBlock; if a Go release changed
		// that, TLS sources block in a one-byte read instead.
		if nb, ok := c.NetConn().(*nbconn.Conn); ok && nbconn.TLSSafe() {
			return nb.NetConn(), nb
		}
	}
	return nil, nil
}

// await waits until sock is readable: for splice, it returns the bytes
// queued (0 at end of file); for a *tls.Conn's socket, just found empty by
// drain, any positive number. With a Poller it waits at most ParkAfter and
// then returns errPark.
func (s *session) await(d *direction, sock net.Conn, splice bool) (int, error) {
	wait := awaitReadable
	if splice {
		wait = waitReadable
	}
	if s.poller == nil || d.noPark {
		return wait(d.rc)
	}
	if splice { // under load bytes are queued already: no deadline to set
		if avail, ready, err := peekReadable(d.rc); ready || err != nil {
			return avail, err
		}
	}
	if err := sock.SetReadDeadline(time.Now().Add(s.parkAfter)); err != nil {
		return 0, err
	}
	avail, err := wait(d.rc)
	if cerr := sock.SetReadDeadline(time.Time{}); err == nil {
		err = cerr
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, errPark
	}
	return avail, err
}

// park hands d to the Poller and reports true if it took it; the caller
// must then leave d alone, as a wake-up may already run it elsewhere. If
// the Poller refuses, d waits on its goroutine from now on.
func (s *session) park(d *direction) bool {
	if err := s.poller.register(s); err != nil {
		d.noPark = true
		return false
	}
	add := !d.added
	d.added = true
	d.state.Store(dirParked) // before arming: the wake-up can come at once
	if err := s.poller.arm(s, d.dir, d.rc, add); err != nil {
		if d.state.CompareAndSwap(dirParked, dirRunning) {
			d.noPark = true
			return false
		}
		return true // abort ended d meanwhile
	}
	return true
}

// readSocket waits until the plain socket sock has bytes, reads them into
// a pooled buffer and writes them on. The read happens inside the
// runtime's readiness wait (RawConn.Read), so a wake-up costs one read(2),
// and the buffer is taken only for a read that finds bytes: none is held
// while waiting. With a Poller it waits at most ParkAfter, then returns
// errPark.
func (s *session) readSocket(d *direction, sock net.Conn) error {
	if d.readFn == nil {
		d.readFn = d.readOnce // one method value per direction, not per wait
	}
	linger := s.poller != nil && !d.noPark
	if linger {
		if err := sock.SetReadDeadline(time.Now().Add(s.parkAfter)); err != nil {
			return err
		}
	}
	err := d.rc.Read(d.readFn)
	if linger {
		if cerr := sock.SetReadDeadline(time.Time{}); err == nil {
			err = cerr
		}
	}
	bp := d.rbuf
	d.rbuf = nil
	if bp == nil { // the wait failed: closed, or the deadline passed
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errPark
		}
		return err
	}
	defer bufPool.Put(bp)
	if d.rn == len(*bp) {
		d.bulky = true // more may be queued: splice it (see spliceAfter)
	}
	if d.rn > 0 {
		if werr := s.forward(d, (*bp)[:d.rn]); werr != nil {
			return werr
		}
	}
	if err == nil {
		err = d.rerr
	}
	return err
}
