package mailedge

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/mailedge/mailedge/bridge"
)

// maxIdleWorkers bounds the goroutines a Serve keeps waiting for the next
// connection.
const maxIdleWorkers = 16

// workers run the connections of one Serve up to their copy on reused
// goroutines: the stack a TLS handshake grows (tens of KiB) is then grown
// once per worker instead of once per connection. Sessions do not keep a
// worker: the copy runs on the bridge's goroutines or is parked.
type workers struct {
	p      *Proxy
	ctx    context.Context
	poller *bridge.Poller
	conns  chan net.Conn // unbuffered: a send succeeds only to an idle worker
	idle   atomic.Int32
	wg     sync.WaitGroup // the worker goroutines

	// sessions counts this Serve's connections from Accept until their
	// session has ended: each Serve waits for its own.
	sessions sync.WaitGroup
}

// serve hands c to an idle worker or starts a new one.
func (w *workers) serve(c net.Conn) {
	select {
	case w.conns <- c:
	default:
		w.wg.Add(1)
		go w.work(c)
	}
}

// work serves c, then the connections handed to it while it is one of at
// most maxIdleWorkers idle workers, until stop.
func (w *workers) work(c net.Conn) {
	defer w.wg.Done()
	for {
		w.p.serve(w.ctx, c, w.poller, nil, &w.sessions)
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		var ok bool
		c, ok = <-w.conns
		w.idle.Add(-1)
		if !ok {
			return
		}
	}
}

// stop ends the idle workers and waits for them all.
func (w *workers) stop() {
	close(w.conns)
	w.wg.Wait()
}
