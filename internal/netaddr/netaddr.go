// Package netaddr reads the IP address out of a net.Addr: the one rule
// behind mailedge.IPOf, the login limits of package auth and the
// Client-IP of nginx's auth_http protocol.
package netaddr

import (
	"net"
	"net/netip"
)

// IP returns the IP address of a without its port, IPv4-mapped IPv6
// unmapped, or the zero Addr when a has none (a Unix socket, a pipe, nil).
func IP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
