package bridge

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHalfClose(t *testing.T) {
	tests := []struct {
		name        string
		tls         bool
		clientFirst bool
		want        End
	}{
		{"plain client first", false, true, EndClientClosed},
		{"plain server first", false, false, EndServerClosed},
		{"tls client first", true, true, EndClientClosed},
		{"tls server first", true, false, EndServerClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			var halves []Direction
			var mu sync.Mutex
			opt := Options{Hooks: Hooks{HalfClose: func(d Direction) { mu.Lock(); halves = append(halves, d); mu.Unlock() }}}
			l := startJoin(t, context.Background(), tt.tls, opt)
			first, second := l.client, l.backend
			if !tt.clientFirst {
				first, second = second, first
			}
			_, err := first.Write([]byte("hello"))
			require.NoError(t, err)
			closeWriteConn(t, first)
			got, err := io.ReadAll(second) // ends at the propagated EOF
			require.NoError(t, err)
			assert.Equal(t, "hello", string(got))
			// The other direction still works after the half-close.
			_, err = second.Write([]byte("bye"))
			require.NoError(t, err)
			closeWriteConn(t, second)
			got, err = io.ReadAll(first)
			require.NoError(t, err)
			assert.Equal(t, "bye", string(got))

			r := <-l.done
			require.NoError(t, r.err)
			assert.Equal(t, tt.want, r.st.End)
			up, down := int64(5), int64(3)
			if !tt.clientFirst {
				up, down = down, up
			}
			assert.Equal(t, up, r.st.ClientToServer)
			assert.Equal(t, down, r.st.ServerToClient)
			assert.Len(t, halves, 2)
		})
	}
}

func TestFullClose(t *testing.T) {
	tests := []struct {
		name        string
		clientFirst bool
		want        End
	}{
		{"client closes first", true, EndClientClosed},
		{"server closes first", false, EndServerClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			l := startJoin(t, context.Background(), false, Options{})
			first, second := l.client, l.backend
			if !tt.clientFirst {
				first, second = second, first
			}
			require.NoError(t, first.Close())
			_, err := io.ReadAll(second)
			require.NoError(t, err)
			require.NoError(t, second.Close())
			r := <-l.done
			require.NoError(t, r.err)
			assert.Equal(t, tt.want, r.st.End)
		})
	}
}

func TestServerReset(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	l := startJoin(t, context.Background(), false, Options{})
	require.NoError(t, l.backend.(*net.TCPConn).SetLinger(0))
	require.NoError(t, l.backend.Close()) // RST
	r := <-l.done
	require.Error(t, r.err)
	assert.Equal(t, EndError, r.st.End)
	assert.ErrorContains(t, r.err, "server->client")
	got, err := io.ReadAll(l.client) // Join reset the client's conn, as the server reset its own
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.Empty(t, got)
}

func TestIdleTimeout(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	l := startJoin(t, context.Background(), false, Options{IdleTimeout: 20 * time.Millisecond})
	r := <-l.done
	assert.ErrorIs(t, r.err, ErrIdleTimeout)
	assert.Equal(t, EndIdle, r.st.End)
	_, err := l.client.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
}

// TestCheckIdle drives the idle check by hand: activity re-arms the timer,
// silence ends the session.
func TestCheckIdle(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	a, b := net.Pipe()
	s := newSession(context.Background(), a, b, &Options{IdleTimeout: time.Hour})
	defer s.stopTimers()
	s.touch()
	s.onTimer()
	assert.Zero(t, s.reason.Load(), "recent activity must keep the session")
	s.last.Store(-int64(2 * time.Hour))
	s.onTimer()
	assert.Equal(t, int32(EndIdle), s.reason.Load())
	_, err := a.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe)
}

func TestMaxDuration(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	l := startJoin(t, context.Background(), true, Options{IdleTimeout: -1, MaxDuration: 30 * time.Millisecond})
	r := <-l.done
	assert.ErrorIs(t, r.err, ErrMaxDuration)
	assert.Equal(t, EndMaxDuration, r.st.End)
}

