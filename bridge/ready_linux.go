package bridge

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// readinessSupported reports that waitReadable works on this platform.
const readinessSupported = true

// waitReadable blocks, holding no buffer, until the socket behind rc has
// bytes or has reached end of file, and returns the number of bytes queued
// (0 at end of file). It uses the runtime's poller through RawConn.Read, so
// closing the conn or a deadline ends the wait.
func waitReadable(rc syscall.RawConn) (int, error) {
	avail, _, err := readable(rc, true)
	return avail, err
}

// peekReadable is waitReadable without the wait: ready reports whether the
// socket had bytes or had reached end of file.
func peekReadable(rc syscall.RawConn) (avail int, ready bool, err error) {
	return readable(rc, false)
}

// readable peeks at the socket behind rc, waiting for it if wait is set;
// avail is the number of bytes queued.
func readable(rc syscall.RawConn, wait bool) (avail int, ready bool, err error) {
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			// x/sys/unix rather than syscall: recvfrom is a socketcall on
			// linux/386, and the ioctl's number differs between
			// architectures (on ppc64, mips and sparc64 a wrong one would
			// make every splice move one byte).
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch err {
			case nil:
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return !wait // not ready: let the poller wait, or give up
			default:
				serr = err
				return true
			}
			ready = true
			if n == 0 {
				avail = 0 // end of file
				return true
			}
			// SIOCINQ is FIONREAD: the bytes queued, as a C int (32 bits
			// on every Linux; IoctlGetInt would read 64 on big-endian).
			q, err := unix.IoctlGetUint32(int(fd), unix.SIOCINQ)
			if err != nil || int32(q) < 1 {
				q = 1
			}
			avail = int(q)
			return true
		}
	})
	if err != nil {
		return 0, false, err
	}
	if serr != nil {
		return 0, true, serr
	}
	return avail, ready, nil
}

// readFD is copyReady's RawConn.Read callback for a plain socket: one
// read(2) into a pooled buffer, taken for the call only. It reports false,
// holding no buffer, when nothing is queued, so the runtime waits for
// readability.
func (d *direction) readFD(fd uintptr) bool {
	bp := bufPool.Get().(*[]byte)
	for {
		n, errno := syscall.Read(int(fd), *bp)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			bufPool.Put(bp)
			return false
		case errno != nil:
			d.rn, d.rerr = 0, os.NewSyscallError("read", errno)
		case n == 0:
			d.rn, d.rerr = 0, io.EOF
		default:
			d.rn, d.rerr = n, nil
		}
		d.rbuf = bp
		return true
	}
}
