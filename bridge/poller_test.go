package bridge

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pumping counts the goroutines running a direction's loop.
func pumping() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "bridge.(*session).pump(")
}

// blocking counts the goroutines of a direction held in a one-byte read,
// which never parks.
func blocking() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "bridge.(*session).blockingStep(")
}

// waitPumping waits until want goroutines run a direction's loop.
func waitPumping(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pumping() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines copying; want %d", pumping(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitScheduled waits until n sessions are in p's clock, and returns them
// by due time.
func waitScheduled(t testing.TB, p *Poller, n int) []*session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.clock.mu.Lock()
		byDue := append([]*session(nil), p.clock.h...)
		// Sorted here, not popped: heap.Pop would move the sessions' heapIdx.
		slices.SortFunc(byDue, func(a, b *session) int { return cmp.Compare(a.dueAt, b.dueAt) })
		p.clock.mu.Unlock()
		if len(byDue) == n {
			return byDue
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions in the clock; want %d", len(byDue), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitParked waits until both directions of s are parked.
func waitParked(t testing.TB, s *session) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.dirs[0].state.Load() != dirParked || s.dirs[1].state.Load() != dirParked {
		if time.Now().After(deadline) {
			t.Fatal("session not parked")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// scheduled reports whether s is in p's clock, waiting for its next check.
func scheduled(p *Poller, s *session) bool {
	p.clock.mu.Lock()
	defer p.clock.mu.Unlock()
	return s.heapIdx >= 0
}

// receive returns what ch delivers; a stuck channel fails the test after a
// generous guard (a hang, never a timing threshold).
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// newPoller returns a Poller that parks after 5 ms and is closed when the
// test ends, after the sessions.
func newPoller(t testing.TB) *Poller {
	p := &Poller{ParkAfter: 5 * time.Millisecond}
	t.Cleanup(func() { p.Close() })
	return p
}

// exchange sends a line each way through l and checks it arrives.
func exchange(t testing.TB, l *legs, cr, br *bufio.Reader, n int) {
	t.Helper()
	up, down := strings.Repeat("u", n)+"\n", strings.Repeat("d", n)+"\n"
	_, err := l.client.Write([]byte(up))
	require.NoError(t, err)
	got, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, up, got)
	_, err = l.backend.Write([]byte(down))
	require.NoError(t, err)
	got, err = cr.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, down, got)
}

// TestPollerParks: an idle session keeps no copier goroutine, wakes up for
// each exchange (small and bigger than one TLS record), and still ends
// with the right counts and half-closes.
func TestPollerParks(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			l := startJoin(t, context.Background(), useTLS, Options{Poller: newPoller(t)})
			cr, br := bufio.NewReader(l.client), bufio.NewReader(l.backend)
			var up int64
			for _, n := range []int{10, 40000, 1} {
				exchange(t, l, cr, br, n)
				up += int64(n + 1)
				waitPumping(t, 0)
			}
			closeWriteConn(t, l.client)
			_, err := br.ReadByte()
			assert.ErrorIs(t, err, io.EOF)
			closeWriteConn(t, l.backend)
			_, err = cr.ReadByte()
			assert.ErrorIs(t, err, io.EOF)
			r := <-l.done
			require.NoError(t, r.err)
			assert.Equal(t, EndClientClosed, r.st.End)
			assert.Equal(t, up, r.st.ClientToServer)
			assert.Equal(t, up, r.st.ServerToClient)
		})
	}
}

// TestPollerEndsParked: the idle timeout, the maximum duration, the
// context and a reset end a session while both directions are parked. The
// timeouts are an hour long and the test runs the Poller's clock an hour
// ahead (TestPollerClockAndWatches lets a real timer fire).
func TestPollerEndsParked(t *testing.T) {
	later := func(p *Poller) { p.clock.check(time.Now().Add(2 * time.Hour)) }
	tests := []struct {
		name string
		opt  Options
		act  func(p *Poller, l *legs, cancel func())
		want End
	}{
		{"idle", Options{IdleTimeout: time.Hour}, func(p *Poller, _ *legs, _ func()) { later(p) }, EndIdle},
		{"max duration", Options{IdleTimeout: -1, MaxDuration: time.Hour}, func(p *Poller, _ *legs, _ func()) { later(p) }, EndMaxDuration},
		{"cancel", Options{}, func(_ *Poller, _ *legs, cancel func()) { cancel() }, EndCanceled},
		{"reset", Options{}, func(_ *Poller, l *legs, _ func()) {
			l.backend.(*net.TCPConn).SetLinger(0)
			l.backend.Close()
		}, EndError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := newPoller(t)
			tt.opt.Poller = p
			l := startJoin(t, ctx, false, tt.opt)
			waitParked(t, waitScheduled(t, p, 1)[0])
			tt.act(p, l, cancel)
			r := <-l.done
			assert.Equal(t, tt.want, r.st.End)
			assert.Error(t, r.err)
			_, err := l.client.Read(make([]byte, 1))
			assert.Error(t, err, "Join closes the client's conn")
		})
	}
}

