//go:build !linux

package bridge

import (
	"errors"
	"syscall"
)

// readinessSupported reports that waitReadable works on this platform; on
// others every copy reads a first byte into a one-byte buffer instead.
const readinessSupported = false

func waitReadable(rc syscall.RawConn) (int, error) {
	return 0, errors.ErrUnsupported
}

func peekReadable(rc syscall.RawConn) (int, bool, error) {
	return 0, false, errors.ErrUnsupported
}

// readFD is never called where readinessSupported is false.
func (d *direction) readFD(fd uintptr) bool { return true }
