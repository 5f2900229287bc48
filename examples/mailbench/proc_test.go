package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProcWatcherFixture(t *testing.T) {
	w := &procWatcher{Root: "testdata/proc", PIDs: []int{4242, 4243}}
	s, err := w.sample()
	require.NoError(t, err)
	// 4242: utime 250 + stime 120 ticks; 4243: 5 + 5.
	assert.Equal(t, 3800*time.Millisecond, s.CPU)
	assert.Equal(t, int64(4600), s.RSSKiB)
}

func TestProcWatcherErrors(t *testing.T) {
	_, err := (&procWatcher{Root: "testdata/proc"}).sample()
	assert.ErrorIs(t, err, errNoPID)
	_, err = (&procWatcher{Root: "testdata/proc", PIDs: []int{1}}).sample()
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "1 (sh) S 0 1 1 0 -1 0 0 0 0 0 7 3 0 0", 100 * time.Millisecond, false},
		{"spaces and parens in name", "9 (a) b (c)) R 0 1 1 0 -1 0 0 0 0 0 100 0 0 0", time.Second, false},
		{"no name", "1 sh S 0", 0, true},
		{"short", "1 (sh) S 0 1 1", 0, true},
		{"not a number", "1 (sh) S 0 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, true},
		{"negative", "1 (sh) S 0 1 1 0 -1 0 0 0 0 0 -7 3 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{"found", "Name:\tx\nVmRSS:\t  1234 kB\n", 1234, false},
		{"kernel thread has none", "Name:\tkthreadd\n", 0, true},
		{"bad unit", "VmRSS:\t1234 MB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusRSS([]byte(tt.status))
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{"one", "12", []int{12}, false},
		{"master and workers", "12, 13,14", []int{12, 13, 14}, false},
		{"zero", "0", nil, true},
		{"word", "nginx", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePIDs(tt.in)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			assert.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("1 (sh) S 0 1 1 0 -1 0 0 0 0 0 7 3 0 0"))
	f.Add([]byte("9 (a) b (c)) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU %v from %q", d, b)
		}
	})
}
