// Package testnet runs throwaway loopback servers for tests and benchmarks.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// Serve listens on 127.0.0.1 and serves every accepted connection with
// handle in its own goroutine, closing the connection when handle returns.
// It returns the address. When the test ends the listener is closed and
// every goroutine is waited for, so leak checks stay clean.
func Serve(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}
