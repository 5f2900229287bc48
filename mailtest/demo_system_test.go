package mailtest_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wantBody is testMessage as stored: CRLF everywhere.
var wantBody = strings.ReplaceAll(strings.ReplaceAll(testMessage, "\r\n", "\n"), "\n", "\r\n")

// TestSubmitReadEverywhere submits over SMTP with AUTH PLAIN and reads the
// message over IMAP, POP3 and Messages: all three byte for byte equal.
func TestSubmitReadEverywhere(t *testing.T) {
	sys, addrs := startSystem(t, mailtest.Options{})
	require.NoError(t, submit(t, addrs.Submission, sasl.NewPlainClient("", user, pass), []string{user}, testMessage))

	c, err := imapclient.DialInsecure(addrs.IMAP, nil)
	require.NoError(t, err)
	defer c.Close()
	viaIMAP := imapFetchAll(t, c)
	require.Len(t, viaIMAP, 1)
	got := string(viaIMAP[0])
	assert.True(t, strings.HasSuffix(got, wantBody), "IMAP body %q; want suffix %q", got, wantBody)
	assert.True(t, strings.HasPrefix(got, "Return-Path: <demo@example.com>\r\nReceived: from client.example (127.0.0.1:"), "trace headers: %q", got)
	assert.Contains(t, got, "with ESMTPA id ")

	p := dialPOP3(t, addrs.POP3)
	p.login()
	assert.Equal(t, "+OK "+strconv.Itoa(len(got))+" octets", p.cmd("RETR 1"))
	assert.Equal(t, got, string(p.multi()), "POP3 RETR differs from IMAP FETCH")
	assert.True(t, strings.HasPrefix(p.cmd("QUIT"), "+OK"))

	msgs, err := sys.Messages(context.Background(), user)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Equal(t, got, string(msgs[0]))
}

func TestSMTPRefusals(t *testing.T) {
	_, addrs := startSystem(t, mailtest.Options{MaxMessageBytes: 1024})
	tests := []struct {
		name     string
		addr     string
		auth     sasl.Client
		to       []string
		msg      string
		wantCode int
		wantEnh  smtp.EnhancedCode
		wantText string
	}{
		{name: "submission without AUTH", addr: addrs.Submission, to: []string{user}, msg: testMessage,
			wantCode: 530, wantEnh: smtp.EnhancedCode{5, 7, 0}, wantText: "Authentication required"},
		{name: "submission bad password", addr: addrs.Submission, auth: sasl.NewPlainClient("", user, "wrong"), to: []string{user}, msg: testMessage,
			wantCode: 535, wantEnh: smtp.EnhancedCode{5, 7, 8}},
		{name: "submission unknown local user", addr: addrs.Submission, auth: sasl.NewPlainClient("", user, pass), to: []string{"nobody@example.net"}, msg: testMessage,
			wantCode: 550, wantEnh: smtp.EnhancedCode{5, 1, 1}, wantText: "User unknown"},
		{name: "MX relay to foreign domain", addr: addrs.MX, to: []string{"victim@example.invalid"}, msg: testMessage,
			wantCode: 554, wantEnh: smtp.EnhancedCode{5, 7, 1}, wantText: "<victim@example.invalid>: Relay access denied"},
		{name: "MX has no AUTH", addr: addrs.MX, auth: sasl.NewPlainClient("", user, pass), to: []string{user}, msg: testMessage,
			wantCode: 502, wantEnh: smtp.EnhancedCode{5, 7, 0}, wantText: "Authentication not supported"},
		{name: "MX message too large", addr: addrs.MX, to: []string{user}, msg: "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 30),
			wantCode: 552, wantEnh: smtp.EnhancedCode{5, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := submit(t, tt.addr, tt.auth, tt.to, tt.msg)
			require.Error(t, err)
			var se *smtp.SMTPError
			require.True(t, errors.As(err, &se), "error %v is not an SMTP reply", err)
			assert.Equal(t, tt.wantCode, se.Code)
			assert.Equal(t, tt.wantEnh, se.EnhancedCode)
			assert.Contains(t, se.Message, tt.wantText, "message %q", se.Message)
		})
	}
}

func TestSMTPAccepts(t *testing.T) {
	sys, addrs := startSystem(t, mailtest.Options{Users: map[string]string{user: pass, "Other@Example.ORG": "pw"}})
	tests := []struct {
		name string
		addr string
		auth sasl.Client
		to   []string
		want map[string]int // messages per account after the send
	}{
		{name: "MX to local users, any case", addr: addrs.MX, to: []string{"DEMO@example.com", "other@example.org"},
			want: map[string]int{user: 1, "other@example.org": 1}},
		{name: "submission AUTH LOGIN", addr: addrs.Submission, auth: sasl.NewLoginClient(user, pass), to: []string{"other@example.org"},
			want: map[string]int{user: 1, "other@example.org": 2}},
		{name: "submission relays foreign for authenticated users", addr: addrs.Submission, auth: sasl.NewPlainClient("", user, pass),
			to: []string{"someone@example.invalid", user}, want: map[string]int{user: 2, "other@example.org": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, submit(t, tt.addr, tt.auth, tt.to, testMessage))
			for acct, n := range tt.want {
				msgs, err := sys.Messages(context.Background(), acct)
				require.NoError(t, err)
				assert.Len(t, msgs, n, "messages of %s", acct)
			}
		})
	}
}

