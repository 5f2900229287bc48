package nbconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	b := <-ch
	require.NotNil(t, b)
	return a, b
}

// TestConformance runs the net.Conn conformance suite on a wrapped TCP
// conn in its default, blocking mode.
func TestConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := tcpPair(t)
		c1, c2 = Wrap(a), b
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

func TestWrapOnlySockets(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, Wrap(a), "a pipe is not a socket")
	x, y := tcpPair(t)
	defer x.Close()
	defer y.Close()
	w, ok := Wrap(x).(*Conn)
	require.True(t, ok)
	assert.Same(t, x, w.NetConn())
	assert.Zero(t, w.Buffered())
}

// TestNonblockingPlain: a read with nothing queued returns ErrWouldBlock at
// once, a timeout error that leaves the conn usable; end of file is io.EOF.
func TestNonblockingPlain(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close()
	c := Wrap(a).(*Conn)
	defer c.Close()
	c.SetNonblocking(true)
	buf := make([]byte, 16)
	_, err := c.Read(buf)
	require.ErrorIs(t, err, ErrWouldBlock)
	var ne net.Error
	require.True(t, errors.As(err, &ne))
	assert.True(t, ne.Timeout())
	_, err = b.Write([]byte("hi"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := c.Read(buf)
		return err == nil && string(buf[:n]) == "hi"
	}, 5*time.Second, time.Millisecond)
	b.Close()
	require.Eventually(t, func() bool {
		_, err := c.Read(buf)
		return errors.Is(err, io.EOF)
	}, 5*time.Second, time.Millisecond)
}

// tlsPair returns a handshaken TLS connection over TCP: the server side
// over a Conn, the client side writing through a splitter, so that a test
// can cut its records; both are closed when the test ends.
func tlsPair(t *testing.T) (nb *Conn, srv, cli *tls.Conn, raw *splitter) {
	t.Helper()
	ca, err := mailtest.GenerateCA("nbconn CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example")
	require.NoError(t, err)
	a, b := tcpPair(t)
	nb = Wrap(a).(*Conn)
	srv = tls.Server(nb, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	raw = &splitter{Conn: b}
	cli = tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example"})
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(context.Background()) }()
	require.NoError(t, cli.HandshakeContext(context.Background()))
	require.NoError(t, <-errc)
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return nb, srv, cli, raw
}

