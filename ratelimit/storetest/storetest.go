package storetest

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
)

// Run plays every scenario as a subtest of t, each through a Limiter on a
// new Store from newStore, and reports every step whose outcome differs
// from the reference's (ratelimit.MemoryStore).
//
// newStore must return an empty Store: one that has seen no event, or
// whose keys no other Store of the test run shares. It is called from the
// scenario's subtest with that subtest's t, on which it may call t.Fatal
// (or t.Skip) and register cleanup.
func Run(t *testing.T, newStore func(t *testing.T) ratelimit.Store) {
	t.Helper()
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			got := play(t, sc.limiter(newStore(t)), sc.ops)
			for i, o := range sc.ops {
				if want := o.outcome(); got[i] != want {
					t.Errorf("step %d: %v: got %s; want %s", i, o, got[i], want)
				}
			}
		})
	}
}

// scenario is one table row: a Limiter's configuration and the steps
// played through it.
type scenario struct {
	name       string
	limits     ratelimit.Limits
	trusted    []netip.Prefix
	ipv6Prefix int
	ops        []op
}

// scenarios are all the scenarios Run plays, connections first.
func scenarios() []scenario {
	return append(limitScenarios(), loginScenarios()...)
}

// limiter returns a new Limiter with sc's configuration on s.
func (sc *scenario) limiter(s ratelimit.Store) *ratelimit.Limiter {
	return &ratelimit.Limiter{Limits: sc.limits, Trusted: sc.trusted, IPv6Prefix: sc.ipv6Prefix, Store: s}
}

// op is one step of a scenario: at the scenario's start plus at, do what
// to addr (for user), expect want (zero: allowed).
type op struct {
	at   time.Duration
	do   string // "admit", "release" (the oldest held lease of addr), "msg", "rcpt", "login", "fail"
	addr string // "" for a client without an IP address
	want ratelimit.Kind
	user string // for "login" and "fail"
}

// String describes o for a failure message.
func (o op) String() string {
	s := fmt.Sprintf("%s %q at +%v", o.do, o.addr, o.at)
	if o.user != "" {
		s += fmt.Sprintf(" for user %q", o.user)
	}
	return s
}

// outcome is what play reports for o when the Store counts as the
// reference does.
func (o op) outcome() string {
	if o.want == 0 {
		return "ok"
	}
	return o.want.String()
}

// errNothingHeld is the outcome of a release with no admitted connection
// to release.
var errNothingHeld = errors.New("nothing held to release")

// play runs ops against l and returns the outcome of every step: "ok",
// the refusal's Kind, or "error: " and the error. No step is fatal, so
// that one wrong step does not hide the others.
func play(t testing.TB, l *ratelimit.Limiter, ops []op) []string {
	t.Helper()
	// A fixed instant in the past, so that a Store that reads its own
	// clock instead of Request.Now fails.
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := t.Context()
	held := map[string][]ratelimit.Lease{}
	out := make([]string, len(ops))
	for i, o := range ops {
		now := t0.Add(o.at)
		var a netip.Addr
		if o.addr != "" {
			a = netip.MustParseAddr(o.addr)
		}
		var err error
		switch o.do {
		case "admit":
			var ls ratelimit.Lease
			ls, err = l.AdmitAt(ctx, a, now)
			if err == nil {
				held[o.addr] = append(held[o.addr], ls)
			}
		case "release":
			if len(held[o.addr]) == 0 {
				// The admission that should have been held was
				// refused: a step the Store already failed.
				err = errNothingHeld
				break
			}
			held[o.addr][0].ReleaseAt(now)
			held[o.addr] = held[o.addr][1:]
		case "msg":
			err = l.AllowMessageAt(ctx, a, now)
		case "rcpt":
			err = l.AllowRecipientAt(ctx, a, now)
		case "login":
			err = l.AllowLoginAt(ctx, a, o.user, now)
		case "fail":
			err = l.LoginFailedAt(ctx, a, o.user, now)
		default:
			t.Fatalf("step %d: unknown op %q", i, o.do)
		}
		out[i] = outcome(err)
	}
	return out
}

// outcome names the result of one step.
func outcome(err error) string {
	var le *ratelimit.LimitError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &le):
		return le.Kind.String()
	default:
		return "error: " + err.Error()
	}
}

// cat joins runs of steps.
func cat(parts ...[]op) []op {
	var out []op
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
