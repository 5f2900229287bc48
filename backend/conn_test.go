package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

func TestConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := net.Pipe()
		released := 0
		c := &Conn{Conn: a, release: func() { released++ }}
		stop = func() {
			c.Close()
			b.Close()
			if released != 1 {
				t.Errorf("release ran %d times; want 1", released)
			}
		}
		return c, b, stop, nil
	})
}

func TestConnPendingFirst(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &Conn{Conn: a}
	c.pending.Set([]byte("early"))
	defer c.Close()
	go func() { b.Write([]byte("later")) }()
	buf := make([]byte, 3)
	n, err := c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "ear", string(buf[:n]))
	assert.Equal(t, 2, c.Buffered())
	n, _ = c.Read(buf)
	assert.Equal(t, "ly", string(buf[:n]))
	n, _ = c.Read(buf)
	assert.Equal(t, "lat", string(buf[:n]))
	assert.ErrorIs(t, c.CloseWrite(), errors.ErrUnsupported, "net.Pipe has no CloseWrite")
	be := c.Backend()
	assert.Same(t, c, be.Conn)
}

func TestConnUnread(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &Conn{Conn: a}
	defer c.Close()
	go func() { b.Write([]byte("wire")) }()

	c.Unread(nil) // nothing to give back: no change
	assert.Equal(t, 0, c.Buffered())
	p := []byte("A1 OK\r\n")
	c.Unread(p)
	p[0] = 'X' // c keeps a copy
	c.pending.Set(append(drainPending(t, c), "tail"...))
	c.Unread([]byte("* 1 EXISTS\r\n")) // in front of what is buffered
	assert.Equal(t, len("* 1 EXISTS\r\nA1 OK\r\ntail"), c.Buffered())
	assert.Equal(t, "* 1 EXISTS\r\nA1 OK\r\ntail", string(drainPending(t, c)))

	c.pending.Set([]byte("A1 OK\r\n"))
	buf := make([]byte, 4)
	n, err := c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "A1 O", string(buf[:n]))
	c.Unread(buf[:n]) // a reader that read too far gives it back
	got := make([]byte, 0, 16)
	for len(got) < len("A1 OK\r\nwire") {
		n, err := c.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}
	assert.Equal(t, "A1 OK\r\nwire", string(got), "buffered bytes first, then the connection's")
	assert.Equal(t, 0, c.Buffered())
}

// drainPending takes and returns the bytes c has buffered, without
// reading from the connection.
func drainPending(t *testing.T, c *Conn) []byte {
	t.Helper()
	buf := make([]byte, c.Buffered())
	n, err := c.pending.Read(buf, errReader{})
	require.NoError(t, err)
	return buf[:n]
}

// errReader fails the read it should never get.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read from the stream") }

func TestStartTLSFailures(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	tests := []struct {
		name  string
		proto starttls.Protocol
		fake  func(f *fakeConn)
		err   error
	}{
		{"smtp no STARTTLS", starttls.SMTP, func(f *fakeConn) {
			f.send("220 x\r\n")
			f.line()
			f.send("250-x\r\n250 SIZE\r\n")
			f.line()
		}, starttls.ErrNoStartTLS},
		{"smtp refusal greeting", starttls.SMTP, greeter("421 busy\r\n"), ErrRefused},
		{"smtp injection after go-ahead", starttls.SMTP, func(f *fakeConn) {
			f.send("220 x\r\n")
			f.line()
			f.send("250-x\r\n250 STARTTLS\r\n")
			f.line()
			f.send("220 go\r\n250 injected\r\n")
			f.line()
		}, starttls.ErrInjection},
		{"imap preauth", starttls.IMAP, greeter("* PREAUTH hi\r\n"), ErrProtocol},
		{"pop3 no STLS", starttls.POP3, func(f *fakeConn) {
			f.send("+OK hi\r\n")
			f.line()
			f.send("+OK\r\nUSER\r\n.\r\n")
			f.line()
		}, starttls.ErrNoStartTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, tt.fake)
			d := &Dialer{Addr: srv.Addr(), Protocol: tt.proto, Security: starttls.STARTTLS, TLSConfig: &tls.Config{RootCAs: p.roots}}
			_, err := d.Dial(context.Background(), ClientInfo{})
			assert.ErrorIs(t, err, tt.err)
		})
	}
}

func TestStartTLSPOP3(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	srv := newFake(t, func(f *fakeConn) {
		f.send("+OK POP3 ready\r\n")
		f.expect("CAPA\r\n")
		f.send("+OK\r\nSTLS\r\nUSER\r\n.\r\n")
		f.expect("STLS\r\n")
		f.send("+OK begin TLS\r\n")
		if f.startTLS(p.server) && f.expect("QUIT\r\n") {
			f.send("221 bye\r\n")
		}
	})
	d := &Dialer{Addr: srv.Addr(), Protocol: starttls.POP3, Security: starttls.STARTTLS, TLSConfig: &tls.Config{RootCAs: p.roots}}
	c, err := d.Dial(context.Background(), ClientInfo{})
	require.NoError(t, err)
	assert.True(t, c.Upgraded)
	assert.Equal(t, "+OK POP3 ready\r\n", string(c.Greeting))
	quit(t, c)
	require.NoError(t, c.Close())
}
