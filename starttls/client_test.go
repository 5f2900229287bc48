package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/nbconn"
	"github.com/mailedge/mailedge/internal/prefixconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upgradeAndPing runs Upgrade against addr and checks that data flows over
// the resulting TLS conn.
func upgradeAndPing(t *testing.T, c *Client, addr string) *Upgraded {
	t.Helper()
	up, err := c.Upgrade(context.Background(), dial(t, addr))
	require.NoError(t, err)
	_, err = up.Conn.Write([]byte("ping\r\n"))
	require.NoError(t, err)
	l, err := bufio.NewReader(up.Conn).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "tls ok\r\n", l)
	assert.True(t, up.Conn.ConnectionState().HandshakeComplete)
	require.NoError(t, up.Conn.Close())
	return up
}

func TestClientUpgradeSMTP(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	addr, tr := scripted(t, pki.server,
		send("220-mail.test ESMTP\r\n220 second line\r\n"),
		expect("EHLO proxy.test"),
		send("250-mail.test hello\r\n250-PIPELINING\r\n250-starttls\r\n250 SIZE 1000\r\n"),
		expect("STARTTLS"),
		send("220 2.0.0 Ready to start TLS\r\n"),
		startTLS,
	)
	c := &Client{Protocol: SMTP, TLSConfig: pki.client, Hostname: "proxy.test"}
	up := upgradeAndPing(t, c, addr)
	assert.Equal(t, "220-mail.test ESMTP\r\n220 second line\r\n", string(up.Greeting))
	assert.Equal(t, []string{"PIPELINING", "starttls", "SIZE 1000"}, up.Capabilities)
	assert.Equal(t, []string{"EHLO proxy.test", "STARTTLS"}, tr.get())
}

// TestClientUpgradeUnderPrefix: a conn whose greeting was read ahead
// (backend's STARTTLS dial replays it through a prefixconn) still gets the
// non-blocking socket under its TLS session once the prefix is read, so
// the bridge can park the session.
func TestClientUpgradeUnderPrefix(t *testing.T) {
	leaktest.Check(t)
	pki := newPKI(t)
	addr, _ := scripted(t, pki.server,
		expect("EHLO proxy.test"),
		send("250-mail.test hello\r\n250 STARTTLS\r\n"),
		expect("STARTTLS"),
		send("220 2.0.0 Ready to start TLS\r\n"),
		startTLS,
	)
	c := &Client{Protocol: SMTP, TLSConfig: pki.client, Hostname: "proxy.test"}
	conn := prefixconn.New(dial(t, addr), []byte("220 mail.test ESMTP\r\n"))
	up, err := c.Upgrade(context.Background(), conn)
	require.NoError(t, err)
	defer up.Conn.Close()
	assert.IsType(t, &nbconn.Conn{}, up.Conn.NetConn())
}

