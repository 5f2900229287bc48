// Package gofloor is the relay of the benchmarks' "Go floor": the least a
// Go program does to proxy a terminated TLS connection, two io.Copy and
// nothing else. bench/gofloor serves it on tls.Listen for bench/compare.sh,
// and the root package's BenchmarkGoFloorIMAPS runs it in process, so that
// both measure the same code. Not for production: no timeouts, no limits.
package gofloor

import (
	"io"
	"net"
)

// Relay copies between the client c (a *tls.Conn, or any conn with
// CloseWrite) and a new TCP connection to backend until both directions
// end, then closes both.
func Relay(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(b, c)
		b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, b)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	<-done
}
