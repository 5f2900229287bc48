package mailtest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Fake is a scripted TCP server on 127.0.0.1 for one test: it runs a
// handler for each accepted connection in a goroutine it owns and closes
// the connection when the handler returns. When the test ends it closes
// its listener and every open connection, and waits for every handler.
type Fake struct {
	l        net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewFake starts a Fake that serves each connection with handle. The
// handler owns the connection while it runs; a handler that blocks ends
// when the test does, as its connection is closed then.
func NewFake(tb testing.TB, handle func(c net.Conn)) *Fake {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("mailtest: listen: %v", err)
	}
	f := &Fake{l: l, conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.acceptLoop(handle)
	tb.Cleanup(f.close)
	return f
}

// Addr returns the address the Fake listens on, as host:port.
func (f *Fake) Addr() string { return f.l.Addr().String() }

// Accepted returns how many connections the Fake has accepted so far.
func (f *Fake) Accepted() int64 { return f.accepted.Load() }

// acceptLoop accepts until the listener closes; named for stack dumps.
func (f *Fake) acceptLoop(handle func(c net.Conn)) {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.handleConn(c, handle)
	}
}

// handleConn runs handle for one connection; named for stack dumps.
func (f *Fake) handleConn(c net.Conn, handle func(c net.Conn)) {
	defer f.wg.Done()
	defer func() {
		c.Close()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}()
	handle(c)
}

// close stops the Fake and waits for its goroutines.
func (f *Fake) close() {
	f.l.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
