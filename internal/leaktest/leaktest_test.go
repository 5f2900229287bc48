package leaktest

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

type recorder struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()                      {}
func (r *recorder) Cleanup(f func())             { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, f) }

func TestCheckFindsLeak(t *testing.T) {
	r := &recorder{TB: t}
	Check(r)
	stop := make(chan struct{})
	go func() { <-stop }()
	// Shorten the wait by releasing after the check reports.
	for _, f := range r.cleanups {
		f()
	}
	close(stop)
	assert.Len(t, r.errs, 1)
	assert.True(t, strings.HasPrefix(r.errs[0], "leaktest:"))
}

func TestCheckPassesWhenClean(t *testing.T) {
	r := &recorder{TB: t}
	Check(r)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	for _, f := range r.cleanups {
		f()
	}
	assert.Empty(t, r.errs)
}

func TestCheckFDsFindsLeak(t *testing.T) {
	r := &recorder{TB: t}
	CheckFDs(r)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.cleanups {
		c()
	}
	f.Close()
	assert.Len(t, r.errs, 1)
}

func TestCheckFDsPassesWhenClosed(t *testing.T) {
	r := &recorder{TB: t}
	CheckFDs(r)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, c := range r.cleanups {
		c()
	}
	assert.Empty(t, r.errs)
}
