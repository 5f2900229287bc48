package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
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
