package backend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"

	"github.com/mailedge/mailedge/internal/tlsname"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// ProxyProtocol selects the PROXY protocol header (HAProxy's
// proxy-protocol.txt) a Dialer writes before anything else on a backend
// connection, so the backend sees the client's address.
type ProxyProtocol int

const (
	// NoProxy writes no header: the zero value.
	NoProxy ProxyProtocol = iota
	// ProxyV1 writes the text header ("PROXY TCP4 ...\r\n"). It carries
	// addresses only.
	ProxyV1
	// ProxyV2 writes the binary header with TLVs: PP2_TYPE_AUTHORITY (the
	// SNI name), PP2_TYPE_ALPN, and PP2_TYPE_SSL with the client's TLS
	// version, cipher and certificate common name.
	ProxyV2
)

// String returns "none", "v1" or "v2".
func (p ProxyProtocol) String() string {
	switch p {
	case NoProxy:
		return "none"
	case ProxyV1:
		return "v1"
	case ProxyV2:
		return "v2"
	}
	return "unknown"
}

// proxyHeader builds the header for ci. An unknown source (nil, or an
// address that is not IP:port) gives "PROXY UNKNOWN" in v1 and the LOCAL
// command in v2, which tells the backend to use the connection's own
// addresses. A known source with an unknown destination is sent with the
// unspecified address of the same family and port 0, so the source, the
// part that matters, is not lost.
func proxyHeader(v ProxyProtocol, ci ClientInfo) (*proxyproto.Header, error) {
	version := byte(1)
	if v == ProxyV2 {
		version = 2
	}
	src, dst := tcpAddr(ci.Src), tcpAddr(ci.Dst)
	if src != nil && dst == nil {
		dst = &net.TCPAddr{IP: net.IPv4zero}
		if src.IP.To4() == nil {
			dst.IP = net.IPv6unspecified
		}
	}
	var h *proxyproto.Header
	if src == nil {
		h = proxyproto.HeaderProxyFromAddrs(version, nil, nil)
	} else {
		h = proxyproto.HeaderProxyFromAddrs(version, src, dst)
	}
	if version == 2 {
		if err := h.SetTLVs(proxyTLVs(ci)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// tcpAddr converts a to a *net.TCPAddr with IPv4-mapped IPv6 addresses
// unmapped (so a dual-stack listener still yields TCP4), or nil when a is
// nil or not an IP:port address.
func tcpAddr(a net.Addr) *net.TCPAddr {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return nil
	case *net.TCPAddr:
		if a == nil {
			return nil
		}
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return nil
		}
	}
	if !ap.Addr().IsValid() {
		return nil
	}
	ip := ap.Addr().Unmap().WithZone("")
	return &net.TCPAddr{IP: ip.AsSlice(), Port: int(ap.Port())}
}

// proxyTLVs returns the v2 TLVs describing the client side.
func proxyTLVs(ci ClientInfo) []proxyproto.TLV {
	var tlvs []proxyproto.TLV
	name := ci.ServerName
	if name == "" && ci.TLS != nil {
		name = ci.TLS.ServerName
	}
	if name != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(name)})
	}
	if ci.TLS == nil {
		return tlvs
	}
	if p := ci.TLS.NegotiatedProtocol; p != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte(p)})
	}
	if ssl, err := sslTLV(ci.TLS).Marshal(); err == nil {
		tlvs = append(tlvs, ssl)
	}
	return tlvs
}

// sslTLV describes a client TLS connection as PP2_TYPE_SSL does: the
// client bit, the certificate bits, verify 0 only for a verified client
// certificate, and the version and cipher names in OpenSSL's spelling, as
// HAProxy sends them.
func sslTLV(cs *tls.ConnectionState) tlvparse.PP2SSL {
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
	if len(cs.PeerCertificates) > 0 {
		ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN | tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS
		if len(cs.VerifiedChains) > 0 {
			ssl.Verify = 0
		}
	}
	ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsname.Version(cs.Version))})
	ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tlsname.Cipher(cs.CipherSuite))})
	if len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0].Subject.CommonName != "" {
		ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: proxyproto.PP2_SUBTYPE_SSL_CN, Value: []byte(cs.PeerCertificates[0].Subject.CommonName)})
	}
	return ssl
}

// ProxyProbeDial returns the dial function a health probe needs for a
// member reached with PROXY header p: it dials, then writes the header's
// LOCAL form (v2 LOCAL, or "PROXY UNKNOWN" for v1) before the probe says
// anything, as HAProxy's check-send-proxy does. The member's PROXY-only
// port then serves the probe as the balancer's own check, with no client
// address and no claim of TLS. For NoProxy it returns nil, meaning a plain
// dial. The result fits the Dial field of monitor's probes.
func ProxyProbeDial(p ProxyProtocol) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if p == NoProxy {
		return nil
	}
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	if p == ProxyV1 {
		h = &proxyproto.Header{Version: 1, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UNSPEC}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, fmt.Errorf("backend: writing PROXY header: %w", err)
		}
		return c, nil
	}
}
