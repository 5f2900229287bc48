package ticketkeys

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// fakeSource returns what the test sets, and counts its polls.
type fakeSource struct {
	mu    sync.Mutex
	keys  [][32]byte
	err   error
	polls int
}

func (f *fakeSource) set(keys [][32]byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys, f.err = keys, err
}

func (f *fakeSource) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls
}

func (f *fakeSource) Keys(ctx context.Context) ([][32]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return f.keys, f.err
}

// events records a Rotator's callbacks.
type events struct {
	mu       sync.Mutex
	errs     []error
	recovers int
	applied  [][][32]byte
}

func (e *events) rotator(src Source) *Rotator {
	return &Rotator{
		Source: src,
		OnError: func(err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.errs = append(e.errs, err)
		},
		OnRecover: func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.recovers++
		},
		Apply: func(keys [][32]byte) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.applied = append(e.applied, keys)
		},
	}
}

func (e *events) counts() (errs, recovers, applied int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs), e.recovers, len(e.applied)
}

func TestRotatorRefresh(t *testing.T) {
	ctx := context.Background()
	k1, k2, k3 := testKey(1), testKey(2), testKey(3)
	src := &fakeSource{}
	var ev events
	r := ev.rotator(src)
	early := serverConfig(t)
	r.Add(early, nil)

	// No keys yet: an error, reported once; the config is left alone.
	src.set(nil, errors.New("source down"))
	require.EqualError(t, r.Refresh(ctx), "source down")
	require.EqualError(t, r.Refresh(ctx), "source down")
	errs, recovers, applied := ev.counts()
	assert.Equal(t, [3]int{1, 0, 0}, [3]int{errs, recovers, applied})
	st := r.Status()
	assert.Equal(t, 0, st.Keys)
	assert.Empty(t, st.Fingerprint)
	assert.EqualError(t, st.Err, "source down")

	// An empty answer is an error too, not a panic in SetSessionTicketKeys.
	src.set(nil, nil)
	assert.ErrorIs(t, r.Refresh(ctx), ErrNoKeys)

	// Keys: applied to the config, recovery reported once.
	src.set([][32]byte{k1, k2}, nil)
	require.NoError(t, r.Refresh(ctx))
	require.NoError(t, r.Refresh(ctx)) // same keys: no new Apply
	errs, recovers, applied = ev.counts()
	assert.Equal(t, [3]int{1, 1, 1}, [3]int{errs, recovers, applied})
	st = r.Status()
	assert.Equal(t, 2, st.Keys)
	assert.Equal(t, Fingerprint(k1), st.Fingerprint)
	assert.NoError(t, st.Err)
	assert.False(t, st.Updated.IsZero())
	assert.False(t, st.Checked.Before(st.Updated))
	assert.Equal(t, [][32]byte{k1, k2}, ev.applied[0])

	// A config added later gets the keys at once.
	late := serverConfig(t)
	assert.False(t, resumesOn(t, early, late), "configs with crypto/tls's own keys do not share tickets")
	r.Add(late)
	assert.True(t, resumesOn(t, early, late), "a ticket of one config does not resume on the other")
	assert.True(t, resumesOn(t, late, early), "a ticket of one config does not resume on the other")

	// The source fails: the keys stay, one report per run of failures.
	src.set([][32]byte{k3}, errors.New("down again"))
	for range 5 {
		require.Error(t, r.Refresh(ctx))
	}
	errs, recovers, applied = ev.counts()
	assert.Equal(t, [3]int{2, 1, 1}, [3]int{errs, recovers, applied})
	assert.Equal(t, Fingerprint(k1), r.Status().Fingerprint)
	assert.Equal(t, 2, r.Status().Keys)

	// A cancelled poll is not a failure of the source.
	src.set([][32]byte{k3, k1}, nil)
	require.NoError(t, r.Refresh(ctx))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, r.Refresh(cctx), context.Canceled)
	assert.NoError(t, r.Status().Err)
	errs, recovers, applied = ev.counts()
	assert.Equal(t, [3]int{2, 2, 2}, [3]int{errs, recovers, applied})
	assert.Equal(t, Fingerprint(k3), r.Status().Fingerprint)

	// A Rotator without a Source says so.
	assert.ErrorContains(t, (&Rotator{OnError: func(error) {}}).Refresh(ctx), "Source is nil")
}

func TestRotatorRun(t *testing.T) {
	leaktest.Check(t)
	src := &fakeSource{}
	src.set([][32]byte{testKey(1)}, nil)
	var ev events
	r := ev.rotator(src)
	r.Interval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	waitFor(t, "three polls", func() bool { return src.count() >= 3 })
	src.set([][32]byte{testKey(2), testKey(1)}, nil)
	waitFor(t, "the new key", func() bool { return r.Status().Fingerprint == Fingerprint(testKey(2)) })
	src.set(nil, errors.New("down"))
	n := src.count()
	waitFor(t, "five failed polls", func() bool { return src.count() >= n+5 })
	errs, _, applied := ev.counts()
	assert.Equal(t, 1, errs)
	assert.Equal(t, 2, applied)
	assert.Equal(t, Fingerprint(testKey(2)), r.Status().Fingerprint)

	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline: waits that depend on scheduling end when the condition holds,
// never after a fixed time.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
