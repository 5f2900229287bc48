package storetest

import (
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
)

// login is a login attempt from addr for user at at, expecting want.
func login(at time.Duration, addr, user string, want ratelimit.Kind) op {
	return op{at: at, do: "login", addr: addr, user: user, want: want}
}

// fail is a failed login from addr for user at at.
func fail(at time.Duration, addr, user string) op {
	return op{at: at, do: "fail", addr: addr, user: user}
}

// tries is n failed logins (each asked first) from addr for user at at.
func tries(n int, at time.Duration, addr, user string) []op {
	var ops []op
	for range n {
		ops = append(ops, login(at, addr, user, 0), fail(at, addr, user))
	}
	return ops
}

// loginScenarios are the scenarios of logins: the auth rate, and the
// failure windows of sources and user names.
func loginScenarios() []scenario {
	const a, b, c, d = "192.0.2.1", "192.0.2.2", "2001:db8:1::1", "198.51.100.9"
	const trusted = "10.0.0.1"
	const minute = time.Minute
	type L = ratelimit.Limits
	const (
		authRate    = ratelimit.AuthRate
		lockout     = ratelimit.Lockout
		userLockout = ratelimit.UserLockout
	)
	long := strings.Repeat("x", 300)
	return []scenario{
		{
			name:   "auth rate: the 4th in a window is refused; the window edge is inclusive",
			limits: L{AuthRate: 3},
			ops: []op{
				login(0, a, "alice", 0), login(time.Second, a, "bob", 0), login(2*time.Second, a, "", 0),
				login(3*time.Second, a, "carol", authRate),
				login(3*time.Second, b, "carol", 0),
				login(minute, a, "alice", authRate),
				login(minute+1, a, "alice", 0),
			},
		},
		{
			name:   "auth rate shares the source's window with the other rates, as in anvil",
			limits: L{ConnRate: 1, AuthRate: 1},
			ops: []op{
				{do: "admit", addr: a},
				login(50*time.Second, a, "alice", 0),
				login(55*time.Second, a, "alice", authRate),
				// The message at +61s starts a new window for logins too.
				{at: 61 * time.Second, do: "msg", addr: a},
				login(62*time.Second, a, "alice", 0),
			},
		},
		{
			name:   "refused logins count against the auth rate",
			limits: L{AuthRate: 2, LoginFailures: 1},
			ops: []op{
				login(0, a, "alice", 0), fail(0, a, "alice"),
				login(time.Second, a, "alice", lockout),
				login(2*time.Second, a, "alice", authRate),
			},
		},
		{
			name:   "source lockout after N failures, until the window ends",
			limits: L{LoginFailures: 3, Lockout: 10 * minute},
			ops: cat(tries(2, 0, a, "alice"), []op{
				login(time.Second, a, "bob", 0), fail(2*time.Second, a, "bob"),
				login(3*time.Second, a, "carol", lockout),
				login(3*time.Second, a, "", lockout),
				login(3*time.Second, b, "carol", 0),
				// The window opened at t0 ends at t0+10m, inclusive.
				login(10*minute, a, "carol", lockout),
				login(10*minute+1, a, "carol", 0),
			}),
		},
		{
			name:   "a failure after the window ended starts a new window",
			limits: L{LoginFailures: 3, Lockout: 10 * minute},
			ops: cat(tries(2, 0, a, "alice"), []op{
				fail(10*minute+1, a, "alice"), // 1 in a window ending at 20m+1
				login(10*minute+2, a, "alice", 0),
				fail(10*minute+3, a, "alice"), fail(10*minute+4, a, "alice"),
				login(20*minute+1, a, "alice", lockout),
				login(20*minute+2, a, "alice", 0),
			}),
		},
		{
			name:   "the lockout outlives the source's idle expiry",
			limits: L{LoginFailures: 2, Lockout: time.Hour},
			ops: cat(tries(2, 0, a, ""), []op{
				login(30*minute, a, "", lockout),
				login(time.Hour, a, "", lockout),
				login(time.Hour+1, a, "", 0),
			}),
		},
		{
			name:   "the default lockout is 15 minutes",
			limits: L{LoginFailures: 1},
			ops: []op{
				fail(0, a, "alice"),
				login(15*minute, a, "alice", lockout),
				login(15*minute+1, a, "alice", 0),
			},
		},
		{
			name:   "a lockout of centuries does not overflow",
			limits: L{LoginFailures: 1, Lockout: math.MaxInt64},
			ops: []op{
				fail(0, a, "alice"),
				login(200*365*24*time.Hour, a, "alice", lockout),
			},
		},
		{
			name:   "user lockout from several sources",
			limits: L{LoginFailures: 5, UserLoginFailures: 3, Lockout: 10 * minute},
			ops: []op{
				login(0, a, "alice", 0), fail(0, a, "alice"),
				login(time.Second, b, "alice", 0), fail(time.Second, b, "alice"),
				login(2*time.Second, c, "alice", 0), fail(2*time.Second, c, "alice"),
				login(3*time.Second, d, "alice", userLockout),
				login(3*time.Second, a, "alice", userLockout),
				login(3*time.Second, d, "bob", 0),
				login(3*time.Second, d, "", 0),
				login(10*minute, d, "alice", userLockout),
				login(10*minute+1, d, "alice", 0),
			},
		},
		{
			name:   "the source lockout is checked before the user lockout",
			limits: L{LoginFailures: 1, UserLoginFailures: 1},
			ops: []op{
				fail(0, a, "alice"),
				login(time.Second, a, "alice", lockout),
				login(time.Second, b, "alice", userLockout),
			},
		},
		{
			name:    "a trusted source is subject to the user lockout only",
			limits:  L{AuthRate: 2, LoginFailures: 1, UserLoginFailures: 2},
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			ops: cat(tries(2, 0, trusted, "alice"), []op{
				login(time.Second, trusted, "alice", userLockout),
				login(time.Second, trusted, "bob", 0),
				login(time.Second, trusted, "", 0),
				// Its failures counted for alice wherever she comes from.
				login(time.Second, a, "alice", userLockout),
				login(time.Second, a, "bob", 0),
			}),
		},
		{
			name:   "user names are trimmed and case-insensitive",
			limits: L{UserLoginFailures: 3},
			ops: []op{
				fail(0, a, "Alice"), fail(0, b, " alice\t"), fail(0, c, "ALICE"),
				login(time.Second, d, "alice", userLockout),
				login(time.Second, d, "aLiCe ", userLockout),
				login(time.Second, d, "alice2", 0),
			},
		},
		{
			// The Limiter hands a long name over as a digest: the Store
			// must count its failures under it, and tell digests apart.
			name:   "long user names are counted and told apart",
			limits: L{UserLoginFailures: 3},
			ops: []op{
				fail(0, a, long+"1"), fail(0, b, long+"1"), fail(0, c, strings.ToUpper(long)+"1"),
				login(time.Second, d, strings.ToUpper(long)+"1", userLockout),
				login(time.Second, d, long+"2", 0),
			},
		},
		{
			name:   "a user name with a store's key syntax is only a name",
			limits: L{UserLoginFailures: 1},
			ops: []op{
				fail(0, a, "{tag}:s:192.0.2.1/32"),
				login(time.Second, a, "", 0),
				login(time.Second, a, "{tag}:s:192.0.2.1/32", userLockout),
				login(time.Second, a, "{tag}", 0),
			},
		},
		{
			name:   "an empty user name skips the user check",
			limits: L{UserLoginFailures: 1},
			ops:    cat(tries(3, 0, a, ""), []op{login(time.Second, a, "", 0)}),
		},
		{
			name: "zero limits: unlimited logins",
			ops:  cat(tries(100, 0, a, "alice"), []op{login(time.Second, a, "alice", 0)}),
		},
		{
			name:   "a source lockout alone does not lock the user out elsewhere",
			limits: L{LoginFailures: 2},
			ops: cat(tries(2, 0, a, "alice"), []op{
				login(time.Second, a, "alice", lockout),
				login(time.Second, b, "alice", 0),
			}),
		},
		{
			name:   "IPv6 sources are locked out by /64",
			limits: L{LoginFailures: 2},
			ops: []op{
				fail(0, "2001:db8:1:2::1", "alice"), fail(0, "2001:db8:1:2::2", "bob"),
				login(time.Second, "2001:db8:1:2::3", "carol", lockout),
				login(time.Second, "2001:db8:1:3::1", "carol", 0),
			},
		},
	}
}
