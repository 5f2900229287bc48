package backend

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// smtpSession accepts everything; the tests only look at the dialogue.
type smtpSession struct{}

func (smtpSession) Reset()                               {}
func (smtpSession) Logout() error                        { return nil }
func (smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (smtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// realSMTP runs a go-smtp server, behind a PROXY listener (header
// required) if proxy is set, with implicit TLS if implicit is set and
// STARTTLS otherwise. remotes receives the client address go-smtp saw for
// each session (go-smtp creates the session at EHLO).
func realSMTP(t *testing.T, p pki, implicit, proxy bool) (addr string, remotes <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l := ln
	if proxy {
		l = &proxyproto.Listener{Listener: ln}
	}
	if implicit {
		l = tls.NewListener(l, p.server)
	}
	seen := make(chan string, 16)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		seen <- c.Conn().RemoteAddr().String()
		return smtpSession{}, nil
	}))
	srv.Domain = "mx.test"
	srv.TLSConfig = p.server
	srv.ErrorLog = quietLogger{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String(), seen
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
func (quietLogger) Println(...any)        {}

// smtpCmd sends cmd and returns the full reply.
func smtpCmd(t *testing.T, c net.Conn, br *bufio.Reader, cmd string) string {
	t.Helper()
	_, err := io.WriteString(c, cmd+"\r\n")
	require.NoError(t, err)
	rp, err := readReply(br, 1024)
	require.NoError(t, err)
	return string(rp.Raw)
}

func TestRealSMTP(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	client := ClientInfo{Src: &net.TCPAddr{IP: net.ParseIP("2001:db8::25"), Port: 4444}, Dst: &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 465}}
	tests := []struct {
		name     string
		implicit bool
		d        Dialer
		remote   string
	}{
		{name: "implicit TLS", implicit: true, d: Dialer{Security: starttls.TLS}},
		{name: "implicit TLS, PROXY v2", implicit: true, d: Dialer{Security: starttls.TLS, Proxy: ProxyV2}, remote: "[2001:db8::25]:4444"},
		{name: "STARTTLS", d: Dialer{Security: starttls.STARTTLS}},
		{name: "STARTTLS, PROXY v1", d: Dialer{Security: starttls.STARTTLS, Proxy: ProxyV1}, remote: "[2001:db8::25]:4444"},
		{name: "plain, XCLIENT best effort", d: Dialer{XCLIENT: true, IdentityBestEffort: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, remotes := realSMTP(t, p, tt.implicit, tt.d.Proxy != NoProxy)
			d := tt.d
			d.Addr, d.TLSConfig = addr, &tls.Config{RootCAs: p.roots}
			c, err := d.Dial(context.Background(), client)
			require.NoError(t, err)
			defer c.Close()
			assert.Equal(t, "220 mx.test ESMTP Service Ready\r\n", string(c.Greeting))
			assert.Equal(t, d.Security == starttls.STARTTLS, c.Upgraded)
			br := bufio.NewReader(c)
			ehlo := smtpCmd(t, c, br, "EHLO client.test")
			if remote := <-remotes; tt.remote != "" {
				assert.Equal(t, tt.remote, remote, "the address go-smtp saw")
			}
			assert.True(t, strings.HasPrefix(ehlo, "250-Hello client.test"), ehlo)
			if d.Security != starttls.Plain {
				assert.NotContains(t, ehlo, "STARTTLS", "over TLS STARTTLS is not offered again")
			}
			assert.True(t, strings.HasPrefix(smtpCmd(t, c, br, "QUIT"), "221"))
		})
	}
}

func TestRealSMTPNoXCLIENT(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, _ := realSMTP(t, p, false, false)
	_, err := (&Dialer{Addr: addr, XCLIENT: true}).Dial(context.Background(), ClientInfo{})
	assert.ErrorIs(t, err, ErrIdentity, "go-smtp v0.25.1 has no XCLIENT: fail loudly by default")
}

// realIMAP runs a go-imap v2 imapmemserver with user "u"/"p". STARTTLS is
// offered and LOGIN is refused before TLS.
func realIMAP(t *testing.T, p pki) string {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("u", "p"))
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}},
		TLSConfig: p.server,
		Logger:    quietLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// imapCmd sends a tagged command and returns the tagged answer line.
func imapCmd(t *testing.T, c net.Conn, br *bufio.Reader, tag, cmd string) string {
	t.Helper()
	_, err := io.WriteString(c, tag+" "+cmd+"\r\n")
	require.NoError(t, err)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, tag+" ") {
			return line
		}
	}
}

func TestRealIMAP(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr := realIMAP(t, p)
	client := ClientInfo{Src: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 5), Port: 5555}}
	tests := []struct {
		name  string
		d     Dialer
		login string // start of the tagged answer to LOGIN
	}{
		{name: "plain: LOGIN refused before TLS", d: Dialer{}, login: "a1 NO"},
		{name: "STARTTLS: LOGIN works", d: Dialer{Security: starttls.STARTTLS}, login: "a1 OK"},
		{name: "STARTTLS, ID best effort", d: Dialer{Security: starttls.STARTTLS, IMAPID: true, IdentityBestEffort: true}, login: "a1 OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d
			d.Addr, d.Protocol, d.TLSConfig = addr, starttls.IMAP, &tls.Config{RootCAs: p.roots}
			c, err := d.Dial(context.Background(), client)
			require.NoError(t, err)
			defer c.Close()
			assert.True(t, strings.HasPrefix(string(c.Greeting), "* OK"), string(c.Greeting))
			br := bufio.NewReader(c)
			assert.True(t, strings.HasPrefix(imapCmd(t, c, br, "a1", "LOGIN u p"), tt.login))
			assert.True(t, strings.HasPrefix(imapCmd(t, c, br, "a2", "LOGOUT"), "a2 OK"))
		})
	}
}

func TestRealIMAPNoID(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr := realIMAP(t, p)
	d := &Dialer{Addr: addr, Protocol: starttls.IMAP, IMAPID: true}
	_, err := d.Dial(context.Background(), ClientInfo{Src: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 5), Port: 5555}})
	assert.ErrorIs(t, err, ErrIdentity, "imapmemserver has no ID capability")
}
