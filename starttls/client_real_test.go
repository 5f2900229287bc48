package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/mailwire"
)

// smtpSession accepts everything and stores nothing.
type smtpSession struct{}

func (smtpSession) Reset()                               {}
func (smtpSession) Logout() error                        { return nil }
func (smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (smtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func newSMTPSession(*smtp.Conn) (smtp.Session, error)    { return smtpSession{}, nil }
func serveLoop(wg *sync.WaitGroup, serve func(net.Listener) error, ln net.Listener) {
	defer wg.Done()
	serve(ln)
}

// realSMTP starts a go-smtp server offering STARTTLS with cfg.
func realSMTP(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	s := smtp.NewServer(smtp.BackendFunc(newSMTPSession))
	s.Domain = "mail.test"
	s.TLSConfig = cfg
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	return serveReal(t, s.Serve, func() error {
		// Shutdown, not Close: go-smtp's Close races with a STARTTLS in
		// progress; the test's conns are closed first (cleanups run LIFO).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.Shutdown(ctx)
	})
}

// realIMAP starts an imapmemserver offering STARTTLS with cfg.
func realIMAP(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("bob", "secret")
	require.NoError(t, user.Create("INBOX", nil))
	mem.AddUser(user)
	s := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}},
		TLSConfig: cfg,
		Logger:    nopLogger{},
	})
	return serveReal(t, s.Serve, s.Close)
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func serveReal(t *testing.T, serve func(net.Listener) error, closeFn func() error) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go serveLoop(&wg, serve, ln)
	t.Cleanup(func() {
		closeFn()
		wg.Wait()
	})
	return ln.Addr().String()
}

// exchange writes cmd on c and reads lines until one starts with last.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, cmd, last string) string {
	t.Helper()
	_, err := io.WriteString(c, cmd)
	require.NoError(t, err)
	var b strings.Builder
	for {
		l, err := br.ReadString('\n')
		require.NoError(t, err)
		b.WriteString(l)
		if strings.HasPrefix(l, last) {
			return b.String()
		}
	}
}

// upgradeReal starts a real server for p (go-smtp or imapmemserver, with
// STARTTLS) and upgrades a connection to it with Client, checking for
// goroutine and descriptor leaks.
func upgradeReal(t *testing.T, p Protocol) *Upgraded {
	t.Helper()
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newPKI(t)
	start := realSMTP
	if p == IMAP {
		start = realIMAP
	}
	addr := start(t, pki.server)
	up, err := (&Client{Protocol: p, TLSConfig: pki.client}).Upgrade(context.Background(), dial(t, addr))
	require.NoError(t, err)
	return up
}

// handoverUpgraded runs Handover for an implicit-TLS client that already
// sent input, toward the upgraded backend up; it returns the client's peer
// end and Handover's conns.
func handoverUpgraded(t *testing.T, p Protocol, up *Upgraded, input string) (peer, client, server net.Conn) {
	t.Helper()
	cProxy, cPeer := tcpPair(t)
	_, err := io.WriteString(cPeer, input)
	require.NoError(t, err)
	s := &Session{Protocol: p, Conn: cProxy, TLS: true, Implicit: true}
	client, server, err = Handover(context.Background(), s, Backend{Conn: up.Conn, Greeting: up.Greeting, Upgraded: true})
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return cPeer, client, server
}

func TestClientRealSMTP(t *testing.T) {
	up := upgradeReal(t, SMTP)
	defer up.Conn.Close()
	assert.True(t, strings.HasPrefix(string(up.Greeting), "220 mail.test"), "greeting %q", up.Greeting)
	assert.True(t, mailwire.HasKeyword(up.Capabilities, "STARTTLS"))
	reply := exchange(t, up.Conn, bufio.NewReader(up.Conn), "EHLO proxy.test\r\n", "250 ")
	assert.NotContains(t, reply, "STARTTLS", "got %q over TLS", reply)
}

func TestClientRealIMAP(t *testing.T) {
	up := upgradeReal(t, IMAP)
	defer up.Conn.Close()
	assert.True(t, hasCap(up.Capabilities, "STARTTLS"))
	assert.Contains(t, string(up.Greeting), "[CAPABILITY ")
	br := bufio.NewReader(up.Conn)
	reply := exchange(t, up.Conn, br, "x LOGIN bob secret\r\n", "x ")
	assert.Contains(t, reply, "x OK", "login over TLS: %q", reply)
}

// TestHandoverRealIMAPUpgraded runs the row "implicit TLS client, STARTTLS
// backend": Upgrade toward imapmemserver, then Handover replays the saved
// greeting without its stale code and filters the first CAPABILITY.
func TestHandoverRealIMAPUpgraded(t *testing.T) {
	up := upgradeReal(t, IMAP)
	cPeer, client, _ := handoverUpgraded(t, IMAP, up, "a1 CAPABILITY\r\n")
	_, wrapped := client.(*prefixConn)
	assert.False(t, wrapped, "nothing was left for the copy")
	br := bufio.NewReader(cPeer)
	greeting, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "* OK IMAP server ready\r\n", greeting)
	capLine, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(capLine, "* CAPABILITY IMAP4rev1"), "got %q", capLine)
	assert.NotContains(t, capLine, "STARTTLS")
	assert.NotContains(t, capLine, "LOGINDISABLED")
	done, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(done, "a1 OK"), "got %q", done)
}

// TestHandoverRealSMTPUpgraded is the same row for go-smtp: the client's
// EHLO reaches the backend over TLS after the saved greeting is replayed.
func TestHandoverRealSMTPUpgraded(t *testing.T) {
	up := upgradeReal(t, SMTP)
	cPeer, client, server := handoverUpgraded(t, SMTP, up, "EHLO client.test\r\nNOOP\r\n")
	br := bufio.NewReader(cPeer)
	got := exchange(t, cPeer, br, "", "250 ")
	assert.Equal(t, string(up.Greeting), got[:len(up.Greeting)])
	assert.Contains(t, got, "250-Hello client.test\r\n")
	assert.NotContains(t, got, "STARTTLS")
	// The pipelined NOOP was left for the copy: the returned client conn
	// yields it first. Forward it as the bridge would.
	pc, ok := client.(*prefixConn)
	require.True(t, ok, "the pipelined NOOP stays with the client conn")
	_, err := io.CopyN(server, pc, int64(pc.Buffered()))
	require.NoError(t, err)
	// The NOOP answer comes through the returned server conn.
	noop, err := bufio.NewReader(server).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(noop, "250 "), "got %q", noop)
}
