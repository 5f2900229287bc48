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

// await waits until sock is readable, for splice, and returns the bytes
// queued (0 at end of file). With a Poller it waits at most ParkAfter and
// then returns errPark.
func (s *session) await(d *direction, sock net.Conn) (int, error) {
	if s.poller == nil || d.noPark {
		return waitReadable(d.rc)
	}
	// Under load bytes are queued already: no deadline to set.
	if avail, ready, err := peekReadable(d.rc); ready || err != nil {
		return avail, err
	}
	if err := sock.SetReadDeadline(time.Now().Add(s.parkAfter)); err != nil {
		return 0, err
	}
	avail, err := waitReadable(d.rc)
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

// copyReady copies d, flight by flight, until its source ends or fails or
// the flow turns bulky: each flight is read inside the runtime's readiness
// wait (RawConn.Read for a plain socket, nbconn.ReadReady under a
// *tls.Conn) into a pooled buffer, and written on after it. A wait begins
// with the read(2) that finds the socket empty, so a flight costs two
// read(2)s and no readiness check, and no buffer is held while waiting. It
// returns io.EOF at the source's end of file, nil when a plain flow that
// may be spliced turned bulky (see spliceAfter), or the read's or the
// write's error.
//
// With a Poller it parks the direction, returning errPark, once it has
// read nothing for ParkAfter. The read deadline that tells is set lazily:
// when the direction starts waiting here, and when it passes while the
// direction was active, moved to ParkAfter after its last read; so a busy
// session changes no deadline per flight.
func (s *session) copyReady(d *direction, sock net.Conn, nb *nbconn.Conn) error {
	if d.step == nil && d.stepFD == nil { // one closure per direction, not per wait
		if nb != nil {
			src := ioConn(d.src) // the *tls.Conn over nb: it stays
			d.step = func() bool { return d.readTLS(src) }
		} else {
			d.stepFD = d.readFD
		}
	}
	linger := s.poller != nil && !d.noPark
	if !linger && d.deadlined {
		// The Poller refused d after an earlier wait here set the read
		// deadline: d waits on this goroutine now, with no deadline to meet.
		if err := sock.SetReadDeadline(time.Time{}); err != nil {
			return err
		}
		d.lingering, d.deadlined = false, false
	}
	for {
		if linger && !d.lingering {
			if err := sock.SetReadDeadline(time.Now().Add(s.parkAfter)); err != nil {
				return err
			}
			d.lingering, d.deadlined = true, true
		}
		var err error
		if nb != nil {
			err = nb.ReadReady(d.step)
		} else {
			err = d.rc.Read(d.stepFD)
		}
		if err != nil { // the wait failed: closed, or the deadline passed
			if !linger || !errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
			if last := d.last + s.parkAfter; last > time.Since(s.start) {
				// Active meanwhile: wait until ParkAfter after its last read.
				if err := sock.SetReadDeadline(s.start.Add(last)); err != nil {
					return err
				}
				continue
			}
			d.lingering = false // passed: the next wait here sets a new one
			return errPark
		}
		if err := s.forwardRead(d); err != nil {
			return err
		}
		if d.spliceable && d.filter == nil && d.isBulky() {
			return nil
		}
	}
}

// forwardRead writes on what the callback of copyReady read, puts its
// buffer back, and returns the read's error (io.EOF at the end).
func (s *session) forwardRead(d *direction) error {
	bp, n, err := d.rbuf, d.rn, d.rerr
	d.rbuf, d.rn, d.rerr = nil, 0, nil
	if bp == nil {
		return err
	}
	if n == len(*bp) {
		d.bulky = true // more may be queued: splice it (see spliceAfter)
	}
	if n > 0 {
		if werr := s.forward(d, (*bp)[:n]); werr != nil {
			err = werr
		}
	}
	bufPool.Put(bp)
	return err
}

// readTLS is copyReady's nbconn.ReadReady callback for a *tls.Conn src: it
// reads what src has into a pooled buffer, until the buffer is full or src
// would block, and reports false, holding no buffer, when src had nothing.
func (d *direction) readTLS(src net.Conn) bool {
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var m int
		m, err = src.Read(buf[n:])
		n += m
	}
	if n == 0 && errors.Is(err, nbconn.ErrWouldBlock) {
		bufPool.Put(bp)
		return false
	}
	if errors.Is(err, nbconn.ErrWouldBlock) {
		err = nil
	}
	d.rbuf, d.rn, d.rerr = bp, n, err
	return true
}