// TestAUTHAdvertised checks the EHLO keywords: AUTH on submission only.
func TestAUTHAdvertised(t *testing.T) {
	_, addrs := startSystem(t, mailtest.Options{})
	tests := []struct {
		name     string
		addr     string
		wantAUTH bool
	}{
		{name: "submission", addr: addrs.Submission, wantAUTH: true},
		{name: "MX", addr: addrs.MX, wantAUTH: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := smtp.Dial(tt.addr)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.Hello("client.example"))
			ok, mechs := c.Extension("AUTH")
			assert.Equal(t, tt.wantAUTH, ok, "AUTH advertised")
			if tt.wantAUTH {
				assert.Equal(t, "PLAIN LOGIN", mechs)
			}
			starttls, _ := c.Extension("STARTTLS")
			assert.False(t, starttls, "STARTTLS offered without a TLS config")
		})
	}
}

// TestHELOFirst checks that both SMTP servers refuse MAIL before EHLO/HELO.
func TestHELOFirst(t *testing.T) {
	_, addrs := startSystem(t, mailtest.Options{})
	for _, tt := range []struct{ name, addr string }{{"submission", addrs.Submission}, {"MX", addrs.MX}} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := textproto.Dial("tcp", tt.addr)
			require.NoError(t, err)
			defer conn.Close()
			_, _, err = conn.ReadResponse(220)
			require.NoError(t, err)
			id, err := conn.Cmd("MAIL FROM:<a@example.com>")
			require.NoError(t, err)
			conn.StartResponse(id)
			code, msg, err := conn.ReadResponse(250)
			conn.EndResponse(id)
			require.Error(t, err)
			assert.Equal(t, 502, code)
			assert.Equal(t, "5.5.1 Please introduce yourself first.", msg)
		})
	}
}

// TestProxyHeader sends a PROXY v2 header from loopback and finds the
// client address it names in the Received field and in the log.
func TestProxyHeader(t *testing.T) {
	var logs logBuffer
	sys, addrs := startSystem(t, mailtest.Options{AcceptProxy: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	conn, err := net.Dial("tcp", addrs.MX)
	require.NoError(t, err)
	src := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}
	_, err = proxyproto.HeaderProxyFromAddrs(2, src, conn.RemoteAddr()).WriteTo(conn)
	require.NoError(t, err)
	c := smtp.NewClient(conn)
	defer c.Close()
	require.NoError(t, c.Hello("client.example"))
	require.NoError(t, c.SendMail("a@example.net", []string{user}, strings.NewReader(testMessage)))
	require.NoError(t, c.Quit())

	msgs, err := sys.Messages(context.Background(), user)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Received: from client.example (192.0.2.7:40000)")
	assert.Contains(t, logs.String(), "client=192.0.2.7:40000")
}

// TestProxyHeaderRequiredFromLoopback: with AcceptProxy, a loopback peer
// that sends no header is not served as if it were the client.
func TestProxyHeaderRequiredFromLoopback(t *testing.T) {
	_, addrs := startSystem(t, mailtest.Options{AcceptProxy: true})
	conn, err := net.Dial("tcp", addrs.POP3)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("CAPA\r\n")) // not a PROXY header
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	assert.Error(t, err, "got %q; want the connection closed", buf[:n])
}

func TestDeliverAndMessages(t *testing.T) {
	sys, _ := startSystem(t, mailtest.Options{})
	tests := []struct {
		name    string
		to      string
		wantErr error
	}{
		{name: "local user", to: "Demo@Example.com"},
		{name: "unknown user", to: "nobody@example.com", wantErr: mailtest.ErrUnknownUser},
		{name: "foreign domain", to: "a@example.invalid", wantErr: mailtest.ErrNotLocal},
		{name: "not an address", to: "demo", wantErr: mailtest.ErrNotLocal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sys.Deliver(tt.to, []byte("Subject: x\n\nbody\n"))
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
	msgs, err := sys.Messages(context.Background(), user)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("Subject: x\r\n\r\nbody\r\n")}, msgs)
	_, err = sys.Messages(context.Background(), "nobody@example.com")
	assert.ErrorIs(t, err, mailtest.ErrUnknownUser)
}

func TestNewRejectsBadUser(t *testing.T) {
	_, err := mailtest.New(mailtest.Options{Users: map[string]string{"demo": "x"}})
	assert.ErrorIs(t, err, mailtest.ErrBadOptions)
}

// TestCloseWithOpenSessions leaves a session open on every service and
// checks that Close ends them all and every goroutine, and that the System
// refuses work afterwards.
func TestCloseWithOpenSessions(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	addrs, err := sys.Start(ctx)
	require.NoError(t, err)

	ic, err := imapclient.DialInsecure(addrs.IMAP, nil)
	require.NoError(t, err)
	defer ic.Close()
	require.NoError(t, ic.Login(user, pass).Wait())
	sc, err := smtp.Dial(addrs.MX)
	require.NoError(t, err)
	defer sc.Close()
	require.NoError(t, sc.Hello("client.example"))
	p := dialPOP3(t, addrs.POP3)
	p.login() // holds an in-process IMAP session too

	cancel() // ending Start's context closes the System
	require.NoError(t, sys.Close())
	<-ic.Closed()
	assert.ErrorIs(t, sys.Deliver(user, []byte("x")), mailtest.ErrClosed)
	_, err = sys.Messages(context.Background(), user)
	assert.ErrorIs(t, err, mailtest.ErrClosed)
	_, err = sys.Start(context.Background())
	assert.ErrorIs(t, err, mailtest.ErrClosed)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, sys.ServeIMAP(l), mailtest.ErrClosed)
}
