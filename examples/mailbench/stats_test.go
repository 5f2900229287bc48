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

func TestLoginRoutedTargets(t *testing.T) {
	tb := &table{rows: make(map[group]map[string][]Result)}
	res := func(label, test string, cpu, p99, kib float64) Result {
		return Result{Label: label, Test: test, Proto: "imap", TLS: "implicit", ProxyCPUusPerOp: cpu, P99us: p99, KiBPerSession: kib, Ops: 1}
	}
	for _, r := range []Result{
		res("gateway", "full", 400, 0, 0), res("haproxy", "full", 600, 0, 0),
		// The login-routed gateway greets by itself: never gateway's best peer.
		res("gateway-login", "full", 100, 0, 0),
		res("gateway-login", "login", 800, 9000, 0), res("gateway-login", "login", 700, 8000, 0), res("gateway-login", "login", 900, 12000, 0),
		res("nginx-mail", "login", 1000, 48000, 0), res("haproxy", "login", 760, 7000, 0),
		res("gateway-login", "idle", 0, 0, 16), res("haproxy", "idle", 0, 0, 17), res("gateway", "idle", 0, 0, 14),
	} {
		tb.add(r)
	}
	var out strings.Builder
	tb.writeTargets(&out, "gateway", 150)
	got := out.String()
	assert.Contains(t, got, "| proxy CPU per full handshake incl. backend connect ≤ 0.85× best peer | 400 proxy CPU µs/op | 600 haproxy | 0.67 | ≤ 0.85 | met |")
	assert.Contains(t, got, "| KiB per idle TLS session ≤ 0.9× HAProxy | 14.0 KiB/session | 17.0 haproxy idle imap | 0.82 | ≤ 0.90 | met |")
	assert.Contains(t, got, "| target | gateway-login | reference | gateway-login/reference | limit | verdict |")
	// 800 / 1000 = 0.80 ≤ 0.9.
	assert.Contains(t, got, "| login-routed: proxy CPU per login session ≤ 0.9× nginx mail | 800 proxy CPU µs/op | 1000 nginx-mail login imap | 0.80 | ≤ 0.90 | met |")
	// 9000 / 48000 = 0.19 ≤ 1.
	assert.Contains(t, got, "| login-routed: login latency p99 ≤ nginx mail | 9000 p99 µs | 48000 nginx-mail login imap | 0.19 | ≤ 1.00 | met |")
	// 16 / 17 = 0.94 > 0.9: 5% above.
	assert.Contains(t, got, "| login-routed: KiB per idle logged-in session ≤ 0.9× HAProxy | 16.0 KiB/session | 17.0 haproxy idle imap | 0.94 | ≤ 0.90 | not met: 5% above the limit |")
	// The base's table has none of gateway-login's goals.
	base, _, _ := strings.Cut(got, "\n\n")
	assert.NotContains(t, base, "login-routed")

	var md strings.Builder
	tb.writeMarkdown(&md, "gateway")
	assert.Contains(t, md.String(), " gateway-login/nginx-mail | gateway-login/haproxy |\n")
	// Labels in order of appearance (gateway, haproxy, gateway-login,
	// nginx-mail); login p99: gateway n/a, so gateway/… n/a;
	// gateway-login/nginx-mail 9000/48000, gateway-login/haproxy 9000/7000.
	assert.Contains(t, md.String(), "| login imap | p99 µs | n/a | 7000 | 9000 (8000–12000) | 48000 | n/a | n/a | n/a | 0.19 | 1.29 |\n")

	// Without gateway-login results, no second table and no extra columns.
	tb2 := &table{rows: make(map[group]map[string][]Result)}
	tb2.add(res("gateway", "full", 400, 0, 0))
	tb2.add(res("nginx-mail", "login", 1000, 48000, 0))
	out.Reset()
	tb2.writeTargets(&out, "gateway", 150)
	assert.NotContains(t, out.String(), "login-routed")
	md.Reset()
	tb2.writeMarkdown(&md, "gateway")
	assert.NotContains(t, md.String(), "gateway-login")
}

