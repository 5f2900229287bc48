package ratelimit

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestACL(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name  string
		acl   string
		addr  string
		allow bool
	}{
		{"zero ACL allows", "", "192.0.2.1", true},
		{"zero ACL allows no address", "", "", true},
		{"first match wins: allow before deny", "allow 192.0.2.1, deny 192.0.2.0/24", "192.0.2.1", true},
		{"first match wins: deny after allow", "allow 192.0.2.1, deny 192.0.2.0/24", "192.0.2.2", false},
		{"first match wins: deny before allow", "deny 192.0.2.0/24, allow 192.0.2.1", "192.0.2.1", false},
		{"no match uses default allow", "deny 192.0.2.0/24", "198.51.100.1", true},
		{"no match uses default deny", "allow 192.0.2.0/24, default deny", "198.51.100.1", false},
		{"default may come first", "default deny; allow 192.0.2.0/24", "192.0.2.9", true},
		{"deny all", "allow 2001:db8::/32, deny all", "2001:db9::1", false},
		{"all matches no address", "deny all", "", false},
		{"no address falls to default", "allow 0.0.0.0/0, allow ::/0, default deny", "", false},
		{"mapped address matches IPv4 rule", "deny 192.0.2.0/24", "::ffff:192.0.2.7", false},
		{"ACL applies before trusted networks", "deny 10.9.0.0/16", "10.9.1.1", false},
		{"trusted and allowed", "deny 10.9.0.0/16", "10.8.1.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acl, err := ParseACL(tt.acl)
			require.NoError(t, err)
			l := &Limiter{ACL: acl, Trusted: trusted, Limits: Limits{InFlight: 1}}
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			assert.Equal(t, tt.allow, acl.Allows(a), "Allows(%s)", tt.addr)
			_, err = l.AdmitAt(ctx, a, t0)
			if tt.allow {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, ErrDenied)
				assert.NotErrorIs(t, err, ErrLimited)
				assert.ErrorIs(t, l.AllowMessageAt(ctx, a, t0), ErrDenied)
				assert.ErrorIs(t, l.AllowRecipientAt(ctx, a, t0), ErrDenied)
				_, tracked := sourceAt(l, a, t0)
				assert.False(t, tracked, "a denied source must not be tracked")
			}
		})
	}
}
