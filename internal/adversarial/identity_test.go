package adversarial_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// TestBackendWrites is class E: what the proxy writes to backends (XCLIENT
// values, the PROXY header) and how a listener behind another balancer
// reads inbound PROXY headers with go-proxyproto, as examples/gateway does.
func TestBackendWrites(t *testing.T) {
	t.Run("E1_XCLIENT_values_encoded_or_refused", testXCLIENTValues)
	t.Run("E2_PROXY_header_first_once_real_address", testProxyHeader)
	t.Run("E3_inbound_PROXY_parsing", testInboundProxy)
}

// xclientFake advertises XCLIENT, answers it with a new greeting as Postfix
// does, and reports every line it received.
func xclientFake(lines chan<- []string) func(net.Conn) {
	return func(c net.Conn) {
		io.WriteString(c, "220 fake ESMTP\r\n")
		var got []string
		defer func() { lines <- got }()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			got = append(got, line)
			switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
			case "EHLO":
				io.WriteString(c, "250-fake\r\n250-XCLIENT ADDR PORT DESTADDR DESTPORT HELO PROTO NAME LOGIN\r\n250 PIPELINING\r\n")
			case "XCLIENT":
				io.WriteString(c, "220 fake ESMTP\r\n")
			case "QUIT":
				io.WriteString(c, "221 bye\r\n")
				return
			default:
				io.WriteString(c, "250 ok\r\n")
			}
		}
	}
}

// testXCLIENTValues: a HELO name with CR, LF, space, "=" or "+" must not
// add a command line or an attribute (CVE-2021-33515's class toward the
// backend): it is xtext-encoded (RFC 3461 §4) or the dial is refused.
func testXCLIENTValues(t *testing.T) {
	leaktest.Check(t)
	src := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}
	dst := &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 25}
	for _, helo := range []string{
		"evil.example\r\nMAIL FROM:<x@evil.example>",
		"evil.example\nRCPT TO:<x@evil.example>",
		"evil.example\rQUIT",
		"a b ADDR=203.0.113.66",
		"a=b",
		"a+2B",
		"x\x00y",
		strings.Repeat("h", 600),
	} {
		lines := make(chan []string, 1)
		f := newFake(t, xclientFake(lines))
		d := &backend.Dialer{Addr: f.Addr(), XCLIENT: true, HandshakeTimeout: ioWait}
		conn, err := d.Dial(context.Background(), backend.ClientInfo{Src: src, Dst: dst, Helo: helo, HeloVerb: "EHLO"})
		if err == nil {
			conn.Write([]byte("QUIT\r\n"))
			conn.Close()
		} else {
			assert.ErrorIs(t, err, backend.ErrIdentity, "%q", helo)
		}
		got := <-lines
		xclients := 0
		for _, l := range got {
			verb := strings.ToUpper(strings.Fields(l + " x")[0])
			assert.Contains(t, []string{"EHLO", "XCLIENT", "QUIT"}, verb, "%q produced the line %q", helo, l)
			if verb != "XCLIENT" {
				continue
			}
			xclients++
			for _, attr := range strings.Fields(strings.TrimSuffix(l, "\r\n"))[1:] {
				name, value, ok := strings.Cut(attr, "=")
				assert.True(t, ok, "attribute %q without =", attr)
				assert.Contains(t, []string{"ADDR", "PORT", "DESTADDR", "DESTPORT", "HELO", "PROTO", "NAME", "LOGIN"}, name, "%q", l)
				assert.NotContains(t, value, "=", "raw = in %q", l)
				if name == "ADDR" {
					assert.Equal(t, "192.0.2.7", value, "the ADDR attribute was overridden by %q", helo)
				}
			}
		}
		assert.LessOrEqual(t, xclients, 1, "%q", got)
		t.Logf("HELO %q: err %v; backend saw %q", helo, err, got)
	}
}

// proxyFake reads a PROXY header, greets, and reports the header and every
// byte after it.
type proxySeen struct {
	h    *proxyproto.Header
	err  error
	rest string
}

func proxyFake(seen chan<- proxySeen) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		h, err := proxyproto.Read(r)
		if err == nil {
			io.WriteString(c, "220 fake ESMTP\r\n")
		}
		rest, _ := io.ReadAll(r)
		seen <- proxySeen{h, err, string(rest)}
	}
}