func TestFleetTargets(t *testing.T) {
	tb := &table{rows: make(map[group]map[string][]Result)}
	res := func(label, test string, cpu, p99 float64) Result {
		return Result{Label: label, Test: test, Proto: "imap", TLS: "implicit", ProxyCPUusPerOp: cpu, P99us: p99, Ops: 1}
	}
	for _, r := range []Result{
		res("gateway", "seq", 900, 2000), res("gateway-redis", "seq", 950, 2600),
		res("gateway", "full", 500, 0), res("gateway-redis", "full", 560, 0),
		res("gateway-redis", "resumed", 200, 0), res("haproxy", "resumed", 250, 0), res("nginx-stream", "resumed", 180, 0),
		// gateway and gateway-login are not peers of gateway-redis.
		res("gateway", "resumed", 100, 0), res("gateway-login", "resumed", 90, 0),
	} {
		tb.add(r)
	}
	var out strings.Builder
	tb.writeTargets(&out, "gateway", 150)
	got := out.String()
	assert.Contains(t, got, "| target | gateway-redis | reference | gateway-redis/reference | limit | verdict |")
	// 2600 − 2000 = +600 µs ≤ +1000.
	assert.Contains(t, got, "| fleet: connect p99 with Redis admission ≤ gateway's + 1 ms | 2600 p99 µs | 2000 gateway seq imap | +600 | ≤ reference + 1000 | met |")
	// 560 / 500 = 1.12 > 1.10.
	assert.Contains(t, got, "| fleet: proxy CPU per full handshake with Redis admission ≤ 1.10× gateway's | 560 proxy CPU µs/op | 500 gateway full imap | 1.12 | ≤ 1.10 | not met: 2% above the limit |")
	assert.Contains(t, got, "| 950 proxy CPU µs/op | 900 gateway seq imap | 1.06 | ≤ 1.10 | met |")
	// 200 / 180 (nginx-stream, the best peer) = 1.11.
	assert.Contains(t, got, "| fleet: proxy CPU per resumed handshake ≤ best peer (own tickets) | 200 proxy CPU µs/op | 180 nginx-stream | 1.11 | ≤ 1.00 | not met: 11% above the limit |")
	tb.add(res("gateway-redis", "seq", 950, 3200))
	tb.add(res("gateway-redis", "seq", 950, 3100))
	out.Reset()
	tb.writeTargets(&out, "gateway", 150)
	// The median, 3100 − 2000 = +1100: 100 µs above.
	assert.Contains(t, out.String(), "| +1100 | ≤ reference + 1000 | not met: 100 above the limit |")
}

