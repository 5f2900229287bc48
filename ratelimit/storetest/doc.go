// Package storetest is a conformance suite for implementations of
// ratelimit.Store: it plays the window scenarios of Postfix's anvil(8), as
// ratelimit.Limiter applies them, through a Limiter on the Store under test
// and checks the outcome of every step, in the manner of
// golang.org/x/net/nettest.TestConn and testing/fstest.TestFS.
//
// Typical usage, in the tests of a Store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) ratelimit.Store {
//			s := mystore.New(...)       // empty: keys of its own
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The scenarios cover the in-flight count, the connection, message,
// recipient and auth rates and their shared window (its edges to the
// nanosecond), the failure windows of sources and user names (lockouts),
// trusted networks, IPv6 aggregation, and user names that must be kept
// apart. The expected outcomes are those of ratelimit.MemoryStore, the
// reference; a Store that passes counts as anvil does. The suite does not
// check what is specific to one Store: its capacity (ErrFull), its
// statistics, its behaviour under concurrency or when a backend fails.
//
// Time is passed in: every event carries Request.Now, starting at a fixed
// instant in the past and moving by the steps of each scenario, so a Store
// must take the time from Request.Now, never from a clock of its own, and
// needs no fake clock.
//
// Run calls newStore once per scenario, from that scenario's subtest, and
// uses the Store from the subtest only; the subtests run one after
// another, never in parallel. The Store belongs to the caller: newStore
// releases it with t.Cleanup on the subtest's t. Run starts no goroutines
// of its own and keeps no state between calls.
package storetest
