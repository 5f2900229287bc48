//go:build unix

package nbconn

import (
	"net"
	"os"
	"syscall"
)

// socketPair returns the two ends of a Unix stream socket pair, as
// *net.UnixConn.
func socketPair() (net.Conn, net.Conn, error) {
	syscall.ForkLock.RLock() // no child inherits the pair before CloseOnExec
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	a, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileConn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// fileConn makes a net.Conn of the socket fd, which it closes (the conn
// holds a duplicate).
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "nbconn-probe")
	defer f.Close()
	return net.FileConn(f)
}
