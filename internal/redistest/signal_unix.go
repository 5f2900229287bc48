//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// Stop stops the server with SIGSTOP: connections stay open, nothing
// answers.
func (r *Server) Stop() { r.signal(syscall.SIGSTOP) }

// Cont resumes a stopped server.
func (r *Server) Cont() { r.signal(syscall.SIGCONT) }

func (r *Server) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

// continueProcess resumes p if it was stopped.
func continueProcess(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