// TestPollerClose: closing the Poller resumes parked sessions on their own
// goroutines; they keep working and no longer park.
func TestPollerClose(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPoller(t)
	l := startJoin(t, context.Background(), true, Options{Poller: p})
	cr, br := bufio.NewReader(l.client), bufio.NewReader(l.backend)
	exchange(t, l, cr, br, 5)
	waitPumping(t, 0)
	require.NoError(t, p.Close())
	waitPumping(t, 2)
	// A direction's every way into the Poller is refused now; so it waits
	// on its goroutine after its next ParkAfter.
	assert.ErrorIs(t, p.register(&session{}), errPollerClosed)
	assert.ErrorIs(t, p.arm(&session{}, ClientToServer, nil, false), errPollerClosed)
	exchange(t, l, cr, br, 5)
	exchange(t, l, cr, br, 5)
	assert.Equal(t, 2, pumping(), "no parking after Close")
	l.client.Close()
	l.backend.Close()
	<-l.done
}

// TestPollerSharedAndInspected: one Poller shared by sessions with the SMTP
// inspector and the IMAP guard, each parked between its commands.
func TestPollerSharedAndInspected(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPoller(t)
	smtp := startJoin(t, context.Background(), true, Options{Poller: p, SMTP: &SMTPInspector{}})
	imap := startJoin(t, context.Background(), false, Options{Poller: p, Guard: GuardIMAP})
	sc, sb := bufio.NewReader(smtp.client), bufio.NewReader(smtp.backend)
	ic, ib := bufio.NewReader(imap.client), bufio.NewReader(imap.backend)
	say := func(w io.Writer, r *bufio.Reader, send, want string) {
		t.Helper()
		_, err := io.WriteString(w, send)
		require.NoError(t, err)
		got, err := r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	for _, s := range waitScheduled(t, p, 2) {
		waitParked(t, s)
	}
	say(smtp.client, sb, "EHLO c\r\n", "EHLO c\r\n")
	say(smtp.backend, sc, "250-s\r\n250-STARTTLS\r\n250 8BITMIME\r\n", "250-s\r\n")
	line, err := sc.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "250 8BITMIME\r\n", line, "STARTTLS removed")
	say(imap.client, ib, "a CAPABILITY\r\n", "a CAPABILITY\r\n")
	say(imap.backend, ic, "* CAPABILITY IMAP4rev1 STARTTLS\r\n", "* CAPABILITY IMAP4rev1\r\n")
	waitPumping(t, 0)
	say(smtp.client, sc, "STARTTLS\r\n", "454 4.7.0 TLS not available\r\n")
	say(imap.client, ib, "b STARTTLS\r\n", "b XSTARTTLS-REFUSED-INSIDE-TLS\r\n")
	waitPumping(t, 0)
	for _, l := range []*legs{smtp, imap} {
		l.client.Close()
		l.backend.Close()
		<-l.done
	}
}

// TestStart: Start returns at once and reports through Hooks.End.
func TestStart(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	a, proxyC := tcpPair(t)
	proxyS, b := tcpPair(t)
	ended := make(chan joinResult, 1)
	Start(context.Background(), proxyC, proxyS, Options{
		Poller: newPoller(t),
		Hooks:  Hooks{End: func(st Stats, err error) { ended <- joinResult{st, err} }},
	})
	_, err := a.Write([]byte("hi"))
	require.NoError(t, err)
	got := make([]byte, 2)
	_, err = io.ReadFull(b, got)
	require.NoError(t, err)
	a.Close()
	b.Close()
	r := <-ended
	require.NoError(t, r.err)
	assert.Equal(t, int64(2), r.st.ClientToServer)
}

// TestTLSWithoutNBConn: a *tls.Conn made without nbconn is copied through
// the blocking one-byte read and never parks.
func TestTLSWithoutNBConn(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	srv, cli := tlsConfigs(t)
	a, b := tcpPair(t)
	client, proxyC := handshakePair(t, tls.Client(a, cli), tls.Server(b, srv))
	proxyS, backend := tcpPair(t)
	l := &legs{client: client, backend: backend, done: make(chan joinResult, 1)}
	go func() {
		st, err := Join(context.Background(), proxyC, proxyS, Options{Poller: newPoller(t)})
		l.done <- joinResult{st, err}
	}()
	cr, br := bufio.NewReader(client), bufio.NewReader(backend)
	exchange(t, l, cr, br, 20000)
	waitPumping(t, 1) // the plain side parks
	assert.Equal(t, 1, blocking(), "the TLS side keeps its goroutine, in a one-byte read")
	exchange(t, l, cr, br, 3)
	client.Close()
	backend.Close()
	<-l.done
}

