package storetest

import (
	"net/netip"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
)

// admits is n admissions of addr at at.
func admits(addr string, n int, at time.Duration) []op {
	ops := make([]op, n)
	for i := range ops {
		ops[i] = op{at: at, do: "admit", addr: addr}
	}
	return ops
}

// limitScenarios are the scenarios of connections, messages and
// recipients: the in-flight count, the rates and their window, and how
// addresses map to sources.
func limitScenarios() []scenario {
	const a, b = "192.0.2.1", "192.0.2.2"
	type L = ratelimit.Limits
	const (
		inFlight    = ratelimit.InFlight
		connRate    = ratelimit.ConnRate
		messageRate = ratelimit.MessageRate
		rcptRate    = ratelimit.RecipientRate
	)
	return []scenario{
		{
			name:   "in-flight refuses the (n+1)th open connection and admits after a release",
			limits: L{InFlight: 2},
			ops: []op{
				{do: "admit", addr: a}, {do: "admit", addr: a},
				{do: "admit", addr: a, want: inFlight},
				{do: "admit", addr: b},
				{at: time.Second, do: "release", addr: a},
				{at: time.Second, do: "admit", addr: a},
				{at: time.Second, do: "admit", addr: a, want: inFlight},
			},
		},
		{
			name:   "connection rate: the 4th in a window is refused; the window edge is inclusive",
			limits: L{ConnRate: 3},
			ops: cat(admits(a, 3, 0), []op{
				{at: 10 * time.Second, do: "admit", addr: a, want: connRate},
				{at: 60 * time.Second, do: "admit", addr: a, want: connRate},
				{at: 60*time.Second + 1, do: "admit", addr: a},
				{at: 61 * time.Second, do: "admit", addr: a},
				{at: 62 * time.Second, do: "admit", addr: a},
				{at: 63 * time.Second, do: "admit", addr: a, want: connRate},
			}),
		},
		{
			name:   "connection rate: the new window starts at the first event after the old one",
			limits: L{ConnRate: 1},
			ops: []op{
				{do: "admit", addr: a},
				{at: 90 * time.Second, do: "admit", addr: a},
				// The window began at +90s, not at +60s or +120s.
				{at: 150 * time.Second, do: "admit", addr: a, want: connRate},
				{at: 150*time.Second + 1, do: "admit", addr: a},
			},
		},
		{
			name:   "custom unit",
			limits: L{ConnRate: 1, Unit: 10 * time.Second},
			ops: []op{
				{do: "admit", addr: a},
				{at: 10 * time.Second, do: "admit", addr: a, want: connRate},
				{at: 11 * time.Second, do: "admit", addr: a},
			},
		},
		{
			name:   "in-flight is checked before the rate",
			limits: L{InFlight: 1, ConnRate: 1},
			ops:    []op{{do: "admit", addr: a}, {do: "admit", addr: a, want: inFlight}},
		},
		{
			name:   "message rate, with its window edge",
			limits: L{MessageRate: 2},
			ops: []op{
				{do: "msg", addr: a}, {at: time.Second, do: "msg", addr: a},
				{at: 2 * time.Second, do: "msg", addr: a, want: messageRate},
				{at: 2 * time.Second, do: "msg", addr: b},
				{at: 60 * time.Second, do: "msg", addr: a, want: messageRate},
				{at: 60*time.Second + 1, do: "msg", addr: a},
			},
		},
		{
			name:   "recipient rate, with its window edge",
			limits: L{RecipientRate: 3},
			ops: []op{
				{do: "rcpt", addr: a}, {do: "rcpt", addr: a}, {do: "rcpt", addr: a},
				{at: 30 * time.Second, do: "rcpt", addr: a, want: rcptRate},
				{at: 30 * time.Second, do: "msg", addr: a},
				{at: 60*time.Second + 1, do: "rcpt", addr: a},
			},
		},
		{
			name:   "one window for all rates of a source, as in anvil",
			limits: L{ConnRate: 1, MessageRate: 1},
			ops: []op{
				{do: "admit", addr: a},
				{at: 50 * time.Second, do: "msg", addr: a},
				{at: 55 * time.Second, do: "msg", addr: a, want: messageRate},
				// The message at +61s resets the window for connections too.
				{at: 61 * time.Second, do: "msg", addr: a},
				{at: 62 * time.Second, do: "admit", addr: a},
			},
		},
		{
			name:   "refused attempts count against the rate",
			limits: L{InFlight: 1, ConnRate: 3},
			ops: []op{
				{do: "admit", addr: a},
				{do: "admit", addr: a, want: inFlight},
				{do: "admit", addr: a, want: inFlight},
				{do: "release", addr: a},
				{do: "admit", addr: a, want: connRate},
			},
		},
		{
			name:   "a source with a connection in flight never expires; an idle one does after a unit",
			limits: L{InFlight: 1, ConnRate: 2},
			ops: []op{
				{do: "admit", addr: a},
				// Ten minutes later the connection still counts; the
				// rate window restarts at +10m.
				{at: 10 * time.Minute, do: "admit", addr: a, want: inFlight},
				{at: 10 * time.Minute, do: "release", addr: a},
				{at: 11 * time.Minute, do: "admit", addr: a},
				{at: 11 * time.Minute, do: "release", addr: a},
				{at: 11 * time.Minute, do: "admit", addr: a, want: connRate},
				// Idle for more than a unit: forgotten.
				{at: 12*time.Minute + 1, do: "admit", addr: a},
			},
		},
		{
			name:    "trusted networks are exempt from every limit",
			limits:  L{InFlight: 1, ConnRate: 1, MessageRate: 1, RecipientRate: 1},
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			ops: cat(admits("10.1.2.3", 5, 0), admits("::ffff:10.9.9.9", 5, 0), []op{
				{do: "msg", addr: "10.1.2.3"}, {do: "msg", addr: "10.1.2.3"},
				{do: "rcpt", addr: "10.1.2.3"}, {do: "rcpt", addr: "10.1.2.3"},
				{do: "admit", addr: "11.0.0.1"},
				{do: "admit", addr: "11.0.0.1", want: inFlight},
			}),
		},
		{
			name:   "IPv6 sources are aggregated by /64",
			limits: L{InFlight: 1},
			ops: []op{
				{do: "admit", addr: "2001:db8:1:2::1"},
				{do: "admit", addr: "2001:db8:1:2:ffff:ffff:ffff:ffff", want: inFlight},
				{do: "admit", addr: "2001:db8:1:3::1"},
				{do: "admit", addr: "fe80::1%eth0"},
				{do: "admit", addr: "fe80::2%eth1", want: inFlight},
			},
		},
		{
			name:       "IPv6 prefix /128 counts each address",
			limits:     L{InFlight: 1},
			ipv6Prefix: 128,
			ops: []op{
				{do: "admit", addr: "2001:db8::1"},
				{do: "admit", addr: "2001:db8::2"},
				{do: "admit", addr: "2001:db8::1", want: inFlight},
			},
		},
		{
			name:   "IPv4-mapped IPv6 is the same source as IPv4",
			limits: L{InFlight: 1},
			ops: []op{
				{do: "admit", addr: "::ffff:192.0.2.1"},
				{do: "admit", addr: a, want: inFlight},
				{do: "release", addr: "::ffff:192.0.2.1"},
				{do: "admit", addr: a},
			},
		},
		{
			name:   "clients without an address share one source",
			limits: L{InFlight: 1},
			ops: []op{
				{do: "admit", addr: ""},
				{do: "admit", addr: "", want: inFlight},
				{do: "admit", addr: a},
			},
		},
		{
			name: "zero limits admit everything",
			ops:  cat(admits(a, 100, 0), []op{{do: "msg", addr: a}, {do: "rcpt", addr: a}, {do: "admit", addr: ""}}),
		},
	}
}