func TestClientUpgradeIMAP(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	tests := []struct {
		name     string
		steps    []step
		wantCaps []string
		wantSent []string
	}{{
		name: "capability command",
		steps: []step{
			send("* OK IMAP ready\r\n"),
			expect("A1 CAPABILITY"),
			send("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\nA1 OK done\r\n"),
			expect("A2 STARTTLS"),
			send("A2 OK Begin TLS negotiation now\r\n"),
			startTLS,
		},
		wantCaps: []string{"IMAP4rev1", "STARTTLS", "LOGINDISABLED"},
		wantSent: []string{"A1 CAPABILITY", "A2 STARTTLS"},
	}, {
		name: "greeting code, harmless untagged CAPABILITY before the OK",
		steps: []step{
			send("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
			expect("A2 STARTTLS"),
			send("* CAPABILITY IMAP4rev1 EVIL\r\nA2 ok go\r\n"),
			startTLS,
		},
		wantCaps: []string{"IMAP4rev1", "STARTTLS"},
		wantSent: []string{"A2 STARTTLS"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, tr := scripted(t, pki.server, tt.steps...)
			up := upgradeAndPing(t, &Client{Protocol: IMAP, TLSConfig: pki.client}, addr)
			assert.Equal(t, tt.wantCaps, up.Capabilities)
			assert.Equal(t, tt.wantSent, tr.get())
			assert.Equal(t, tt.steps[0].send, string(up.Greeting))
		})
	}
}

func TestClientUpgradePOP3(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	addr, tr := scripted(t, pki.server,
		send("+OK POP3 ready <1.2@mail.test>\r\n"),
		expect("CAPA"),
		send("+OK list\r\nUSER\r\nSTLS\r\n..dotted\r\n.\r\n"),
		expect("STLS"),
		send("+OK Begin TLS\r\n"),
		startTLS,
	)
	up := upgradeAndPing(t, &Client{Protocol: POP3, TLSConfig: pki.client}, addr)
	assert.Equal(t, "+OK POP3 ready <1.2@mail.test>\r\n", string(up.Greeting))
	assert.Equal(t, []string{"USER", "STLS", ".dotted"}, up.Capabilities)
	assert.Equal(t, []string{"CAPA", "STLS"}, tr.get())
}

func TestClientConfig(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	tests := []struct {
		name string
		c    Client
	}{
		{"no TLSConfig", Client{Protocol: SMTP}},
		{"no ServerName", Client{Protocol: SMTP, TLSConfig: &tls.Config{}}},
		{"unknown protocol", Client{Protocol: Protocol(9), TLSConfig: &tls.Config{ServerName: "x"}}},
		{"bad hostname", Client{Protocol: SMTP, Hostname: "a\r\nRSET", TLSConfig: &tls.Config{ServerName: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, tr := scripted(t, nil, send("220 hi\r\n"), expect("never"))
			conn := dial(t, addr)
			_, err := tt.c.Upgrade(context.Background(), conn)
			assert.ErrorIs(t, err, ErrConfig)
			_, werr := conn.Write([]byte("x"))
			assert.ErrorIs(t, werr, net.ErrClosed, "got %v; want the conn closed on error", werr)
			assert.Empty(t, tr.get())
		})
	}
}

func TestClientDefaults(t *testing.T) {
	var c Client
	assert.Equal(t, 30*time.Second, c.timeout())
	assert.Equal(t, 8192, c.maxLine())
	assert.Equal(t, "localhost", c.hostname())
}

// recordConn records the deadlines set on it.
type recordConn struct {
	net.Conn
	deadlines []time.Time
}

func (c *recordConn) SetDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return c.Conn.SetDeadline(t)
}

func TestClientClearsDeadline(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	addr, _ := scripted(t, pki.server,
		send("+OK hi\r\n"), expect("CAPA"), send("+OK\r\nSTLS\r\n.\r\n"),
		expect("STLS"), send("+OK go\r\n"), startTLS)
	rc := &recordConn{Conn: dial(t, addr)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	up, err := (&Client{Protocol: POP3, TLSConfig: pki.client, Timeout: 2 * time.Hour}).Upgrade(ctx, rc)
	require.NoError(t, err)
	defer up.Conn.Close()
	require.GreaterOrEqual(t, len(rc.deadlines), 2)
	ctxDeadline, _ := ctx.Deadline()
	assert.Equal(t, ctxDeadline, rc.deadlines[0], "got %v; want the earlier ctx deadline", rc.deadlines[0])
	assert.True(t, rc.deadlines[len(rc.deadlines)-1].IsZero(), "deadline left on the conn")
}

func TestClientTimeoutAndCancel(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	t.Run("silent backend, Timeout", func(t *testing.T) {
		addr, _ := scripted(t, pki.server, hold)
		c := &Client{Protocol: SMTP, TLSConfig: pki.client, Timeout: 50 * time.Millisecond}
		_, err := c.Upgrade(context.Background(), dial(t, addr))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("silent after go-ahead, ctx deadline", func(t *testing.T) {
		addr, _ := scripted(t, pki.server, send("+OK\r\n"), expect("CAPA"), send("+OK\r\nSTLS\r\n.\r\n"),
			expect("STLS"), send("+OK\r\n"), hold)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := (&Client{Protocol: POP3, TLSConfig: pki.client}).Upgrade(ctx, dial(t, addr))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("cancel while waiting", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		ctx, cancel := context.WithCancel(context.Background())
		conn := dial(t, ln.Addr().String())
		peer := <-accepted
		require.NotNil(t, peer)
		defer peer.Close()
		done := make(chan error, 1)
		go func() {
			_, err := (&Client{Protocol: IMAP, TLSConfig: pki.client}).Upgrade(ctx, conn)
			done <- err
		}()
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}
