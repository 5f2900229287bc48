package ratelimit

import (
	"net/netip"
	"strings"
)

// Action is what an access-list rule does with a matching address.
type Action uint8

const (
	// Allow lets the address through to the limits. It is the zero Action.
	Allow Action = iota
	// Deny refuses the address before anything else is counted.
	Deny
)

// String returns "allow" or "deny".
func (a Action) String() string {
	if a == Deny {
		return "deny"
	}
	return "allow"
}

// Rule is one access-list entry.
type Rule struct {
	// Prefix is the network the rule matches. The zero Prefix matches every
	// address, including a client without an IP address (it is written
	// "all"). IPv4-mapped IPv6 prefixes never match: addresses are unmapped
	// before matching, so write IPv4 networks in IPv4 form (ParseACL and
	// ParseNetworks convert them).
	Prefix netip.Prefix
	// Action is what happens to a matching address. If zero, Allow.
	Action Action
}

// Matches reports whether r applies to addr, which must already be
// unmapped.
func (r Rule) Matches(addr netip.Addr) bool {
	return !r.Prefix.IsValid() || r.Prefix.Contains(addr)
}

// ACL is an access list: the first rule whose Prefix contains the address
// decides; if none does, Default decides. The zero ACL allows everything.
// The Limiter applies it before anything else, so a denied source is never
// tracked and costs no memory.
type ACL struct {
	// Rules are tried in order; the first match wins.
	Rules []Rule
	// Default applies when no rule matches. If zero, Allow.
	Default Action
}

// Allows reports whether addr may connect. IPv4-mapped IPv6 addresses are
// unmapped and zones dropped first.
func (a ACL) Allows(addr netip.Addr) bool {
	return a.action(normalize(addr)) == Allow
}

func (a *ACL) action(addr netip.Addr) Action {
	for _, r := range a.Rules {
		if r.Matches(addr) {
			return r.Action
		}
	}
	return a.Default
}

// String returns the ACL in the syntax ParseACL reads, one rule per item,
// separated by ", ", with "default deny" last when Default is Deny.
func (a ACL) String() string {
	var b strings.Builder
	for i, r := range a.Rules {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.Action.String())
		b.WriteByte(' ')
		if r.Prefix.IsValid() {
			b.WriteString(r.Prefix.String())
		} else {
			b.WriteString("all")
		}
	}
	if a.Default == Deny {
		if len(a.Rules) > 0 {
			b.WriteString(", ")
		}
		b.WriteString("default deny")
	}
	return b.String()
}

// normalize returns the address the Limiter works with: IPv4-mapped IPv6
// unmapped to IPv4, zone dropped.
func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// containsAny reports whether any prefix in ps contains addr.
func containsAny(ps []netip.Prefix, addr netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
