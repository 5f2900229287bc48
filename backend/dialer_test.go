package backend

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// testClient is the client every matrix case dials for.
var testClient = ClientInfo{
	Src:        &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40000},
	Dst:        &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 465},
	TLS:        &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, ServerName: "mail.example.com"},
	Helo:       "client.example",
	HeloVerb:   "EHLO",
	ServerName: "",
}

// seen is what a fake SMTP backend observed; read it after fake.Close.
type seen struct {
	header  *proxyproto.Header
	xclient string
	tls     bool
}

// smtpBackend plays an SMTP server for one Dialer configuration: PROXY
// header, implicit TLS or STARTTLS, XCLIENT, then QUIT.
func smtpBackend(p pki, sec starttls.Security, proxy ProxyProtocol, xclient bool, s *seen) func(f *fakeConn) {
	return func(f *fakeConn) {
		if proxy != NoProxy {
			s.header = f.proxy()
		}
		if sec == starttls.TLS {
			if s.tls = f.startTLS(p.server); !s.tls {
				return
			}
		}
		f.send("220-fake.test ESMTP\r\n220 second line\r\n")
		if sec == starttls.STARTTLS {
			f.expect("EHLO localhost\r\n")
			f.send("250-fake.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
			f.expect("STARTTLS\r\n")
			f.send("220 2.0.0 go ahead\r\n")
			if s.tls = f.startTLS(p.server); !s.tls {
				return
			}
		}
		if xclient {
			f.expect("EHLO localhost\r\n")
			f.send("250-fake.test\r\n250-XCLIENT ADDR PORT HELO PROTO\r\n250 8BITMIME\r\n")
			s.xclient = f.line()
			f.send("220 fake.test after XCLIENT\r\n")
		}
		if f.expect("QUIT\r\n") {
			f.send("221 bye\r\n")
		}
	}
}

func TestDialMatrix(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPKI(t)
	for _, sec := range []starttls.Security{starttls.Plain, starttls.TLS, starttls.STARTTLS} {
		for _, proxy := range []ProxyProtocol{NoProxy, ProxyV1, ProxyV2} {
			for _, xc := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/%v/xclient=%v", sec, proxy, xc), func(t *testing.T) {
					var s seen
					srv := newFake(t, smtpBackend(p, sec, proxy, xc, &s))
					d := &Dialer{Addr: srv.Addr(), Security: sec, Proxy: proxy, XCLIENT: xc,
						TLSConfig: &tls.Config{RootCAs: p.roots}}
					c, err := d.Dial(context.Background(), testClient)
					require.NoError(t, err)
					assert.Equal(t, sec == starttls.STARTTLS, c.Upgraded)
					assert.Equal(t, srv.Addr(), c.Member)
					_, isTLS := c.Conn.(*tls.Conn)
					assert.Equal(t, sec != starttls.Plain, isTLS)
					switch {
					case xc:
						assert.Equal(t, "220 fake.test after XCLIENT\r\n", string(c.Greeting))
					default:
						assert.Equal(t, "220-fake.test ESMTP\r\n220 second line\r\n", string(c.Greeting))
					}
					quit(t, c)
					require.NoError(t, c.Close())
					srv.Close()

					assert.Equal(t, sec != starttls.Plain, s.tls)
					checkHeader(t, proxy, s.header)
					if xc {
						assert.Equal(t, "XCLIENT ADDR=203.0.113.7 PORT=40000 HELO=client.example PROTO=ESMTP\r\n", s.xclient)
					}
				})
			}
		}
	}
}

// checkHeader asserts the PROXY header a fake read for testClient.
func checkHeader(t *testing.T, proxy ProxyProtocol, h *proxyproto.Header) {
	t.Helper()
	if proxy == NoProxy {
		assert.Nil(t, h)
		return
	}
	require.NotNil(t, h)
	assert.Equal(t, byte(proxy), h.Version)
	assert.Equal(t, proxyproto.TCPv4, h.TransportProtocol)
	src, dst, ok := h.TCPAddrs()
	require.True(t, ok)
	assert.Equal(t, "203.0.113.7:40000", src.String())
	assert.Equal(t, "192.0.2.1:465", dst.String())
	tlvs, err := h.TLVs()
	require.NoError(t, err)
	if proxy == ProxyV1 {
		assert.Empty(t, tlvs)
		return
	}
	var authority string
	for _, tlv := range tlvs {
		if tlv.Type == proxyproto.PP2_TYPE_AUTHORITY {
			authority = string(tlv.Value)
		}
	}
	assert.Equal(t, "mail.example.com", authority)
	ssl, ok := tlvparse.FindSSL(tlvs)
	require.True(t, ok, "no PP2_TYPE_SSL")
	assert.True(t, ssl.ClientSSL())
	version, _ := ssl.SSLVersion()
	assert.Equal(t, "TLSv1.3", version)
	cipher, _ := ssl.SSLCipher()
	assert.Equal(t, "TLS_AES_128_GCM_SHA256", cipher)
}