// TestNonblockingTLS: under a *tls.Conn, a record that arrives in pieces
// yields ErrWouldBlock until it is whole, then its plaintext; crypto/tls
// keeps the connection usable throughout, and close_notify reads as EOF.
func TestNonblockingTLS(t *testing.T) {
	nb, srv, cli, raw := tlsPair(t)

	nb.SetNonblocking(true)
	buf := make([]byte, 32<<10)
	_, err := srv.Read(buf)
	require.ErrorIs(t, err, ErrWouldBlock)

	raw.hold = 7 // the record's first 7 bytes now, the rest later
	_, err = cli.Write([]byte("one record"))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	_, err = srv.Read(buf)
	require.ErrorIs(t, err, ErrWouldBlock, "half a record is not data")
	require.NoError(t, raw.release())
	var got []byte
	require.Eventually(t, func() bool {
		n, err := srv.Read(buf)
		got = append(got, buf[:n]...)
		return err == nil && n > 0
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, "one record", string(got))

	// Two records in one segment: both are read without a wait between.
	raw.coalesce = true
	_, err = cli.Write([]byte("two"))
	require.NoError(t, err)
	_, err = cli.Write([]byte("three"))
	require.NoError(t, err)
	require.NoError(t, raw.release())
	got = got[:0]
	require.Eventually(t, func() bool {
		n, _ := srv.Read(buf)
		got = append(got, buf[:n]...)
		return string(got) == "twothree"
	}, 5*time.Second, time.Millisecond)

	require.NoError(t, cli.CloseWrite())
	require.Eventually(t, func() bool {
		_, err := srv.Read(buf)
		return errors.Is(err, io.EOF)
	}, 5*time.Second, time.Millisecond)
}

// splitter holds back written bytes: with hold set, all but the first hold
// bytes of the next write; with coalesce set, whole writes, until release.
type splitter struct {
	net.Conn
	hold     int
	coalesce bool
	held     []byte
}

func (s *splitter) Write(p []byte) (int, error) {
	switch {
	case s.coalesce:
		s.held = append(s.held, p...)
		return len(p), nil
	case s.hold > 0 && len(p) > s.hold:
		s.held = append(s.held, p[s.hold:]...)
		_, err := s.Conn.Write(p[:s.hold])
		s.hold = 0
		return len(p), err
	}
	return s.Conn.Write(p)
}

func (s *splitter) release() error {
	_, err := s.Conn.Write(s.held)
	s.held, s.coalesce = nil, false
	return err
}

// TestCork: writes gathered between Cork and Uncork reach the peer in
// order and whole, in one write when they fit; an oversize write and
// CloseWrite flush what is gathered first.
func TestCork(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close()
	c := Wrap(a).(*Conn)
	defer c.Close()
	var want []byte
	c.Cork()
	for i := range 3 {
		p := bytes.Repeat([]byte{byte('a' + i)}, 10000)
		want = append(want, p...)
		n, err := c.Write(p)
		require.NoError(t, err)
		require.Equal(t, len(p), n)
	}
	require.NotNil(t, c.wbuf, "gathered, not written")
	big := bytes.Repeat([]byte{'z'}, maxCork+1)
	want = append(want, big...)
	_, err := c.Write(big) // flushes the gathered bytes, then goes straight out
	require.NoError(t, err)
	tail := []byte("tail")
	want = append(want, tail...)
	_, err = c.Write(tail)
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite()) // flushes "tail" before the FIN
	got, err := io.ReadAll(b)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.NoError(t, c.Uncork())
	assert.Nil(t, c.wbuf, "no buffer held after Uncork")
}

// TestTLSSafe: the self-test that guards the bridge's non-blocking reads
// of a *tls.Conn passes with this Go release. If it fails after a Go
// upgrade, so does TestNonblockingTLS, and the bridge falls back to
// blocking reads (see docs/go-upgrade.md).
func TestTLSSafe(t *testing.T) {
	require.NoError(t, probeTLS())
	assert.True(t, TLSSafe())
	assert.True(t, TLSSafe(), "the answer is kept")
}

// TestReadReady: step reads a *tls.Conn inside the socket's readiness
// callback; it is called again when the socket becomes readable, each
// flight whole; and an end of file right after half a record, which a
// short read cannot tell from a socket merely drained, ends the wait with
// an error instead of waiting for a flight that never comes.
func TestReadReady(t *testing.T) {
	nb, srv, cli, raw := tlsPair(t)
	require.NoError(t, nb.SetReadDeadline(time.Now().Add(5*time.Second))) // a hang fails

	buf := make([]byte, 64)
	var n, calls int
	var rerr error
	step := func() bool {
		calls++
		n, rerr = srv.Read(buf)
		return n > 0 || !errors.Is(rerr, ErrWouldBlock)
	}
	go func() {
		time.Sleep(20 * time.Millisecond) // the first step finds nothing
		cli.Write([]byte("flight"))
	}()
	require.NoError(t, nb.ReadReady(step))
	require.NoError(t, rerr)
	assert.Equal(t, "flight", string(buf[:n]))
	assert.GreaterOrEqual(t, calls, 2, "called again once readable")

	raw.hold = 7 // half a record, then the end of file
	_, err := cli.Write([]byte("never whole"))
	require.NoError(t, err)
	require.NoError(t, raw.Conn.(*net.TCPConn).CloseWrite())
	time.Sleep(20 * time.Millisecond) // both queued before the step reads
	require.NoError(t, nb.ReadReady(step))
	assert.Zero(t, n)
	require.Error(t, rerr)
	assert.NotErrorIs(t, rerr, ErrWouldBlock)
	assert.NotErrorIs(t, rerr, os.ErrDeadlineExceeded)

	// Outside ReadReady, Read is as before: blocking by default.
	assert.False(t, nb.onFD)
}
