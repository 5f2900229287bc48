package ratelimit_test

import (
	"testing"

	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/ratelimit/storetest"
)

// TestMemoryStore runs the Store conformance suite on a MemoryStore, the
// reference whose outcomes the suite expects.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) ratelimit.Store { return new(ratelimit.MemoryStore) })
}