func TestDialProtocols(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	tests := []struct {
		name     string
		proto    starttls.Protocol
		greeting string
		err      error
	}{
		{"smtp", starttls.SMTP, "220 ok\r\n", nil},
		{"smtp 421", starttls.SMTP, "421 4.3.2 busy\r\n", ErrRefused},
		{"imap", starttls.IMAP, "* OK [CAPABILITY IMAP4rev1] ready\r\n", nil},
		{"imap bye", starttls.IMAP, "* BYE overloaded\r\n", ErrRefused},
		{"imap preauth", starttls.IMAP, "* PREAUTH welcome\r\n", ErrProtocol},
		{"pop3", starttls.POP3, "+OK POP3 ready\r\n", nil},
		{"pop3 err", starttls.POP3, "-ERR go away\r\n", ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, greeter(tt.greeting))
			c, err := (&Dialer{Addr: srv.Addr(), Protocol: tt.proto}).Dial(context.Background(), ClientInfo{})
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				var ge *GreetingError
				require.ErrorAs(t, err, &ge)
				assert.Equal(t, tt.greeting, string(ge.Text))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.greeting, string(c.Greeting))
			quit(t, c)
			assert.NoError(t, c.Close())
		})
	}
}

func TestDialBufferedPastGreeting(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	srv := newFake(t, func(f *fakeConn) {
		f.send("220 hi\r\n250 early\r\n")
		f.line()
	})
	c, err := (&Dialer{Addr: srv.Addr()}).Dial(context.Background(), ClientInfo{})
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "220 hi\r\n", string(c.Greeting))
	// The greeting and the extra line may arrive in one segment or two.
	if c.Buffered() > 0 {
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "250 early\r\n", string(buf[:n]))
	}
	_, err = c.Write([]byte("bye\r\n"))
	require.NoError(t, err)
}

func TestDialSilentBackendTimesOut(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	srv := newFake(t, func(f *fakeConn) { f.line() }) // accepts, never greets
	d := &Dialer{Addr: srv.Addr(), HandshakeTimeout: 50 * time.Millisecond}
	_, err := d.Dial(context.Background(), ClientInfo{})
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "got %v; want a timeout", err)
}

func TestDialCancel(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	accepted := make(chan struct{})
	srv := newFake(t, func(f *fakeConn) {
		close(accepted)
		f.line()
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-accepted
		cancel()
	}()
	_, err := (&Dialer{Addr: srv.Addr()}).Dial(ctx, ClientInfo{})
	assert.ErrorIs(t, err, context.Canceled)
}

func TestDialLineTooLong(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	srv := newFake(t, greeter("220 "+string(make([]byte, 200))+"\r\n"))
	_, err := (&Dialer{Addr: srv.Addr(), MaxLineLength: 100}).Dial(context.Background(), ClientInfo{})
	assert.ErrorIs(t, err, ErrLineTooLong)
}

func TestDialTLSVerification(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPKI(t)
	other := newPKI(t) // a CA the backend's certificate does not chain to
	srv := newFake(t, func(f *fakeConn) {
		tc := tls.Server(f.conn, p.server)
		if tc.Handshake() != nil {
			return // the cases that must fail verification end here
		}
		f.conn, f.br = tc, bufio.NewReader(tc)
		greeter("220 ok\r\n")(f)
	})
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"wrong roots", &tls.Config{RootCAs: other.roots}, false},
		{"wrong name", &tls.Config{RootCAs: p.roots, ServerName: "elsewhere.test"}, false},
		{"name from addr", &tls.Config{RootCAs: p.roots}, true},
		{"explicit name", &tls.Config{RootCAs: p.roots, ServerName: "backend.test"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := (&Dialer{Addr: srv.Addr(), Security: starttls.TLS, TLSConfig: tt.cfg}).Dial(context.Background(), ClientInfo{})
			if !tt.ok {
				var ve *tls.CertificateVerificationError
				assert.True(t, errors.As(err, &ve), "got %v; want a verification error", err)
				return
			}
			require.NoError(t, err)
			quit(t, c)
			assert.NoError(t, c.Close())
		})
	}
}

func TestDialConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		d    Dialer
	}{
		{"no addr", Dialer{}},
		{"xclient on imap", Dialer{Addr: "x:1", Protocol: starttls.IMAP, XCLIENT: true}},
		{"id on smtp", Dialer{Addr: "x:1", IMAPID: true}},
		{"bad security", Dialer{Addr: "x:1", Security: 9}},
		{"bad proxy", Dialer{Addr: "x:1", Proxy: 9}},
		{"bad protocol", Dialer{Addr: "x:1", Protocol: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.d.Dial(context.Background(), ClientInfo{})
			assert.ErrorIs(t, err, ErrConfig)
		})
	}
}