func TestCancel(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			ctx, cancel := context.WithCancel(context.Background())
			l := startJoin(t, ctx, useTLS, Options{})
			_, err := l.client.Write([]byte("ping"))
			require.NoError(t, err)
			buf := make([]byte, 4)
			_, err = io.ReadFull(l.backend, buf)
			require.NoError(t, err)
			cancel()
			r := <-l.done
			assert.ErrorIs(t, r.err, context.Canceled)
			assert.Equal(t, EndCanceled, r.st.End)
			assert.Equal(t, int64(4), r.st.ClientToServer)
		})
	}
}

// TestPipeConns runs Join over net.Pipe ends: no CloseWrite, no socket, so
// the one-byte-read path copies.
func TestPipeConns(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	client, proxyC := net.Pipe()
	proxyS, backend := net.Pipe()
	done := make(chan joinResult, 1)
	go func() { st, err := Join(context.Background(), proxyC, proxyS, Options{}); done <- joinResult{st, err} }()
	_, err := client.Write([]byte("EHLO x\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 8)
	_, err = io.ReadFull(backend, buf)
	require.NoError(t, err)
	assert.Equal(t, "EHLO x\r\n", string(buf))
	require.NoError(t, client.Close())
	require.NoError(t, backend.Close())
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, int64(8), r.st.ClientToServer)
}

func TestIntegrity64MiB(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			const size = 64 << 20
			l := startJoin(t, context.Background(), useTLS, Options{})
			checkTransfer(t, l, size, uint64(size))
			r := <-l.done
			require.NoError(t, r.err)
			assert.Equal(t, int64(size), r.st.ClientToServer)
			assert.Equal(t, int64(size), r.st.ServerToClient)
		})
	}
}

func TestConcurrentSessions(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	const sessions, size = 50, 1 << 20
	var wg sync.WaitGroup
	for i := range sessions {
		l := startJoin(t, context.Background(), i%2 == 1, Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkTransfer(t, l, size, uint64(i))
			r := <-l.done
			assert.NoError(t, r.err)
		}()
	}
	wg.Wait()
}

// checkTransfer sends size pseudo-random bytes each way at once, with a
// half-close after each, and compares SHA-256 sums at both ends.
func checkTransfer(t testing.TB, l *legs, size int64, seed uint64) {
	t.Helper()
	type sums struct{ sent, got [32]byte }
	run := func(src, dst net.Conn, seed uint64, out chan<- sums, errc chan<- error) {
		var s sums
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // reader
			defer wg.Done()
			h := sha256.New()
			_, err := io.Copy(h, dst)
			copy(s.got[:], h.Sum(nil))
			if err != nil {
				errc <- err
			}
		}()
		h := sha256.New()
		var key [32]byte
		key[0], key[1] = byte(seed), byte(seed>>8)
		r := io.TeeReader(io.LimitReader(rand.NewChaCha8(key), size), h)
		_, err := io.Copy(src, r)
		if err == nil {
			err = src.(interface{ CloseWrite() error }).CloseWrite()
		}
		if err != nil {
			errc <- err
		}
		copy(s.sent[:], h.Sum(nil))
		wg.Wait()
		out <- s
	}
	up, down := make(chan sums, 1), make(chan sums, 1)
	errc := make(chan error, 4)
	go run(l.client, l.backend, seed, up, errc)
	go run(l.backend, l.client, seed+1, down, errc)
	u, d := <-up, <-down
	select {
	case err := <-errc:
		t.Errorf("transfer: %v", err)
	default:
	}
	assert.Equal(t, u.sent, u.got, "client->server SHA-256")
	assert.Equal(t, d.sent, d.got, "server->client SHA-256")
}

func TestEndString(t *testing.T) {
	tests := []struct {
		name string
		e    End
		want string
	}{
		{"client", EndClientClosed, "client closed"},
		{"server", EndServerClosed, "server closed"},
		{"idle", EndIdle, "idle timeout"},
		{"max", EndMaxDuration, "max duration"},
		{"canceled", EndCanceled, "canceled"},
		{"error", EndError, "error"},
		{"zero", End(0), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, tt.e.String()) })
	}
	assert.Equal(t, "client->server", ClientToServer.String())
	assert.Equal(t, "server->client", ServerToClient.String())
	assert.True(t, errors.Is(ErrIdleTimeout, ErrIdleTimeout))
}