func testProxyHeader(t *testing.T) {
	leaktest.Check(t)
	v4 := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}
	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40000}
	dst6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}
	for _, tc := range []struct {
		name    string
		version backend.ProxyProtocol
		src     net.Addr
		check   func(*testing.T, *proxyproto.Header)
	}{
		{"v1_ipv4", backend.ProxyV1, v4, func(t *testing.T, h *proxyproto.Header) {
			assert.Equal(t, proxyproto.TCPv4, h.TransportProtocol)
			assert.Equal(t, v4.String(), h.SourceAddr.String())
		}},
		{"v1_ipv6_is_TCP6", backend.ProxyV1, v6, func(t *testing.T, h *proxyproto.Header) {
			assert.Equal(t, proxyproto.TCPv6, h.TransportProtocol)
			assert.Equal(t, v6.String(), h.SourceAddr.String())
		}},
		{"v1_no_source_is_UNKNOWN", backend.ProxyV1, nil, func(t *testing.T, h *proxyproto.Header) {
			assert.Equal(t, proxyproto.UNSPEC, h.TransportProtocol)
		}},
		{"v2_ipv6", backend.ProxyV2, v6, func(t *testing.T, h *proxyproto.Header) {
			assert.Equal(t, proxyproto.PROXY, h.Command)
			assert.Equal(t, proxyproto.TCPv6, h.TransportProtocol)
			assert.Equal(t, v6.String(), h.SourceAddr.String())
		}},
		{"v2_no_source_is_LOCAL", backend.ProxyV2, nil, func(t *testing.T, h *proxyproto.Header) {
			assert.Equal(t, proxyproto.LOCAL, h.Command)
		}},
	} {
		seen := make(chan proxySeen, 1)
		f := newFake(t, proxyFake(seen))
		d := &backend.Dialer{Addr: f.Addr(), Proxy: tc.version, HandshakeTimeout: ioWait}
		ci := backend.ClientInfo{Src: tc.src}
		if tc.src != nil {
			ci.Dst = dst6
			if tc.src == v4 {
				ci.Dst = &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 25}
			}
		}
		conn, err := d.Dial(context.Background(), ci)
		require.NoError(t, err, tc.name)
		conn.Write([]byte("QUIT\r\n"))
		conn.Close()
		s := <-seen
		require.NoError(t, s.err, tc.name)
		t.Run(tc.name, func(t *testing.T) { tc.check(t, s.h) })
		assert.Equal(t, "QUIT\r\n", s.rest, "%s: a second header or other bytes followed the first", tc.name)
	}
}

// v2Header builds a PROXY v2 TCP4 header whose declared length is hdrLen
// and whose address block is followed by tlv.
func v2Header(tlv []byte, declared int) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11")
	b = binary.BigEndian.AppendUint16(b, uint16(declared))
	b = append(b, 192, 0, 2, 9, 198, 51, 100, 1, 0x9c, 0x40, 0, 25)
	return append(b, tlv...)
}

// testInboundProxy runs a mailedge.Proxy behind mailedge.ProxyListener, the
// listener examples/gateway uses for -listen ...,proxy: a header is required
// from loopback (the trusted balancer here) and its TLVs are validated
// (go-proxyproto parses them lazily, only when Header.TLVs is called).
func testInboundProxy(t *testing.T) {
	leaktest.Check(t)
	bad := inboundProxyCase(t)
	assert.Empty(t, bad, "every malformed header must close the conn")
}

// inboundProxyCase runs every header case against one listener and returns
// the names of the malformed ones that were greeted anyway.
func inboundProxyCase(t *testing.T) (greetedBad []string) {
	t.Helper()
	backendFake := newFake(t, func(c net.Conn) { io.WriteString(c, "220 backend\r\n"); io.Copy(io.Discard, c) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pl := mailedge.ProxyListener(l, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, 300*time.Millisecond)
	sessions := make(chan mailedge.SessionInfo, 8)
	addr := serveProxyOn(t, &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Disallow, Hostname: "edge.example"},
		Backend:   &backend.Dialer{Addr: backendFake.Addr()},
		OnSession: func(in mailedge.SessionInfo) { sessions <- in },
	}, pl)
	for _, tc := range []struct {
		name   string
		header []byte
		ok     bool
	}{
		{"valid_v2_in_1_byte_pieces", v2Header(nil, 12), true},
		{"valid_v2_with_TLV_in_1_byte_pieces", v2Header([]byte{0x04, 0x00, 0x01, 'x'}, 16), true},
		{"v2_TLV_length_past_header_end", v2Header([]byte{0x04, 0x00, 0x40, 'x'}, 16), false},
		{"v2_TLV_not_ending_at_header_end", v2Header([]byte{0x04, 0x00, 0x01, 'x', 0x04}, 17), false},
		{"v2_length_shorter_than_addresses", v2Header(nil, 4), false},
		{"v1_garbage", []byte("PROXY TCP4 999.1.1.1 x 1 2\r\n"), false},
		{"no_header_within_timeout", nil, false},
	} {
		c := dialConv(t, addr)
		for _, b := range tc.header {
			if _, err := c.c.Write([]byte{b}); err != nil {
				break // refused mid-header
			}
		}
		line, err := c.line()
		c.c.Close()
		in := <-sessions
		if tc.ok {
			assert.NoError(t, err, tc.name)
			assert.True(t, strings.HasPrefix(line, "220 edge.example"), "%s: %q", tc.name, line)
			assert.Equal(t, "192.0.2.9:40000", in.Client.String(), tc.name)
			continue
		}
		if strings.HasPrefix(line, "220") {
			greetedBad = append(greetedBad, tc.name)
		}
		t.Logf("%s: client read %q, %v; session %s %v", tc.name, line, err, in.Outcome, in.Err)
	}
	return greetedBad
}
