package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// group identifies one test setting across labels and repetitions: the
// test (with its scale, "full@64"), the protocol, the TLS mode and the
// kind of client ("" for the default).
type group struct{ Test, Proto, TLS, Client string }

func (g group) String() string {
	test, n, _ := splitTest(g.Test)
	s := test + " " + g.Proto
	switch g.TLS {
	case "starttls":
		s += " STARTTLS"
	case "passthrough":
		s += " passthrough"
	}
	if g.Client != "" {
		s += " " + g.Client
	}
	switch {
	case n == 0:
	case strings.HasPrefix(test, "idle"):
		s += fmt.Sprintf(" (%d sessions)", n)
	default:
		s += fmt.Sprintf(" (%d clients)", n)
	}
	return s
}

// metric is one number taken from a Result.
type metric struct {
	name        string
	get         func(Result) float64
	lowerBetter bool
}

// metricsFor lists what the summary shows for each kind of test (its
// scale, "@N", aside).
func metricsFor(test string) []metric {
	test, _, _ = splitTest(test)
	cpuOp := metric{"proxy CPU µs/op", func(r Result) float64 { return pos(r.ProxyCPUusPerOp) }, true}
	rate := metric{"ops/s", func(r Result) float64 { return r.Rate }, false}
	p50 := metric{"p50 µs", func(r Result) float64 { return r.P50us }, true}
	p99 := metric{"p99 µs", func(r Result) float64 { return r.P99us }, true}
	switch test {
	case "full", "first":
		return []metric{cpuOp, rate, p50}
	case "login":
		return []metric{cpuOp, rate, p50, p99}
	case "resumed":
		return []metric{cpuOp, rate, {"% resumed", func(r Result) float64 { return pct(r.Resumed, r.Ops) }, false}}
	case "rtt":
		return []metric{p50, p99, rate}
	case "seq":
		return []metric{p50, p99, cpuOp}
	case "bulk1", "bulk16":
		return []metric{{"MB/s", func(r Result) float64 { return r.MBps }, false},
			{"proxy CPU s/GB", func(r Result) float64 { return pos(r.ProxyCPUsPerGB) }, true}}
	case "idle", "idlefetch", "idleappend":
		return []metric{{"KiB/session", func(r Result) float64 { return r.KiBPerSession }, true},
			{"idle CPU %", func(r Result) float64 { return r.IdleCPUPercent }, true}}
	}
	return nil
}

func pos(x float64) float64 {
	if x <= 0 {
		return math.NaN()
	}
	return x
}

func pct(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return 100 * float64(a) / float64(b)
}

// table is every result, indexed by group and label.
type table struct {
	groups []group
	labels []string
	rows   map[group]map[string][]Result
}

// loadResults reads JSON result files written with -json.
func loadResults(paths []string) (*table, error) {
	t := &table{rows: make(map[group]map[string][]Result)}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var rs []Result
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, r := range rs {
			t.add(r)
		}
	}
	return t, nil
}

func (t *table) add(r Result) {
	g := group{r.Test, r.Proto, r.TLS, r.Client}
	if t.rows[g] == nil {
		t.rows[g] = make(map[string][]Result)
		t.groups = append(t.groups, g)
	}
	if !slices.Contains(t.labels, r.Label) {
		t.labels = append(t.labels, r.Label)
	}
	t.rows[g][r.Label] = append(t.rows[g][r.Label], r)
}

// spreadOf summarises one metric of one group for one label.
func (t *table) spreadOf(g group, label string, m metric) spread {
	var xs []float64
	for _, r := range t.rows[g][label] {
		xs = append(xs, m.get(r))
	}
	return summarise(xs)
}

// order puts base first and keeps the others as they appeared.
func (t *table) order(base string) []string {
	out := []string{base}
	for _, l := range t.labels {
		if l != base {
			out = append(out, l)
		}
	}
	return out
}

