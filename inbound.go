package mailedge

import (
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyListener wraps l for a listener behind another balancer that sends
// a PROXY protocol header (v1 or v2) first, so Proxy, its Limiter and the
// logs see the real client address:
//
//   - connections from a source in from must open with a header, within
//     timeout (if zero, 5 seconds), or they are closed unanswered;
//   - connections from anywhere else are served as they are, and a header
//     they send is refused, so a client cannot claim another address;
//   - a v2 header whose TLVs are malformed (a TLV running past the header
//     end, or not ending at it) is refused: go-proxyproto parses TLVs only
//     when asked, so they are checked here.
//
// Mail servers speak first, so the header is awaited before the greeting
// is written, never guessed from the first bytes.
func ProxyListener(l net.Listener, from []netip.Prefix, timeout time.Duration) net.Listener {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &proxyproto.Listener{
		Listener:          l,
		ReadHeaderTimeout: timeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			ip := AddrOf(o.Upstream)
			for _, n := range from {
				if ip.IsValid() && n.Contains(ip) {
					return proxyproto.REQUIRE, nil
				}
			}
			return proxyproto.REJECT, nil
		},
		ValidateHeader: func(h *proxyproto.Header) error { _, err := h.TLVs(); return err },
	}
}
