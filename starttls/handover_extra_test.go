package starttls

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/prefixconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

func TestHandoverEdges(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	long := "a1 ID (" + strings.Repeat("x", maxHandoverLine) + ")\r\n"
	tests := []handoverCase{
		{name: "imap/literal in CAPABILITY answer is copied, not parsed",
			session: withProto(proxyTLS, IMAP), input: "a1 CAPABILITY\r\na2 LOGOUT\r\n",
			fake: fakeBackend{proto: IMAP, greeting: "* OK hi\r\n", override: map[string]string{
				"CAPABILITY": "* CAPABILITY IMAP4rev1 STARTTLS\r\n* OK [ALERT] {9}\r\na1 OK x\r\n STARTTLS\r\nTAG OK done\r\n",
			}},
			wantClient:  "* CAPABILITY IMAP4rev1\r\n* OK [ALERT] {9}\r\na1 OK x\r\n STARTTLS\r\na1 OK done\r\n* BYE\r\na2 OK bye\r\n",
			wantBackend: []string{"a1 CAPABILITY", "a2 LOGOUT"}},
		{name: "imap/over-long first line is forwarded unparsed",
			session: withProto(proxyTLS, IMAP), input: long + "a2 LOGOUT\r\n",
			fake:        fakeBackend{proto: IMAP, greeting: "* OK hi\r\n"},
			wantClient:  "a1 OK ID done\r\n* BYE\r\na2 OK bye\r\n",
			wantBackend: []string{strings.TrimSuffix(long, "\r\n"), "a2 LOGOUT"}},
		{name: "smtp/trailing bytes after a saved greeting",
			session: withProto(implicitTLS, SMTP), fake: fakeBackend{proto: SMTP},
			backend:    Backend{Greeting: []byte("220 hi\r\n250 extra\r\n")},
			wantClient: "421 4.3.2 localhost Service not available\r\n", wantErr: ErrBadResponse},
		{name: "smtp/bad replayed verb",
			session: withPending(Session{Protocol: SMTP, HeloVerb: "MAIL", Helo: "x"}, "QUIT\r\n"),
			fake:    fakeBackend{proto: SMTP, greeting: "220 hi\r\n"}, wantErr: ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runHandover(t, tt) })
	}
}

// TestHandoverBackendHangup: a backend that closes in the middle of the
// EHLO reply Handover must filter fails the handover and closes both conns.
func TestHandoverBackendHangup(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	cProxy, cPeer := tcpPair(t)
	bProxy, bPeer := tcpPair(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer bPeer.Close()
		io.WriteString(bPeer, "220 hi\r\n")
		buf := make([]byte, 64)
		if _, err := bPeer.Read(buf); err == nil {
			io.WriteString(bPeer, "250-half\r\n")
		}
	}()
	defer wg.Wait()
	_, err := io.WriteString(cPeer, "EHLO c\r\n")
	require.NoError(t, err)
	s := &Session{Protocol: SMTP, Conn: cProxy, TLS: true}
	_, _, err = Handover(context.Background(), s, Backend{Conn: bProxy})
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, werr := cProxy.Write([]byte("x"))
	assert.ErrorIs(t, werr, net.ErrClosed, "got %v; want the client conn closed on error", werr)
}

func TestHandoverDeadline(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	cProxy, cPeer := tcpPair(t)
	bProxy, bPeer := tcpPair(t)
	_, err := io.WriteString(bPeer, "* OK hi\r\n")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s := &Session{Protocol: IMAP, Conn: cProxy, TLS: true}
	_, _, err = Handover(ctx, s, Backend{Conn: bProxy})
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a client that never sends its first command")
	got, err := io.ReadAll(cPeer)
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = io.ReadAll(bPeer)
	require.NoError(t, err)
	assert.Empty(t, got, "nothing reaches the backend")
}

// TestHandoverSilentClient: a TLS client that never sends its first
// command no longer holds Handover when ctx has no deadline; the wait ends
// at the first-command timeout (DefaultFirstCommandTimeout in Handover,
// shortened here) with both conns closed and nothing sent to the backend.
func TestHandoverSilentClient(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, s := range []Session{
		{Protocol: SMTP, TLS: true},
		{Protocol: IMAP, TLS: true, Implicit: true},
		{Protocol: POP3, TLS: true},
	} {
		t.Run(s.Protocol.String(), func(t *testing.T) {
			cProxy, cPeer := tcpPair(t)
			bProxy, bPeer := tcpPair(t)
			greeting := map[Protocol]string{SMTP: "220 hi\r\n", IMAP: "* OK hi\r\n", POP3: "+OK hi\r\n"}[s.Protocol]
			_, err := io.WriteString(bPeer, greeting)
			require.NoError(t, err)
			s.Conn = cProxy
			_, _, err = handoverConns(context.Background(), &s, Backend{Conn: bProxy}, false, 20*time.Millisecond)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			assert.Contains(t, err.Error(), "no first command")
			_, err = cProxy.Write([]byte("x"))
			assert.ErrorIs(t, err, net.ErrClosed, "the client conn is closed")
			got, err := io.ReadAll(bPeer)
			require.NoError(t, err)
			assert.Empty(t, got, "nothing reaches the backend")
			got, err = io.ReadAll(cPeer)
			require.NoError(t, err)
			if s.Implicit {
				assert.Equal(t, greeting, string(got), "the greeting, then the close")
			} else {
				assert.Empty(t, got)
			}
		})
	}
}

func TestHandoverCancel(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	cProxy, _ := tcpPair(t)
	bProxy, _ := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := Handover(ctx, &Session{Protocol: POP3, Conn: cProxy}, Backend{Conn: bProxy})
		done <- err
	}()
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled, "a backend that never greets")
}

func TestHandoverNoConn(t *testing.T) {
	_, _, err := Handover(context.Background(), nil, Backend{})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestPrefixConn(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	a, b := tcpPair(t)
	pc := prefixconn.New(a, []byte("early "))
	_, err := io.WriteString(b, "late")
	require.NoError(t, err)
	require.NoError(t, b.(*net.TCPConn).CloseWrite())
	got, err := io.ReadAll(pc)
	require.NoError(t, err)
	assert.Equal(t, "early late", string(got))
	assert.NoError(t, pc.CloseWrite())
	piped := &prefixConn{Conn: nopCloseWriteConn{}}
	assert.Error(t, piped.CloseWrite())
}

type nopCloseWriteConn struct{ net.Conn }

func TestPrefixConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		ln, err := nettest.NewLocalListener("tcp")
		if err != nil {
			return nil, nil, nil, err
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		d, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		a := <-accepted
		c1, c2 = &prefixConn{Conn: d}, &prefixConn{Conn: a}
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}
