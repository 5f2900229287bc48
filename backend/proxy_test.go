package backend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
)

// strAddr is a net.Addr of an unknown type, as a wrapper conn may return.
type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

func TestProxyHeader(t *testing.T) {
	v4 := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 1111}
	v4dst := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 20), Port: 993}
	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::10"), Port: 2222}
	mapped := &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.10"), Port: 1111}
	tests := []struct {
		name    string
		version ProxyProtocol
		ci      ClientInfo
		v1      string // exact v1 header
		proto   proxyproto.AddressFamilyAndProtocol
		command proxyproto.ProtocolVersionAndCommand
	}{
		{"v1 tcp4", ProxyV1, ClientInfo{Src: v4, Dst: v4dst}, "PROXY TCP4 192.0.2.10 192.0.2.20 1111 993\r\n", proxyproto.TCPv4, proxyproto.PROXY},
		{"v1 tcp6", ProxyV1, ClientInfo{Src: v6, Dst: v4dst}, "PROXY TCP6 2001:db8::10 ::ffff:192.0.2.20 2222 993\r\n", proxyproto.TCPv6, proxyproto.PROXY},
		{"v1 mapped is tcp4", ProxyV1, ClientInfo{Src: mapped, Dst: v4dst}, "PROXY TCP4 192.0.2.10 192.0.2.20 1111 993\r\n", proxyproto.TCPv4, proxyproto.PROXY},
		{"v1 unknown", ProxyV1, ClientInfo{}, "PROXY UNKNOWN\r\n", proxyproto.UNSPEC, proxyproto.LOCAL},
		{"v1 unknown dst", ProxyV1, ClientInfo{Src: v6}, "PROXY TCP6 2001:db8::10 :: 2222 0\r\n", proxyproto.TCPv6, proxyproto.PROXY},
		{"v1 string addr", ProxyV1, ClientInfo{Src: strAddr("192.0.2.10:1111"), Dst: v4dst}, "PROXY TCP4 192.0.2.10 192.0.2.20 1111 993\r\n", proxyproto.TCPv4, proxyproto.PROXY},
		{"v1 unix src", ProxyV1, ClientInfo{Src: &net.UnixAddr{Name: "/s", Net: "unix"}, Dst: v4dst}, "PROXY UNKNOWN\r\n", proxyproto.UNSPEC, proxyproto.LOCAL},
		{"v2 tcp4", ProxyV2, ClientInfo{Src: v4, Dst: v4dst}, "", proxyproto.TCPv4, proxyproto.PROXY},
		{"v2 tcp6", ProxyV2, ClientInfo{Src: v6, Dst: v4dst}, "", proxyproto.TCPv6, proxyproto.PROXY},
		{"v2 local", ProxyV2, ClientInfo{}, "", proxyproto.UNSPEC, proxyproto.LOCAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := proxyHeader(tt.version, tt.ci)
			require.NoError(t, err)
			raw, err := h.Format()
			require.NoError(t, err)
			if tt.v1 != "" {
				assert.Equal(t, tt.v1, string(raw))
			}
			got, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
			require.NoError(t, err)
			assert.Equal(t, tt.proto, got.TransportProtocol)
			assert.Equal(t, tt.command, got.Command)
			if src := tcpAddr(tt.ci.Src); src != nil {
				gsrc, _, ok := got.TCPAddrs()
				require.True(t, ok)
				assert.True(t, src.IP.Equal(gsrc.IP), "source %v; want %v", gsrc, src)
				assert.Equal(t, src.Port, gsrc.Port)
			}
		})
	}
}

