package mailtest_test

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startTLSSystem starts a System with a certificate for mail.example.com
// and returns a client config that trusts it.
func startTLSSystem(t *testing.T) (*mailtest.System, mailtest.Addrs, *tls.Config) {
	t.Helper()
	ca, err := mailtest.GenerateCA("demo test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	sys, addrs := startSystem(t, mailtest.Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}})
	return sys, addrs, &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"}
}

// TestSMTPOverTLS submits over STARTTLS and implicit TLS; the Received
// field says ESMTPSA (RFC 3848).
func TestSMTPOverTLS(t *testing.T) {
	sys, addrs, cfg := startTLSSystem(t)
	tests := []struct {
		name string
		dial func() (*smtp.Client, error)
	}{
		{name: "STARTTLS", dial: func() (*smtp.Client, error) { return smtp.DialStartTLS(addrs.Submission, cfg) }},
		{name: "implicit TLS", dial: func() (*smtp.Client, error) { return smtp.DialTLS(addrs.Submissions, cfg) }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dial()
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.Hello("client.example"))
			starttls, _ := c.Extension("STARTTLS")
			assert.False(t, starttls, "STARTTLS offered again after TLS")
			require.NoError(t, c.Auth(sasl.NewPlainClient("", user, pass)))
			require.NoError(t, c.SendMail(user, []string{user}, strings.NewReader(testMessage)))
			require.NoError(t, c.Quit())
			msgs, err := sys.Messages(t.Context(), user)
			require.NoError(t, err)
			require.Len(t, msgs, i+1)
			assert.Contains(t, string(msgs[i]), "with ESMTPSA id ")
		})
	}
}

func TestIMAPOverTLS(t *testing.T) {
	sys, addrs, cfg := startTLSSystem(t)
	require.NoError(t, sys.Deliver(user, []byte(testMessage)))
	opt := &imapclient.Options{TLSConfig: cfg}
	tests := []struct {
		name string
		dial func() (*imapclient.Client, error)
	}{
		{name: "STARTTLS", dial: func() (*imapclient.Client, error) { return imapclient.DialStartTLS(addrs.IMAP, opt) }},
		{name: "implicit TLS", dial: func() (*imapclient.Client, error) { return imapclient.DialTLS(addrs.IMAPS, opt) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dial()
			require.NoError(t, err)
			defer c.Close()
			msgs := imapFetchAll(t, c)
			require.Len(t, msgs, 1)
			assert.Equal(t, wantBody, string(msgs[0]))
		})
	}
}

func TestPOP3OverTLS(t *testing.T) {
	sys, addrs, cfg := startTLSSystem(t)
	require.NoError(t, sys.Deliver(user, []byte(testMessage)))
	t.Run("STLS", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		require.Equal(t, "+OK capability list follows", p.cmd("CAPA"))
		assert.Contains(t, string(p.multi()), "STLS\r\n")
		require.Equal(t, "+OK begin TLS negotiation", p.cmd("STLS"))
		tc := tls.Client(p.conn, cfg)
		require.NoError(t, tc.HandshakeContext(t.Context()))
		p.setConn(tc)
		require.Equal(t, "+OK capability list follows", p.cmd("CAPA"))
		assert.NotContains(t, string(p.multi()), "STLS", "STLS offered again after TLS")
		assert.Equal(t, "-ERR STLS not available", p.cmd("STLS"))
		p.login()
		require.Equal(t, "+OK "+strconv.Itoa(len(wantBody))+" octets", p.cmd("RETR 1"))
		assert.Equal(t, wantBody, string(p.multi()))
		assert.True(t, strings.HasPrefix(p.cmd("QUIT"), "+OK"))
	})
	t.Run("implicit TLS", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addrs.POP3S, cfg)
		require.NoError(t, err)
		p := &pop3Client{t: t}
		p.setConn(conn)
		t.Cleanup(func() { conn.Close() })
		require.True(t, strings.HasPrefix(p.line(), "+OK"))
		p.login()
		assert.Equal(t, "+OK 1 "+strconv.Itoa(len(wantBody)), p.cmd("STAT"))
		assert.True(t, strings.HasPrefix(p.cmd("QUIT"), "+OK"))
	})
	t.Run("command injected after STLS", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		_, err := p.conn.Write([]byte("STLS\r\nUSER " + user + "\r\n"))
		require.NoError(t, err)
		assert.Equal(t, "+OK begin TLS negotiation", p.line())
		_, err = p.br.ReadByte()
		assert.Error(t, err, "the server must close instead of reading the injected line")
	})
}

// TestImplicitTLSNeedsConfig: without a TLS config the implicit-TLS
// listeners are refused, and Start leaves their addresses empty.
func TestImplicitTLSNeedsConfig(t *testing.T) {
	sys, addrs := startSystem(t, mailtest.Options{})
	assert.Empty(t, addrs.IMAPS+addrs.Submissions+addrs.POP3S)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorIs(t, sys.ServeIMAPS(l), mailtest.ErrBadOptions)
}
