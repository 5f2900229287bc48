package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// TestSelftest runs the demo's self-test on a free port, as
// "go run ./examples/sni -selftest" does, and checks it leaves nothing running.
func TestSelftest(t *testing.T) {
	leaktest.Check(t)
	require.NoError(t, run(context.Background(), "127.0.0.1:0", true))
}