// realTLSState runs a loopback handshake with a client certificate and
// returns the server's view of it, as the proxy's client side would see it.
func realTLSState(t *testing.T) tls.ConnectionState {
	t.Helper()
	ca, err := mailtest.GenerateCA("client CA")
	require.NoError(t, err)
	srvLeaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	cliLeaf, err := ca.Issue(mailtest.CertOptions{CommonName: "alice"}, "alice.example")
	require.NoError(t, err)
	a, b := net.Pipe()
	srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{srvLeaf.TLS}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"imap"}})
	cli := tls.Client(b, &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com",
		Certificates: []tls.Certificate{cliLeaf.TLS}, NextProtos: []string{"imap"}, MaxVersion: tls.VersionTLS12})
	done := make(chan error, 1)
	go func() { done <- cli.HandshakeContext(context.Background()) }()
	require.NoError(t, srv.Handshake())
	require.NoError(t, <-done)
	st := srv.ConnectionState()
	// Close the pipe itself: a TLS close_notify would block on net.Pipe.
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	return st
}

func TestProxyV2TLVs(t *testing.T) {
	leaktest.Check(t)
	st := realTLSState(t)
	ci := ClientInfo{Src: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, Dst: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 993}, TLS: &st}
	h, err := proxyHeader(ProxyV2, ci)
	require.NoError(t, err)
	raw, err := h.Format()
	require.NoError(t, err)
	got, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	require.NoError(t, err)
	tlvs, err := got.TLVs()
	require.NoError(t, err)
	byType := map[proxyproto.PP2Type]string{}
	for _, tlv := range tlvs {
		byType[tlv.Type] = string(tlv.Value)
	}
	assert.Equal(t, "mail.example.com", byType[proxyproto.PP2_TYPE_AUTHORITY], "SNI from the TLS state")
	assert.Equal(t, "imap", byType[proxyproto.PP2_TYPE_ALPN])
	ssl, ok := tlvparse.FindSSL(tlvs)
	require.True(t, ok)
	assert.True(t, ssl.ClientSSL())
	assert.True(t, ssl.ClientCertConn())
	assert.True(t, ssl.Verified())
	cn, _ := ssl.ClientCN()
	assert.Equal(t, "alice", cn)
	version, _ := ssl.SSLVersion()
	assert.Equal(t, "TLSv1.2", version)
	cipher, _ := ssl.SSLCipher()
	assert.Equal(t, "ECDHE-ECDSA-AES128-GCM-SHA256", cipher, "OpenSSL spelling, as HAProxy sends")
}

func TestProxyTLVsWithoutTLS(t *testing.T) {
	assert.Empty(t, proxyTLVs(ClientInfo{}))
	tlvs := proxyTLVs(ClientInfo{ServerName: "imap.example.com"})
	require.Len(t, tlvs, 1)
	assert.Equal(t, proxyproto.PP2_TYPE_AUTHORITY, tlvs[0].Type)
	ssl := sslTLV(&tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_CHACHA20_POLY1305_SHA256})
	assert.False(t, ssl.Verified(), "no client certificate: verify is non-zero")
	assert.False(t, ssl.ClientCertConn())
}

// ProxyProbeDial opens with the LOCAL form of the member's header, and
// nothing for a member without one.
func TestProxyProbeDial(t *testing.T) {
	leaktest.Check(t)
	assert.Nil(t, ProxyProbeDial(NoProxy), "NoProxy: a plain dial")
	tests := []struct {
		name    string
		p       ProxyProtocol
		version byte
	}{
		{"v1 UNKNOWN", ProxyV1, 1},
		{"v2 LOCAL", ProxyV2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer l.Close()
			c, err := ProxyProbeDial(tt.p)(context.Background(), "tcp", l.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			s, err := l.Accept()
			require.NoError(t, err)
			defer s.Close()
			h, err := proxyproto.Read(bufio.NewReader(s))
			require.NoError(t, err)
			assert.Equal(t, tt.version, h.Version)
			assert.True(t, h.Command.IsLocal(), "got %v; want LOCAL (v1: UNKNOWN)", h.Command)
			assert.Equal(t, proxyproto.UNSPEC, h.TransportProtocol)
		})
	}
}
