package bridge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/internal/nbconn"
)

// bufSize is the size of the pooled buffers a burst is read into.
const bufSize = 32 << 10

// spliceChunk bounds one splice(2) run so activity is recorded at least
// this often during a long transfer.
const spliceChunk = 4 << 20

// spliceAfter is how many bytes a direction between two plain TCP sockets
// copies through the pooled buffers before it splices, unless one read
// fills a buffer first. A splice costs a readiness peek, a FIONREAD and two
// splice(2) calls, and a pipe from the runtime's pool (made anew after a
// GC has emptied it), against one read(2) and one write(2): it pays only
// for bursts well over a buffer. The flights of a TLS handshake and the
// commands of a mail session are a few hundred bytes each, so a short
// session never splices; a download fills a buffer at once and splices
// from then on.
const spliceAfter = 1 << 20

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

// States of a direction, for parking in a Poller.
const (
	dirRunning int32 = iota // on a goroutine
	dirParked               // armed in the Poller, no goroutine
	dirDone                 // finished; its result is recorded
)

// direction is one half of a session.
type direction struct {
	dir      Direction
	src, dst net.Conn     // as given to Join; see ioConn for the conn read
	n        atomic.Int64 // bytes read from src
	filter   filter       // nil: copy verbatim
	state    atomic.Int32 // dirRunning, dirParked or dirDone

	// Owned by the goroutine running the direction.
	noPark  bool            // the Poller refused: wait on this goroutine
	bulky   bool            // a read filled a buffer, or spliceAfter bytes moved: splice if possible
	spliced int64           // bytes moved by splice(2), for tests
	rc      syscall.RawConn // raw conn of the socket waited on; it never changes
	added   bool            // the socket is in the Poller's epoll set

	// copyReady's callbacks, their results, and its state.
	step       func() bool           // under a *tls.Conn: nbconn.ReadReady's
	stepFD     func(fd uintptr) bool // on a plain socket: RawConn.Read's
	rbuf       *[]byte               // the pooled buffer of a read that found bytes
	rn         int
	rerr       error         // how the read ended: nil, io.EOF, or the error
	last       time.Duration // since the session's start, when d last forwarded bytes
	lingering  bool          // copyReady's read deadline is set and has not passed
	deadlined  bool          // copyReady set the socket's read deadline: splice clears it
	spliceable bool          // d's conns could splice, if d had no filter and were bulky
}

// run moves bytes for d until its source ends or fails, then finishes d;
// or, with a Poller, until d parks, in which case the Poller calls wake
// when there is something to read. It is named, rather than a closure, so
// stack dumps say what a goroutine does.
func (s *session) run(d *direction) {
	err, parked := s.pump(d)
	if parked {
		return
	}
	s.finishDir(d, err)
}

// wake is the Poller's call for a parked direction: it carries on on one
// of the Poller's runners unless the session ended meanwhile.
func (s *session) wake(d *direction) {
	if d.state.CompareAndSwap(dirParked, dirRunning) {
		s.poller.goRun(s, d)
	}
}

// errPark reports that a direction waited ParkAfter in vain.
var errPark = errors.New("bridge: park")

// pump is the loop of run: it returns nil at a clean end of file, the
// error that ended the direction, or parked set when d is now in the
// Poller and this goroutine must leave it alone.
//
// While nothing is ready it waits for the source's socket to be readable,
// holding no buffer: a plain socket, or the socket under a *tls.Conn that
// nbconn lets us read without blocking (after ErrWouldBlock the *tls.Conn
// holds no record, so readability of the socket is all that matters).
// Other conns block in a one-byte read instead.
func (s *session) pump(d *direction) (err error, parked bool) {
	for {
		src := ioConn(d.src)
		sock, nb := socketOf(src)
		if sock == nil {
			if err := s.blockingStep(d, src); err != nil {
				return eofIsNil(err), false
			}
			continue
		}
		// The socket under src is the same whatever wraps it: a wrapper
		// that read ahead (sock nil above) is only ever unwrapped onto it.
		if d.rc == nil {
			if d.rc, err = sock.(syscall.Conn).SyscallConn(); err != nil {
				return err, false
			}
		}
		d.spliceable = nb == nil && canSplice(sock, ioConn(d.dst))
		if !d.spliceable || d.filter != nil || !d.isBulky() {
			switch err := s.copyReady(d, sock, nb); {
			case err == nil: // bulky: splice it
			case err == errPark:
				if s.park(d) {
					return nil, true
				}
			default:
				return eofIsNil(err), false
			}
			continue
		}
		if d.deadlined { // copyReady's, which splice's reads must not meet
			if err := sock.SetReadDeadline(time.Time{}); err != nil {
				return err, false
			}
			d.lingering, d.deadlined = false, false
		}
		avail, err := s.await(d, sock)
		switch {
		case err == errPark:
			if s.park(d) {
				return nil, true
			}
			continue
		case err != nil:
			return err, false
		case avail == 0:
			return nil, false // end of file
		}
		n, err := s.splice(d, sock, avail)
		if err != nil || n == 0 { // readable but nothing queued: end of file raced the count
			return err, false
		}
	}
}

