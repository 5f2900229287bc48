//go:build !unix

package redistest

import "os"

// Stop skips the test: stopping a process needs SIGSTOP.
func (r *Server) Stop() { r.t.Skip("stopping redis-server needs SIGSTOP (unix)") }

// Cont does nothing where Stop cannot stop.
func (r *Server) Cont() {}

// continueProcess does nothing where nothing can be stopped.
func continueProcess(*os.Process) {}
