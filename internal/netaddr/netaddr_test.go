package netaddr

import (
	"net"
	"net/netip"
	"testing"
)

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestIP(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 25}, "192.0.2.1"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 53}, "2001:db8::1"},
		{&net.UnixAddr{Name: "/run/sock", Net: "unix"}, "invalid IP"},
		{pipeAddr{}, "invalid IP"},
		{nil, "invalid IP"},
	} {
		if got := IP(tc.a); got.String() != tc.want {
			t.Errorf("IP(%v) = %v, want %s", tc.a, got, tc.want)
		}
	}
	if IP(nil) != (netip.Addr{}) {
		t.Error("IP(nil) is not the zero Addr")
	}
}
