package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the maximum", ms(hundred...), 100, 100 * time.Millisecond},
		{"tiny p is the minimum", ms(3, 9), 0.01, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, percentile(tt.sorted, tt.p))
		})
	}
}

func TestSummarise(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		xs   []float64
		want spread
	}{
		{"none", nil, spread{}},
		{"only NaN", []float64{nan}, spread{}},
		{"odd", []float64{3, 1, 2}, spread{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even averages the middle two", []float64{4, 1, 3, 2}, spread{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"NaN left out", []float64{5, nan, 1, 3}, spread{Median: 3, Min: 1, Max: 5, N: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, summarise(tt.xs))
		})
	}
}

func TestMergeSorts(t *testing.T) {
	got := merge([]latencies{{3, 1}, nil, {2}})
	assert.Equal(t, []time.Duration{1, 2, 3}, got)
}

func TestCell(t *testing.T) {
	tests := []struct {
		name string
		s    spread
		want string
	}{
		{"missing", spread{}, "n/a"},
		{"single", spread{Median: 412.4, Min: 412.4, Max: 412.4, N: 1}, "412"},
		{"range", spread{Median: 1.5, Min: 1.25, Max: 17, N: 3}, "1.50 (1.25–17.0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, cell(tt.s))
		})
	}
}

func TestTargets(t *testing.T) {
	tb := &table{rows: make(map[group]map[string][]Result)}
	full := func(label string, cpu float64) Result {
		return Result{Label: label, Test: "full", Proto: "imap", TLS: "implicit", ProxyCPUusPerOp: cpu, Ops: 1}
	}
	for _, r := range []Result{full("gateway", 400), full("gateway", 420), full("gateway", 380), full("haproxy", 600), full("nginx", 500),
		full("nginx-mail", 300), // no backend connect in its full test: never the reference
		{Label: "gateway", Test: "full", Proto: "imap", TLS: "starttls", ProxyCPUusPerOp: 480, Ops: 1}} {
		tb.add(r)
	}
	var out strings.Builder
	tb.writeTargets(&out, "gateway", 150)
	got := out.String()
	// 400 / 500 = 0.80 against the best peer (nginx): met.
	assert.Contains(t, got, "| proxy CPU per full handshake incl. backend connect ≤ 0.85× best peer | 400 proxy CPU µs/op | 500 nginx | 0.80 | ≤ 0.85 | met |")
	// 400 / 150 = 2.67 against the floor: met.
	assert.Contains(t, got, "| 400 proxy CPU µs/op | 150 crypto floor | 2.67 | ≤ 3.00 | met |")
	// STARTTLS 480 / implicit 400 = 1.20 > 1.15: 4% above.
	assert.Contains(t, got, "| 480 proxy CPU µs/op | 400 gateway full imap | 1.20 | ≤ 1.15 | not met: 4% above the limit |")
	assert.Contains(t, got, "| KiB per idle TLS session ≤ 0.9× HAProxy | n/a | haproxy | n/a | ≤ 0.90 | not measured |")
}