// isBulky reports whether d has proved a bulk flow, worth splicing (see
// spliceAfter).
func (d *direction) isBulky() bool {
	if !d.bulky && d.n.Load() >= spliceAfter {
		d.bulky = true
	}
	return d.bulky
}

// canSplice reports whether src to dst can go through splice(2): both are
// plain *net.TCPConn.
func canSplice(src, dst net.Conn) bool {
	_, ok1 := src.(*net.TCPConn)
	_, ok2 := dst.(*net.TCPConn)
	return ok1 && ok2
}

// splice lets io.Copy move the avail bytes already queued on src. io.Copy
// finds (*net.TCPConn).ReadFrom, which sees an *io.LimitedReader around a
// *net.TCPConn and uses splice(2), so the payload never enters user space.
func (s *session) splice(d *direction, src net.Conn, avail int) (int64, error) {
	s.touch() // as forward does: the activity is the bytes' arrival
	lr := &io.LimitedReader{R: src, N: int64(min(avail, spliceChunk))}
	n, err := io.Copy(ioConn(d.dst).(*net.TCPConn), lr)
	d.n.Add(n)
	d.spliced += n
	return n, err
}

// blockingStep blocks in a one-byte read of src (a conn that may buffer
// out of sight) and then moves what else is ready.
func (s *session) blockingStep(d *direction, src net.Conn) error {
	var one [1]byte
	n, err := src.Read(one[:])
	if n == 0 {
		return err
	}
	return s.burst(d, src, one[:1])
}

// burst reads what is ready into a pooled buffer, after the head byte
// already read, and writes it on; the buffer goes back before the next wait.
func (s *session) burst(d *direction, src net.Conn, head []byte) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	copy(buf, head)
	n, rerr := src.Read(buf[len(head):])
	n += len(head)
	if n > 0 {
		if werr := s.forward(d, buf[:n]); werr != nil {
			return werr
		}
	}
	return rerr
}

// forward counts p and writes it on, through the filter if there is one.
// Toward a *tls.Conn over nbconn, the records of a burst longer than one
// record are corked into a single write(2).
func (s *session) forward(d *direction, p []byte) error {
	d.n.Add(int64(len(p)))
	d.last = s.touch()
	var nb *nbconn.Conn
	if len(p) > maxRecord {
		if tc, ok := ioConn(d.dst).(*tls.Conn); ok {
			if nb, _ = tc.NetConn().(*nbconn.Conn); nb != nil {
				nb.Cork()
			}
		}
	}
	var err error
	if d.filter != nil {
		err = d.filter.write(p)
		if fl, ok := d.filter.(*firstLine); ok && fl.done {
			d.filter = fl.next // checked: from here on, as without RefuseForeign
		}
	} else {
		_, err = d.dst.Write(p)
	}
	if nb != nil {
		if uerr := nb.Uncork(); err == nil {
			err = uerr
		}
	}
	return err
}

// maxRecord is the most plaintext one TLS record carries.
const maxRecord = 16 << 10

func eofIsNil(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// unwrapper is implemented by conns that wrap another and may hold bytes
// read ahead, such as backend.Conn: while Buffered reports 0, reads and
// writes may go to NetConn directly. Buffered must be safe to call from
// both directions' goroutines. *tls.Conn has NetConn but no Buffered,
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
