package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePorts returns n distinct TCP ports on host that were free a moment
// ago, for a server (often another process) that must be told its port
// before it binds. A port the kernel hands out for ":0" comes from the
// ephemeral range, where any test's outgoing connection may take it before
// the server binds ("address already in use"); these ports are chosen at
// random outside that range, so only another caller's choice can collide.
func FreePorts(host string, n int) ([]int, error) {
	lo, hi := ephemeralRange()
	if lo <= minPort && hi >= 65535 {
		lo, hi = 0, -1 // nothing outside: any free port
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000*n {
			return nil, errors.New("testnet: no free port outside the ephemeral range")
		}
		p := minPort + rand.IntN(65536-minPort)
		if p >= lo && p <= hi {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue // taken, or held by this call already
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports, nil
}

// FreeAddr returns "127.0.0.1:port" for one port from FreePorts, failing
// tb if there is none.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ports, err := FreePorts("127.0.0.1", 1)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0])
}

// minPort is the lowest port FreePorts returns: above the registered
// ports that local services commonly use.
const minPort = 10000

// ephemeralRange returns the kernel's range for ports it picks itself:
// Linux's net.ipv4.ip_local_port_range, or the IANA range elsewhere.
func ephemeralRange() (lo, hi int) {
	lo, hi = 49152, 65535
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}
