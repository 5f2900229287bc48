package ratelimit

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestParseNetworks(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []netip.Prefix
		err  string
	}{
		{name: "empty", in: ""},
		{name: "blank and comment", in: "  \n# nothing\n"},
		{name: "postfix mynetworks", in: "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
			want: prefixes("127.0.0.0/8", "127.0.0.0/8", "::1/128")},
		{name: "commas and spaces", in: "10.0.0.0/8, 192.168.0.0/16,172.16.0.0/12",
			want: prefixes("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12")},
		{name: "file with comments", in: "10.0.0.0/8 # office\n\n2001:db8::/32\t# lab\r\n",
			want: prefixes("10.0.0.0/8", "2001:db8::/32")},
		{name: "single addresses", in: "192.0.2.1 2001:db8::1 [2001:db8::2]",
			want: prefixes("192.0.2.1/32", "2001:db8::1/128", "2001:db8::2/128")},
		{name: "mapped address", in: "::ffff:192.0.2.1", want: prefixes("192.0.2.1/32")},
		{name: "all mapped addresses are all of IPv4", in: "::ffff:0:0/96", want: prefixes("0.0.0.0/0")},
		{name: "short prefix stays IPv6", in: "::/80", want: prefixes("::/80")},
		{name: "host bits", in: "10.0.0.1/8", err: `"10.0.0.1/8": host bits set (did you mean 10.0.0.0/8?)`},
		{name: "negation", in: "!192.0.2.1, 192.0.2.0/24", err: "negation is not supported"},
		{name: "table", in: "hash:/etc/postfix/network_table", err: "lookup tables and files are not supported"},
		{name: "file", in: "/etc/postfix/networks", err: "lookup tables and files are not supported"},
		{name: "garbage", in: "10.0.0.0/8 example.com", err: `"example.com"`},
		{name: "bad bits", in: "10.0.0.0/33", err: `"10.0.0.0/33"`},
		{name: "zone", in: "fe80::1%eth0", err: "zones are not allowed"},
		{name: "bracket unclosed", in: "[::1", err: "missing ']'"},
		{name: "bracket junk", in: "[::1]x", err: "unexpected text after ']'"},
		{name: "bracketed IPv4", in: "[192.0.2.1]", err: "brackets are for IPv6 addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNetworks(tt.in)
			if tt.err != "" {
				assert.ErrorIs(t, err, ErrSyntax)
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseACL(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want ACL
		err  string
	}{
		{name: "empty", in: ""},
		{name: "lock-down to known networks", in: "allow 10.0.0.0/8, allow 2001:db8::/32, deny all",
			want: ACL{Rules: []Rule{
				{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
				{Prefix: netip.MustParsePrefix("2001:db8::/32")},
				{Action: Deny},
			}}},
		{name: "semicolons, newlines, comments, case", in: "ALLOW 192.0.2.1; # host\nDeny 192.0.2.0/24\n\nDEFAULT deny",
			want: ACL{Rules: []Rule{
				{Prefix: netip.MustParsePrefix("192.0.2.1/32")},
				{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Action: Deny},
			}, Default: Deny}},
		{name: "permit and reject", in: "permit [2001:db8::]/32, reject 0.0.0.0/0",
			want: ACL{Rules: []Rule{
				{Prefix: netip.MustParsePrefix("2001:db8::/32")},
				{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Action: Deny},
			}}},
		{name: "default allow", in: "default allow", want: ACL{}},
		{name: "missing network", in: "allow", err: `want "allow|deny NETWORK"`},
		{name: "extra word", in: "allow 10.0.0.0/8 now", err: `want "allow|deny NETWORK"`},
		{name: "unknown action", in: "drop 10.0.0.0/8", err: `unknown action "drop"`},
		{name: "bad network", in: "deny 10.0.0.0/40", err: `"10.0.0.0/40"`},
		{name: "two defaults", in: "default deny, default allow", err: "want one"},
		{name: "bad default", in: "default maybe", err: "want one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseACL(tt.in)
			if tt.err != "" {
				assert.ErrorIs(t, err, ErrSyntax)
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestACLString(t *testing.T) {
	acl := ACL{Rules: []Rule{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Action: Deny},
		{Action: Deny},
	}, Default: Deny}
	assert.Equal(t, "allow 10.0.0.0/8, deny 2001:db8::/32, deny all, default deny", acl.String())
	assert.Equal(t, "default deny", ACL{Default: Deny}.String())
	assert.Equal(t, "", ACL{}.String())
	assert.Equal(t, "10.0.0.0/8, ::1/128", FormatNetworks(prefixes("10.0.0.0/8", "::1/128")))
}

// FuzzParseNetworks checks that ParseNetworks never panics and that what it
// accepts survives a round trip through FormatNetworks.
func FuzzParseNetworks(f *testing.F) {
	for _, s := range []string{
		"127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
		"10.0.0.0/8, 192.0.2.1 # comment\n2001:db8::/32",
		"!10.0.0.1", "hash:/etc/x", "[::1", "10.0.0.1/8", "::ffff:1.2.3.4/120",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseNetworks(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() && p.Bits() >= 96 || p.Addr().Zone() != "" {
				t.Fatalf("ParseNetworks(%q) returned %v", s, p)
			}
		}
		again, err := ParseNetworks(FormatNetworks(ps))
		if err != nil {
			t.Fatalf("ParseNetworks(FormatNetworks(%v)): %v", ps, err)
		}
		if len(again) != len(ps) {
			t.Fatalf("round trip: %v became %v", ps, again)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("round trip: %v became %v", ps, again)
			}
		}
	})
}

// FuzzParseACL checks that ParseACL never panics and that what it accepts
// survives a round trip through ACL.String.
func FuzzParseACL(f *testing.F) {
	for _, s := range []string{
		"allow 10.0.0.0/8, deny 0.0.0.0/0",
		"allow 10.0.0.0/8, allow 2001:db8::/32, deny all",
		"DEFAULT deny; permit [2001:db8::]/32 # x\nreject 192.0.2.1",
		"default allow, default deny", "allow", "deny ::ffff:10.0.0.0/104",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		acl, err := ParseACL(s)
		if err != nil {
			return
		}
		again, err := ParseACL(acl.String())
		if err != nil {
			t.Fatalf("ParseACL(%q) = %v, but ParseACL(%q): %v", s, acl, acl.String(), err)
		}
		if again.String() != acl.String() || again.Default != acl.Default || len(again.Rules) != len(acl.Rules) {
			t.Fatalf("round trip: %q became %q", acl.String(), again.String())
		}
		for i := range acl.Rules {
			if again.Rules[i] != acl.Rules[i] {
				t.Fatalf("round trip: rule %d %v became %v", i, acl.Rules[i], again.Rules[i])
			}
		}
	})
}
