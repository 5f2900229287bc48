//go:build unix

package nbconn

import "syscall"

// readNow makes one read(2) on the socket of rc without letting the runtime's
// poller wait: errno is EAGAIN when nothing is queued; err is the
// runtime's (closed conn, deadline passed).
func readNow(rc syscall.RawConn, p []byte) (n int, errno, err error) {
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, errno = syscall.Read(int(fd), p)
			if errno != syscall.EINTR {
				return true // done, or EAGAIN: do not wait
			}
		}
	})
	return n, errno, err
}

// readFD makes one read(2) of fd, retried on EINTR.
func readFD(fd int, p []byte) (int, error) {
	for {
		n, errno := syscall.Read(fd, p)
		if errno != syscall.EINTR {
			return n, errno
		}
	}
}
