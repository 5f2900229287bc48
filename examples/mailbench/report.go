package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// Result is one test's outcome, as written in the JSON report. Fields a
// test does not produce are zero; ProxyCPU fields are -1 without -pid.
type Result struct {
	Label       string  `json:"label,omitempty"`
	Rep         int     `json:"rep,omitempty"`
	Test        string  `json:"test"`
	Proto       string  `json:"proto"`
	TLS         string  `json:"tls"`
	Client      string  `json:"client,omitempty"`       // -client, "" for the default (x25519)
	KeyExchange string  `json:"key_exchange,omitempty"` // what the handshakes negotiated, "+"-joined when they differed
	Version     string  `json:"tls_version,omitempty"`
	Concurrency int     `json:"concurrency"`
	Duration    float64 `json:"duration_s"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Rate        float64 `json:"ops_per_s"`
	Resumed     int64   `json:"resumed,omitempty"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	Bytes       int64   `json:"bytes,omitempty"`
	MBps        float64 `json:"mb_per_s,omitempty"`

	ProxyCPUs       float64 `json:"proxy_cpu_s"`
	ProxyCPUusPerOp float64 `json:"proxy_cpu_us_per_op"`
	ProxyCPUsPerGB  float64 `json:"proxy_cpu_s_per_gb,omitempty"`
	Sessions        int     `json:"sessions,omitempty"`
	RSSBeforeKiB    int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB     int64   `json:"rss_after_kib,omitempty"`
	KiBPerSession   float64 `json:"kib_per_session,omitempty"`
	IdleCPUPercent  float64 `json:"idle_cpu_percent,omitempty"`
}

// fill computes the derived numbers of a timed test from its measurement.
func (r *Result) fill(m measured) {
	r.Duration = m.elapsed.Seconds()
	r.Ops, r.Errors, r.FirstError, r.Bytes = m.ops, m.errs, m.firstErr, m.bytes
	if r.Duration > 0 {
		r.Rate = float64(m.ops) / r.Duration
		r.MBps = float64(m.bytes) / 1e6 / r.Duration
	}
	r.P50us = micros(percentile(m.lat, 50))
	r.P99us = micros(percentile(m.lat, 99))
	r.ProxyCPUs, r.ProxyCPUusPerOp = -1, -1
	if m.cpu >= 0 {
		r.ProxyCPUs = m.cpu.Seconds()
		if m.ops > 0 {
			r.ProxyCPUusPerOp = r.ProxyCPUs * 1e6 / float64(m.ops)
		}
		if m.bytes > 0 {
			r.ProxyCPUsPerGB = r.ProxyCPUs / (float64(m.bytes) / 1e9)
		}
	}
}

// writeJSON writes results as an indented JSON array.
func writeJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rs)
}

// writeTable writes results as an aligned text table.
func writeTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "test\tproto\ttls\tc\tops\terr\tops/s\tp50 µs\tp99 µs\tMB/s\tproxy CPU µs/op\tCPU s/GB\tKiB/session\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Test, r.Proto, r.TLS, r.Concurrency, r.Ops, r.Errors,
			num(r.Rate, 0), num(r.P50us, 0), num(r.P99us, 0), num(r.MBps, 1),
			num(r.ProxyCPUusPerOp, 0), num(r.ProxyCPUsPerGB, 2), num(r.KiBPerSession, 1))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.FirstError != "" {
			fmt.Fprintf(w, "%s: %d errors, first: %s\n", r.Test, r.Errors, r.FirstError)
		}
	}
	return nil
}

// num formats x with prec decimals, or "-" for a metric not measured.
func num(x float64, prec int) string {
	if x == 0 || x < 0 || math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, x)
}