func TestPassthroughTargets(t *testing.T) {
	tb := &table{rows: make(map[group]map[string][]Result)}
	res := func(label, tls string, cpu float64) Result {
		return Result{Label: label, Test: "full", Proto: "imap", TLS: tls, ProxyCPUusPerOp: cpu, Ops: 1}
	}
	for _, r := range []Result{
		res("gateway", "passthrough", 60), res("gateway", "passthrough", 70), res("gateway", "passthrough", 50),
		res("haproxy", "passthrough", 80), res("nginx-stream", "passthrough", 65),
		// Terminated handshakes are another group: never the reference.
		res("gateway", "implicit", 400), res("haproxy", "implicit", 30),
		// gateway-redis is the gateway, not a peer; nginx-mail has no passthrough.
		res("gateway-redis", "passthrough", 10), res("nginx-mail", "passthrough", 5),
	} {
		tb.add(r)
	}
	var out strings.Builder
	tb.writeTargets(&out, "gateway", 150)
	got := out.String()
	// The median 60 / 65 (nginx-stream, the best peer) = 0.92 ≤ 1.
	assert.Contains(t, got, "| passthrough: proxy CPU per passed-through connection ≤ best peer (HAProxy req_ssl_sni, nginx ssl_preread) | 60.0 proxy CPU µs/op | 65.0 nginx-stream | 0.92 | ≤ 1.00 | met |")
	// The base's goal: in the first table, not one of its own.
	base, _, _ := strings.Cut(got, "\n\n")
	assert.Contains(t, base, "passthrough: proxy CPU")
	// Terminated handshakes keep their own goal and reference.
	assert.Contains(t, got, "| proxy CPU per full handshake incl. backend connect ≤ 0.85× best peer | 400 proxy CPU µs/op | 30.0 haproxy | 13.33 | ≤ 0.85 | not met: 1469% above the limit |")

	var md strings.Builder
	tb.writeMarkdown(&md, "gateway")
	// Labels: gateway, haproxy, nginx-stream, gateway-redis, nginx-mail.
	assert.Contains(t, md.String(), "| full imap passthrough | proxy CPU µs/op | 60.0 (50.0–70.0) | 80.0 | 65.0 | 10.0 | 5.00 | 0.75 | 0.92 | 6.00 | 12.00 |\n")
	assert.Contains(t, md.String(), "| full imap | proxy CPU µs/op | 400 | 30.0 | n/a | n/a | n/a | 13.33 | n/a | n/a | n/a |\n")

	tb.add(res("nginx-stream", "passthrough", 55))
	tb.add(res("nginx-stream", "passthrough", 50))
	out.Reset()
	tb.writeTargets(&out, "gateway", 150)
	// nginx-stream's median is now 55: 60 / 55 = 1.09.
	assert.Contains(t, out.String(), "| 60.0 proxy CPU µs/op | 55.0 nginx-stream | 1.09 | ≤ 1.00 | not met: 9% above the limit |")

	// Without passthrough results the goal is not measured.
	tb2 := &table{rows: make(map[group]map[string][]Result)}
	tb2.add(res("gateway", "implicit", 400))
	tb2.add(res("haproxy", "implicit", 500))
	out.Reset()
	tb2.writeTargets(&out, "gateway", 150)
	assert.Contains(t, out.String(), "| passthrough: proxy CPU per passed-through connection ≤ best peer (HAProxy req_ssl_sni, nginx ssl_preread) | n/a |  | n/a | ≤ 1.00 | not measured |")
}

func TestGoFloorTargets(t *testing.T) {
	tb := &table{rows: make(map[group]map[string][]Result)}
	res := func(label, test string, cpu float64) Result {
		return Result{Label: label, Test: test, Proto: "imap", TLS: "implicit", ProxyCPUusPerOp: cpu, Ops: 1}
	}
	for _, r := range []Result{
		res("gateway", "full", 500), res("gofloor", "full", 450), res("haproxy", "full", 600),
		res("gateway", "seq", 1000), res("gofloor", "seq", 960),
	} {
		tb.add(r)
	}
	var out strings.Builder
	tb.writeTargets(&out, "gateway", 150)
	got := out.String()
	// The floor is a reference, never the best peer: HAProxy is.
	assert.Contains(t, got, "| proxy CPU per full handshake incl. backend connect ≤ 0.85× best peer | 500 proxy CPU µs/op | 600 haproxy | 0.83 | ≤ 0.85 | met |")
	// 500 / 450 = 1.11.
	assert.Contains(t, got, "| Go floor: proxy CPU per full handshake incl. backend connect ≤ 1.0× Go floor | 500 proxy CPU µs/op | 450 gofloor full imap | 1.11 | ≤ 1.00 | not met: 11% above the limit |")
	// 1000 / 960 = 1.04.
	assert.Contains(t, got, "| Go floor: proxy CPU per connection, one client in sequence ≤ 1.05× Go floor | 1000 proxy CPU µs/op | 960 gofloor seq imap | 1.04 | ≤ 1.05 | met |")
}