// TestPollerClockAndWatches: sessions of one Poller share its clock and
// its watch of their context. Each ends at its own idle timeout (a real
// timer for the first; the clock run an hour ahead for the others),
// activity postpones it, a cancelled context ends its sessions only, an
// ended context ends a new session at once, and the shared structures are
// empty once the sessions are gone.
func TestPollerClockAndWatches(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPoller(t)
	short := startJoin(t, context.Background(), false, Options{Poller: p, IdleTimeout: 50 * time.Millisecond})
	r := <-short.done
	assert.Equal(t, EndIdle, r.st.End)
	assert.GreaterOrEqual(t, r.st.Duration, 50*time.Millisecond)

	busy := startJoin(t, context.Background(), false, Options{Poller: p, IdleTimeout: time.Hour})
	s := waitScheduled(t, p, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	c1 := startJoin(t, ctx, false, Options{Poller: p, IdleTimeout: -1})
	c2 := startJoin(t, ctx, true, Options{Poller: p, IdleTimeout: -1})

	// Activity at last postpones busy's timeout from an hour after its
	// start to an hour after last.
	_, err := busy.client.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(busy.backend, make([]byte, 1))
	require.NoError(t, err)
	last := time.Duration(s.last.Load())
	require.Positive(t, last)
	p.clock.check(s.start.Add(time.Hour + last/2))
	assert.True(t, scheduled(p, s), "checked, found active and rescheduled")
	assert.Zero(t, s.reason.Load(), "not ended")
	p.clock.check(s.start.Add(time.Hour + last))
	r = <-busy.done
	assert.Equal(t, EndIdle, r.st.End)

	cancel()
	for _, l := range []*legs{c1, c2} {
		r := <-l.done
		assert.Equal(t, EndCanceled, r.st.End)
		assert.ErrorIs(t, r.err, context.Canceled)
	}
	late := startJoin(t, ctx, false, Options{Poller: p})
	r = <-late.done
	assert.Equal(t, EndCanceled, r.st.End, "an ended context ends a new session at once")

	p.clock.mu.Lock()
	assert.Empty(t, p.clock.h)
	p.clock.mu.Unlock()
	p.watches.mu.Lock()
	assert.Empty(t, p.watches.m)
	p.watches.mu.Unlock()
}

// TestPollerEndingsApart: the Poller's clock and its context watch end
// many sessions from one goroutine; a session whose Hooks.End is slow (here:
// blocked until the other session has ended) holds up no other session's
// ending. The slow session is the first the clock or the watch ends.
func TestPollerEndingsApart(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		end  func(p *Poller, cancel func())
		want End
	}{
		{"idle timeout", Options{IdleTimeout: time.Hour}, func(p *Poller, _ func()) {
			p.clock.check(time.Now().Add(2 * time.Hour)) // both are due
		}, EndIdle},
		{"context", Options{IdleTimeout: -1}, func(_ *Poller, cancel func()) { cancel() }, EndCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			testEnded := make(chan struct{}) // frees a stuck hook if the test fails
			t.Cleanup(func() { close(testEnded) })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := newPoller(t)
			otherEnded := make(chan struct{})
			other, slow := tt.opt, tt.opt
			other.Poller, slow.Poller = p, p
			other.Hooks.End = func(Stats, error) { close(otherEnded) }
			slow.Hooks.End = func(Stats, error) {
				select {
				case <-otherEnded:
				case <-testEnded:
				}
			}
			// The clock checks the earlier due first; the watch, the later
			// session of a context first.
			first, second := slow, other
			if tt.want == EndCanceled {
				first, second = other, slow
			}
			l1 := startJoin(t, ctx, false, first)
			waitScheduledOrWatched(t, p, 1)
			l2 := startJoin(t, ctx, false, second)
			for _, s := range waitScheduledOrWatched(t, p, 2) {
				waitParked(t, s) // an ending then finishes s where it runs
			}

			ended := make(chan struct{})
			go func() {
				defer close(ended)
				tt.end(p, cancel)
			}()
			receive(t, otherEnded, "end of the other session while the slow one's hook ran")
			receive(t, ended, "return from the clock's check")
			for _, l := range []*legs{l1, l2} {
				r := receive(t, l.done, "end of a session")
				assert.Equal(t, tt.want, r.st.End)
			}
		})
	}
}

// waitScheduledOrWatched waits until n sessions are in p's clock or in its
// watch of a context, and returns them.
func waitScheduledOrWatched(t testing.TB, p *Poller, n int) []*session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := make(map[*session]bool)
		p.clock.mu.Lock()
		for _, s := range p.clock.h {
			seen[s] = true
		}
		p.clock.mu.Unlock()
		p.watches.mu.Lock()
		for _, cw := range p.watches.m {
			for s := cw.head; s != nil; s = s.next {
				seen[s] = true
			}
		}
		p.watches.mu.Unlock()
		if len(seen) == n {
			var all []*session
			for s := range seen {
				all = append(all, s)
			}
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions in the clock and watches; want %d", len(seen), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
