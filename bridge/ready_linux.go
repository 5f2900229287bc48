package bridge

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// readinessSupported reports that waitReadable works on this platform.
const readinessSupported = true

// fionread is the Linux ioctl that returns the bytes queued on a socket
// (FIONREAD, alias SIOCINQ).
const fionread = 0x541B

// waitReadable blocks, holding no buffer, until the socket behind rc has
// bytes or has reached end of file, and returns the number of bytes queued
// (0 at end of file). It uses the runtime's poller through RawConn.Read, so
// closing the conn or a deadline ends the wait.
func waitReadable(rc syscall.RawConn) (int, error) {
	avail, _, err := readable(rc, true, true)
	return avail, err
}

// awaitReadable is waitReadable for callers that read what is there
// anyway: it reports 1 for a socket with bytes queued, without counting
// them (one system call fewer).
func awaitReadable(rc syscall.RawConn) (int, error) {
	avail, _, err := readable(rc, true, false)
	return avail, err
}

// peekReadable is waitReadable without the wait: ready reports whether the
// socket had bytes or had reached end of file.
func peekReadable(rc syscall.RawConn) (avail int, ready bool, err error) {
	return readable(rc, false, true)
}

// readable peeks at the socket behind rc, waiting for it if wait is set;
// with count set, avail is the number of bytes queued, else 1 when there
// are any.
func readable(rc syscall.RawConn, wait, count bool) (avail int, ready bool, err error) {
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return !wait // not ready: let the poller wait, or give up
			default:
				serr = errno
				return true
			}
			ready = true
			if n == 0 {
				avail = 0 // end of file
				return true
			}
			if !count {
				avail = 1
				return true
			}
			var q int32
			if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, fionread, uintptr(unsafe.Pointer(&q))); errno != 0 || q < 1 {
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

// readOnce is the RawConn.Read callback of readSocket: one read(2) into a
// pooled buffer, taken for the call only. It reports false, holding no
// buffer, when nothing is queued, so the runtime waits for readability.
func (d *direction) readOnce(fd uintptr) bool {
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
