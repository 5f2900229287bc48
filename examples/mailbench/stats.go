package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the samples
// at or below it. It returns 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// micros converts d to microseconds as a float, for reports.
func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}

// spread is the median and range of repeated measurements of one metric.
type spread struct {
	Median, Min, Max float64
	N                int
}

// summarise returns the median (the mean of the middle two for an even
// count), minimum and maximum of xs. NaN values (a metric a run did not
// produce) are left out; the zero spread with N 0 means none remained.
func summarise(xs []float64) spread {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return spread{}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{Median: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// latencies collects per-operation durations from one worker; workers
// each own one, and they are merged after the workers have returned.
type latencies []time.Duration

// merge concatenates the workers' samples and sorts them.
func merge(parts []latencies) []time.Duration {
	var all []time.Duration
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.Sort(all)
	return all
}
