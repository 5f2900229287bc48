package backend

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// TestPassthroughDial dials a member that terminates TLS itself: the Conn
// comes back after the PROXY header, without a greeting, and the bytes
// written on it (the client's ClientHello) reach the backend unchanged,
// where the client and the backend then complete their own handshake.
func TestPassthroughDial(t *testing.T) {
	leaktest.Check(t)
	pk := newPKI(t)
	type seen struct {
		h    *proxyproto.Header
		line string
	}
	got := make(chan seen, 1)
	srv := newFake(t, func(f *fakeConn) {
		h := f.proxy()
		if !f.startTLS(pk.server) {
			got <- seen{h: h}
			return
		}
		f.send("* OK IMAP4rev1 tenant ready\r\n")
		got <- seen{h, f.line()}
	})
	for _, pol := range []Policy{RoundRobin, LeastConn} {
		pool, err := NewPool(pol, Member{Name: "tenant", Dialer: &Dialer{Addr: srv.Addr(), Protocol: starttls.IMAP, Proxy: ProxyV2, Passthrough: true}})
		require.NoError(t, err)
		src := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
		c, err := pool.Dial(context.Background(), ClientInfo{Src: src, Dst: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 993}, ServerName: "tenant.example.com"})
		require.NoError(t, err)
		assert.Nil(t, c.Greeting, "a passthrough member's greeting is inside the client's TLS")
		assert.Equal(t, "tenant", c.Member)
		assert.Equal(t, []string{"proxy-v2"}, c.Identity)
		assert.Zero(t, c.Buffered())
		assert.Equal(t, 1, pool.Members()[0].Active)

		// The "client": a TLS handshake through the passthrough conn.
		tc := tls.Client(c, &tls.Config{ServerName: "backend.test", RootCAs: pk.roots})
		require.NoError(t, tc.Handshake())
		greeting := make([]byte, len("* OK IMAP4rev1 tenant ready\r\n"))
		_, err = io.ReadFull(tc, greeting)
		require.NoError(t, err)
		assert.Equal(t, "* OK IMAP4rev1 tenant ready\r\n", string(greeting))
		_, err = tc.Write([]byte("a LOGOUT\r\n"))
		require.NoError(t, err)
		s := <-got
		require.NotNil(t, s.h)
		assert.Equal(t, src.String(), s.h.SourceAddr.String())
		authority, ok := tlvOf(s.h, proxyproto.PP2_TYPE_AUTHORITY)
		assert.True(t, ok)
		assert.Equal(t, "tenant.example.com", authority)
		assert.Equal(t, "a LOGOUT\r\n", s.line)
		tc.Close()
		assert.Equal(t, 0, pool.Members()[0].Active, "closing releases the slot")
	}
}

// TestPassthroughDialNoProxy: without a PROXY header the Conn is the bare
// connection, no deadline set, and the client's bytes are the first the
// backend reads.
func TestPassthroughDialNoProxy(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pk := newPKI(t)
	srv := newFake(t, func(f *fakeConn) {
		if f.startTLS(pk.server) {
			f.send("* OK tenant ready\r\n")
			f.line()
		}
	})
	c, err := (&Dialer{Addr: srv.Addr(), Protocol: starttls.IMAP, Passthrough: true}).Dial(context.Background(), ClientInfo{ServerName: "tenant.example.com"})
	require.NoError(t, err)
	assert.Nil(t, c.Greeting)
	assert.IsType(t, (*net.TCPConn)(nil), c.NetConn())
	tc := tls.Client(c, &tls.Config{ServerName: "backend.test", RootCAs: pk.roots})
	require.NoError(t, tc.Handshake())
	greeting := make([]byte, len("* OK tenant ready\r\n"))
	_, err = io.ReadFull(tc, greeting)
	require.NoError(t, err)
	assert.Equal(t, "* OK tenant ready\r\n", string(greeting))
	_, err = tc.Write([]byte("a LOGOUT\r\n"))
	require.NoError(t, err)
	require.NoError(t, tc.Close())
}

func tlvOf(h *proxyproto.Header, typ proxyproto.PP2Type) (string, bool) {
	tlvs, err := h.TLVs()
	if err != nil {
		return "", false
	}
	for _, tlv := range tlvs {
		if tlv.Type == typ {
			return string(tlv.Value), true
		}
	}
	return "", false
}

func TestPassthroughConfig(t *testing.T) {
	for _, d := range []*Dialer{
		{Addr: "127.0.0.1:1", Passthrough: true, Security: starttls.TLS},
		{Addr: "127.0.0.1:1", Passthrough: true, Security: starttls.STARTTLS},
		{Addr: "127.0.0.1:1", Passthrough: true, XCLIENT: true},
		{Addr: "127.0.0.1:1", Passthrough: true, Protocol: starttls.IMAP, IMAPID: true},
	} {
		_, err := d.Dial(context.Background(), ClientInfo{})
		assert.ErrorIs(t, err, ErrConfig, "%+v", d)
	}
}
