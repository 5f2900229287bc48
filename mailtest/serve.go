package mailtest

import (
	"context"
	"errors"
	"net"
	"testing"
)

// Serve runs serve on a new listener on 127.0.0.1 in a goroutine, for the
// test tb, and returns the listener's address: the way to start the code
// under test, such as a mailedge.Proxy's Serve method. When the test ends,
// Serve cancels serve's context, closes the listener and waits for serve
// to return; an error other than net.ErrClosed or the context's fails the
// test.
func Serve(tb testing.TB, serve func(ctx context.Context, l net.Listener) error) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("mailtest: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l) }()
	tb.Cleanup(func() {
		cancel()
		l.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled) {
			tb.Errorf("mailtest: serve %s: %v", l.Addr(), err)
		}
	})
	return l.Addr().String()
}
