package mailedge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/starttls"
)

// alpacaRequest is the kind of request the ALPACA paper's attacker makes a
// browser send to a mail server's port: an HTTP POST whose body holds mail
// commands, hoping the server executes them or reflects them back.
const alpacaRequest = "POST / HTTP/1.1\r\nHost: mail.example.com\r\nContent-Type: text/plain\r\nContent-Length: 60\r\n\r\n" +
	"a1 LIST \"\" \"<script>alert(1)</script>\"\r\nQUIT\r\nEHLO x\r\nHELP\r\n"

// recordingBackend greets as proto and records what it is sent.
func recordingBackend(t *testing.T, proto starttls.Protocol) (string, <-chan string) {
	got := make(chan string, 16)
	greeting := map[starttls.Protocol]string{starttls.SMTP: "220 mx.test ESMTP\r\n", starttls.IMAP: "* OK [CAPABILITY IMAP4rev1] ready\r\n", starttls.POP3: "+OK ready\r\n"}[proto]
	addr := testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, greeting)
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	return addr, got
}

// ALPACA's application layer against each protocol, on an implicit-TLS
// listener (the request is the first line after TLS) and a STARTTLS one
// (the first line before it): the session ends at once with
// OutcomeForeign, the client gets nothing after the greeting, and not a
// byte reaches the backend.
func TestForeignProtocolALPACA(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	for _, proto := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		for _, implicit := range []bool{true, false} {
			name := proto.String() + map[bool]string{true: "/implicit", false: "/starttls"}[implicit]
			t.Run(name, func(t *testing.T) {
				addr, got := recordingBackend(t, proto)
				infos := make(chan mailedge.SessionInfo, 1)
				p := &mailedge.Proxy{
					Server:    &starttls.Server{Protocol: proto, TLSConfig: f.cfg, Hostname: "mx.test"},
					Implicit:  implicit,
					Backend:   &backend.Dialer{Addr: addr, Protocol: proto},
					OnSession: func(in mailedge.SessionInfo) { infos <- in },
				}
				paddr := serve(t, p)
				var c net.Conn
				var err error
				if implicit {
					c, err = tls.Dial("tcp", paddr, f.roots)
				} else {
					c, err = net.Dial("tcp", paddr)
				}
				require.NoError(t, err)
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				greeting, err := r.ReadString('\n')
				require.NoError(t, err)
				_, err = io.WriteString(c, alpacaRequest)
				require.NoError(t, err)
				rest, err := io.ReadAll(r)
				if err != nil {
					// A reset is fine too: the proxy closed with our bytes unread.
					assert.Contains(t, err.Error(), "reset", "%v", err)
				}
				assert.Empty(t, string(rest), "nothing after the greeting %q", greeting)
				in := <-infos
				assert.Equal(t, mailedge.OutcomeForeign, in.Outcome, "%v", in.Err)
				assert.ErrorIs(t, in.Err, starttls.ErrForeignProtocol)
				if implicit {
					assert.Empty(t, <-got, "nothing reaches the backend")
				}
			})
		}
	}
	// A ClientHello sent to a STARTTLS port, as a client that took it for
	// an implicit-TLS one: closed at once, not answered line by line.
	addr, _ := recordingBackend(t, starttls.SMTP)
	infos := make(chan mailedge.SessionInfo, 1)
	p := &mailedge.Proxy{Server: &starttls.Server{Protocol: starttls.SMTP, TLSConfig: f.cfg},
		Backend: &backend.Dialer{Addr: addr}, OnSession: func(in mailedge.SessionInfo) { infos <- in }}
	cfg := f.roots.Clone()
	_, err := tls.Dial("tcp", serve(t, p), cfg)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "first record does not look like a TLS handshake") || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset"), err.Error())
	in := <-infos
	assert.Equal(t, mailedge.OutcomeForeign, in.Outcome, "%v", in.Err)
}

// The login at the edge refuses the same: an IMAP BAD would echo the
// request line's first word as its tag.
func TestForeignProtocolLogin(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	infos := make(chan mailedge.SessionInfo, 1)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP},
		Login: &auth.Server{Authenticator: auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
			return &auth.Result{OK: true}, nil
		})},
		OnSession: func(in mailedge.SessionInfo) { infos <- in },
	}
	c, err := tls.Dial("tcp", serve(t, p), f.roots)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
	_, err = io.WriteString(c, alpacaRequest)
	require.NoError(t, err)
	rest, _ := io.ReadAll(r)
	assert.Empty(t, string(rest))
	in := <-infos
	assert.Equal(t, mailedge.OutcomeForeign, in.Outcome, "%v", in.Err)
}
