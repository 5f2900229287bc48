package mailtest_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/require"
)

const (
	user = "demo@example.com"
	pass = "demo"
)

// startSystem starts a System on loopback, checks that it leaves no
// goroutine behind, and closes it when the test ends.
func startSystem(t *testing.T, opt mailtest.Options) (*mailtest.System, mailtest.Addrs) {
	t.Helper()
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	sys, err := mailtest.New(opt)
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sys.Close()) })
	return sys, addrs
}

// testMessage is a message with a dot-leading line and bare LFs, to
// exercise dot-stuffing and CRLF normalisation end to end.
const testMessage = "From: demo@example.com\r\nTo: demo@example.com\r\nSubject: hello\r\n\r\nfirst line\n.dot line\r\n..two dots\r\nlast line\r\n"

// submit sends msg over submission with AUTH PLAIN and returns any error.
func submit(t *testing.T, addr string, a sasl.Client, to []string, msg string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if a != nil {
		if err := c.Auth(a); err != nil {
			return err
		}
	}
	if err := c.SendMail("demo@example.com", to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// imapFetchAll logs in over IMAP and returns every INBOX message's body.
func imapFetchAll(t *testing.T, c *imapclient.Client) [][]byte {
	t.Helper()
	require.NoError(t, c.Login(user, pass).Wait())
	sel, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, sel.NumMessages)
	section := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	require.NoError(t, err)
	var out [][]byte
	for _, b := range bufs {
		out = append(out, b.FindBodySection(section))
	}
	return out
}

// pop3Client is a scripted POP3 client for dialogue tests.
type pop3Client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialPOP3(t *testing.T, addr string) *pop3Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	p := &pop3Client{t: t, conn: conn, br: bufio.NewReader(conn)}
	require.True(t, strings.HasPrefix(p.line(), "+OK"))
	return p
}

func (p *pop3Client) setConn(c net.Conn) {
	p.conn, p.br = c, bufio.NewReader(c)
}

// line reads one response line without CRLF.
func (p *pop3Client) line() string {
	p.t.Helper()
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	l, err := p.br.ReadString('\n')
	require.NoError(p.t, err)
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the status line.
func (p *pop3Client) cmd(line string) string {
	p.t.Helper()
	_, err := io.WriteString(p.conn, line+"\r\n")
	require.NoError(p.t, err)
	return p.line()
}

// multi reads a multi-line body, undoing dot-stuffing; lines end in CRLF.
func (p *pop3Client) multi() []byte {
	p.t.Helper()
	var b bytes.Buffer
	for {
		l := p.line()
		if l == "." {
			return b.Bytes()
		}
		b.WriteString(strings.TrimPrefix(l, "."))
		b.WriteString("\r\n")
	}
}

func (p *pop3Client) login() {
	p.t.Helper()
	require.True(p.t, strings.HasPrefix(p.cmd("USER "+user), "+OK"))
	resp := p.cmd("PASS " + pass)
	require.True(p.t, strings.HasPrefix(resp, "+OK"), "PASS: %s", resp)
}

// logBuffer is a concurrency-safe buffer for a slog text handler.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
