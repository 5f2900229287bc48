package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrSyntax is wrapped by every error ParseACL and ParseNetworks return.
var ErrSyntax = errors.New("ratelimit: syntax error")

// ParseNetworks reads a list of networks in the style of Postfix's
// mynetworks parameter, for trusted networks given on a command line or in
// a file: elements separated by commas and/or white space (newlines
// included), "#" starting a comment that runs to the end of the line. An
// element is a CIDR prefix ("10.0.0.0/8", "2001:db8::/32"), a single
// address ("192.0.2.1" is 192.0.2.1/32), or Postfix's bracketed IPv6 form
// ("[2001:db8::]/32", "[::1]"). Host bits must be zero: "10.0.0.1/8" is an
// error rather than a silent widening (Postfix warns and skips it).
// IPv4-mapped IPv6 networks of /96 or longer are converted to IPv4.
// Postfix's "!" negation, "/file" and "type:table" forms are not supported
// and are reported as errors; use ParseACL for allow/deny lists. An empty
// list yields nil.
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, f := range strings.FieldsFunc(line, isSep) {
			p, err := parseNetwork(f)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// FormatNetworks returns ps in the syntax ParseNetworks reads, separated by
// ", ".
func FormatNetworks(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// ParseACL reads an access list such as
//
//	allow 10.0.0.0/8, allow 2001:db8::/32, deny all
//
// Items are separated by commas, semicolons or newlines; "#" starts a
// comment that runs to the end of the line. An item is "allow NETWORK",
// "deny NETWORK" or "default allow|deny"; NETWORK is anything
// ParseNetworks accepts for one element, or "all" (every address,
// including a client without an IP address). Keywords are case-insensitive.
// Rules keep their order (first match wins); "default" may appear once, in
// any position. The empty string yields the zero ACL, which allows
// everything.
func ParseACL(s string) (ACL, error) {
	var acl ACL
	seenDefault := false
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, item := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ';' }) {
			words := strings.Fields(item)
			if len(words) == 0 {
				continue
			}
			if len(words) != 2 {
				return ACL{}, fmt.Errorf("%w: %q: want \"allow|deny NETWORK\" or \"default allow|deny\"", ErrSyntax, strings.TrimSpace(item))
			}
			verb, arg := strings.ToLower(words[0]), words[1]
			if verb == "default" {
				act, ok := parseAction(arg)
				if !ok || seenDefault {
					return ACL{}, fmt.Errorf("%w: %q: want one \"default allow\" or \"default deny\"", ErrSyntax, strings.TrimSpace(item))
				}
				acl.Default, seenDefault = act, true
				continue
			}
			act, ok := parseAction(verb)
			if !ok {
				return ACL{}, fmt.Errorf("%w: %q: unknown action %q", ErrSyntax, strings.TrimSpace(item), words[0])
			}
			r := Rule{Action: act}
			if !strings.EqualFold(arg, "all") {
				p, err := parseNetwork(arg)
				if err != nil {
					return ACL{}, err
				}
				r.Prefix = p
			}
			acl.Rules = append(acl.Rules, r)
		}
	}
	return acl, nil
}

func parseAction(s string) (Action, bool) {
	switch strings.ToLower(s) {
	case "allow", "permit":
		return Allow, true
	case "deny", "reject":
		return Deny, true
	}
	return 0, false
}

func isSep(r rune) bool {
	return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
}

// parseNetwork reads one element: CIDR, address, or [IPv6] with an optional
// /bits after the bracket.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.HasPrefix(s, "!") {
		return netip.Prefix{}, fmt.Errorf("%w: %q: negation is not supported; use an ACL with deny", ErrSyntax, s)
	}
	p, err := parsePrefix(s)
	if err != nil {
		if strings.HasPrefix(s, "/") || isTable(s) {
			return netip.Prefix{}, fmt.Errorf("%w: %q: lookup tables and files are not supported", ErrSyntax, s)
		}
		return netip.Prefix{}, fmt.Errorf("%w: %q: %v", ErrSyntax, s, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%w: %q: host bits set (did you mean %s?)", ErrSyntax, s, p.Masked())
	}
	return unmapPrefix(p), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	text := s
	if strings.HasPrefix(text, "[") {
		end := strings.IndexByte(text, ']')
		if end < 0 {
			return netip.Prefix{}, errors.New("missing ']'")
		}
		rest := text[end+1:]
		if rest != "" && !strings.HasPrefix(rest, "/") {
			return netip.Prefix{}, errors.New("unexpected text after ']'")
		}
		text = text[1:end] + rest
		if !strings.Contains(text[:end-1], ":") {
			return netip.Prefix{}, errors.New("brackets are for IPv6 addresses")
		}
	}
	if strings.Contains(text, "/") {
		return netip.ParsePrefix(text)
	}
	a, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("zones are not allowed")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// isTable reports whether s looks like Postfix's "type:table" form, such
// as "hash:/etc/postfix/network_table".
func isTable(s string) bool {
	typ, _, ok := strings.Cut(s, ":")
	if !ok || typ == "" {
		return false
	}
	for _, r := range typ {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96), the
// form that matches unmapped client addresses.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
