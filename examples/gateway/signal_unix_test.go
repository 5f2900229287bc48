//go:build unix

package main

import (
	"os"
	"syscall"
)

// Stop stops the server with SIGSTOP: connections stay open, nothing answers.
func (r *redisServer) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// continueProcess resumes p if it was stopped.
func continueProcess(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
