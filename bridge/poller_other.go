//go:build !linux

package bridge

import "errors"

// pollSupported reports that a Poller can park sessions on this platform;
// elsewhere sessions keep their goroutines.
const pollSupported = false

type pollSys struct{}

func (s *pollSys) open() error                              { return errors.ErrUnsupported }
func (s *pollSys) arm(fd int, token uint64, add bool) error { return errors.ErrUnsupported }
func (s *pollSys) wait(buf []uint64) ([]uint64, error)      { return buf, errors.ErrUnsupported }
func (s *pollSys) interrupt()                               {}
func (s *pollSys) close()                                   {}