// writeMarkdown prints one row per group and metric: each label's
// median and range, then base/peer ratios of the medians, then the
// ratios of other goal labels to their references (pairs).
func (t *table) writeMarkdown(w io.Writer, base string) {
	labels := t.order(base)
	pairs := t.pairs(base)
	fmt.Fprintf(w, "| test | metric | %s |", strings.Join(labels, " | "))
	for _, l := range labels[1:] {
		fmt.Fprintf(w, " %s/%s |", base, l)
	}
	for _, p := range pairs {
		fmt.Fprintf(w, " %s/%s |", p[0], p[1])
	}
	fmt.Fprintf(w, "\n|---|---|%s\n", strings.Repeat("---|", 2*len(labels)-1+len(pairs)))
	for _, g := range t.groups {
		for _, m := range metricsFor(g.Test) {
			fmt.Fprintf(w, "| %s | %s |", g, m.name)
			for _, l := range labels {
				fmt.Fprintf(w, " %s |", cell(t.spreadOf(g, l, m)))
			}
			b := t.spreadOf(g, base, m)
			for _, l := range labels[1:] {
				fmt.Fprintf(w, " %s |", ratio(b, t.spreadOf(g, l, m)))
			}
			for _, p := range pairs {
				fmt.Fprintf(w, " %s |", ratio(t.spreadOf(g, p[0], m), t.spreadOf(g, p[1], m)))
			}
			fmt.Fprintln(w)
		}
	}
	t.writeErrors(w)
	t.writeNegotiated(w)
}

// writeNegotiated lists, for the rows of a client kind other than the
// default, what each label's handshakes negotiated: a peer without
// ML-KEM answers an ML-KEM client with X25519, which changes what its row
// measures.
func (t *table) writeNegotiated(w io.Writer) {
	header := false
	for _, g := range t.groups {
		if g.Client == "" {
			continue
		}
		var parts []string
		for _, l := range t.labels {
			var seen []string
			for _, r := range t.rows[g][l] {
				if v := strings.TrimSpace(r.Version + " " + r.KeyExchange); v != "" && !slices.Contains(seen, v) {
					seen = append(seen, v)
				}
			}
			if len(seen) > 0 {
				parts = append(parts, l+": "+strings.Join(seen, ", "))
			}
		}
		if len(parts) == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nNegotiated (clients other than X25519-only):")
			header = true
		}
		fmt.Fprintf(w, "- %s: %s\n", g, strings.Join(parts, "; "))
	}
}

// pairs lists the extra ratio columns: for each goal measured on a label
// other than base (gateway-login), that label over each peer its goals
// name (nginx-mail, haproxy), when both have results.
func (t *table) pairs(base string) [][2]string {
	var out [][2]string
	for _, gl := range t.goals(base) {
		p := [2]string{gl.label, gl.ref}
		if gl.label == "" || gl.label == base || gl.ref == "best peer" || gl.ref == "floor" || gl.ref == base ||
			slices.Contains(out, p) || !slices.Contains(t.labels, p[0]) || !slices.Contains(t.labels, p[1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func (t *table) writeErrors(w io.Writer) {
	for _, g := range t.groups {
		for _, l := range t.labels {
			var n int64
			first := ""
			for _, r := range t.rows[g][l] {
				n += r.Errors
				if first == "" {
					first = r.FirstError
				}
			}
			if n > 0 {
				fmt.Fprintf(w, "\nErrors: %s, %s: %d over all repetitions (first: %s)\n", l, g, n, first)
			}
		}
	}
}

// cell prints "median (min–max)", or "n/a" when the label did not run it.
func cell(s spread) string {
	if s.N == 0 {
		return "n/a"
	}
	if s.N == 1 || s.Min == s.Max {
		return short(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", short(s.Median), short(s.Min), short(s.Max))
}

func ratio(a, b spread) string {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a.Median/b.Median)
}

// short prints three significant figures or so.
func short(x float64) string {
	switch ax := math.Abs(x); {
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func runSummarize(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mailbench summarize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("base", "gateway", "label the ratios are computed for (base/peer)")
	floor := fs.Float64("floor", 0, "crypto floor in µs per full handshake, for the targets (see 'mailbench floor')")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "mailbench summarize: give JSON result files")
		return 2
	}
	t, err := loadResults(fs.Args())
	if err == nil && !slices.Contains(t.labels, *base) {
		err = fmt.Errorf("no results labelled %q", *base)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mailbench summarize:", err)
		return 1
	}
	t.writeMarkdown(stdout, *base)
	fmt.Fprintln(stdout)
	t.writeTargets(stdout, *base, *floor)
	return 0
}
