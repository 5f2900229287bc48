//go:build !unix

package main

import (
	"os"
)

// Stop skips the test: stopping a process needs SIGSTOP.
func (r *redisServer) Stop() { r.t.Skip("stopping redis-server needs SIGSTOP (unix)") }

// continueProcess does nothing where nothing can be stopped.
func continueProcess(*os.Process) {}
