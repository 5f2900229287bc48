package bridge

import (
	"syscall"
)

// pollSupported reports that a Poller can park sessions on this platform.
const pollSupported = true

// pollSys is the epoll set of a Poller and the pipe that interrupts its
// wait.
type pollSys struct {
	epfd int
	pipe [2]int
	evs  [128]syscall.EpollEvent // used by wait only
}

func (s *pollSys) open() error {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.Pipe2(s.pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(fd)
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // token 0
	if err := syscall.EpollCtl(fd, syscall.EPOLL_CTL_ADD, s.pipe[0], &ev); err != nil {
		syscall.Close(fd)
		syscall.Close(s.pipe[0])
		syscall.Close(s.pipe[1])
		return err
	}
	s.epfd = fd
	return nil
}

// arm asks for one readiness event for fd under token (level-triggered,
// one-shot: if fd is readable already, the event comes at once).
func (s *pollSys) arm(fd int, token uint64, add bool) error {
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(token)),
		Pad:    int32(uint32(token >> 32)),
	}
	op := syscall.EPOLL_CTL_MOD
	if add {
		op = syscall.EPOLL_CTL_ADD
	}
	return syscall.EpollCtl(s.epfd, op, fd, &ev)
}

// wait blocks until at least one event and appends the tokens of all that
// are ready to buf.
func (s *pollSys) wait(buf []uint64) ([]uint64, error) {
	for {
		n, err := syscall.EpollWait(s.epfd, s.evs[:], -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf, err
		}
		for _, ev := range s.evs[:n] {
			buf = append(buf, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
		}
		return buf, nil
	}
}

// interrupt makes wait return token 0.
func (s *pollSys) interrupt() {
	syscall.Write(s.pipe[1], []byte{0})
}

func (s *pollSys) close() {
	syscall.Close(s.epfd)
	syscall.Close(s.pipe[0])
	syscall.Close(s.pipe[1])
}
