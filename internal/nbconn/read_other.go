//go:build !unix

package nbconn

import (
	"errors"
	"syscall"
)

// readNow is not available where sockets cannot be read without waiting;
// the bridge never reads that way on these platforms.
func readNow(rc syscall.RawConn, p []byte) (n int, errno, err error) {
	return 0, nil, errors.ErrUnsupported
}

// readFD is not available either: ReadReady's callback is never run here.
func readFD(fd int, p []byte) (int, error) {
	return 0, errors.ErrUnsupported
}
