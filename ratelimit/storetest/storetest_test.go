package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/mailedge/mailedge/ratelimit"
	"github.com/stretchr/testify/assert"
)

// TestScenarioNames: every name is unique, or t.Run would tell two
// scenarios apart only by a "#01" suffix.
func TestScenarioNames(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range scenarios() {
		assert.False(t, seen[sc.name], "scenario %q twice", sc.name)
		seen[sc.name] = true
		assert.NotEmpty(t, sc.ops, "scenario %q has no steps", sc.name)
	}
}

// TestScenariosCatchBrokenStores plays every scenario on Stores that do not
// count: each scenario that expects a refusal must notice, or it tests
// nothing of the Store.
func TestScenariosCatchBrokenStores(t *testing.T) {
	boom := errors.New("boom")
	stores := map[string]ratelimit.Store{
		"counts nothing": ratelimit.StoreFunc(func(context.Context, ratelimit.Request) (ratelimit.Counts, error) {
			return ratelimit.Counts{}, nil
		}),
		"fails": ratelimit.StoreFunc(func(context.Context, ratelimit.Request) (ratelimit.Counts, error) {
			return ratelimit.Counts{}, boom
		}),
	}
	for name, s := range stores {
		for _, sc := range scenarios() {
			want := make([]string, len(sc.ops))
			refuses := false
			for i, o := range sc.ops {
				want[i] = o.outcome()
				refuses = refuses || o.want != 0
			}
			if !refuses && name == "counts nothing" {
				continue // a scenario that admits everything checks the Limiter, not the Store
			}
			got := play(t, sc.limiter(s), sc.ops)
			assert.NotEqual(t, want, got, "a Store that %s passes %q", name, sc.name)
		}
	}
}
