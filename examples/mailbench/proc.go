package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTick = 100

// maxTicks bounds a tick count so that the sum stays a valid Duration
// (about 348 years of CPU).
const maxTicks = 1 << 40

// errNoPID is returned by sampling when no -pid was given.
var errNoPID = errors.New("mailbench: no -pid given")

// procSample is the resource use of the watched processes at one moment.
type procSample struct {
	CPU    time.Duration // utime+stime summed over the processes
	RSSKiB int64         // VmRSS summed over the processes
}

// procWatcher reads CPU and RSS of a set of processes from a /proc tree.
// Root is "/proc" in the program and a fixture folder in tests.
type procWatcher struct {
	Root string
	PIDs []int
}

// parsePIDs reads "123" or "123,456" (a master and its workers).
func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-pid %q: want process ids separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// sample reads every process once and sums them.
func (w *procWatcher) sample() (procSample, error) {
	if w == nil || len(w.PIDs) == 0 {
		return procSample{}, errNoPID
	}
	var total procSample
	for _, pid := range w.PIDs {
		dir := fmt.Sprintf("%s/%d", w.Root, pid)
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			return procSample{}, err
		}
		cpu, err := parseStatCPU(stat)
		if err != nil {
			return procSample{}, fmt.Errorf("%s/stat: %w", dir, err)
		}
		status, err := os.ReadFile(dir + "/status")
		if err != nil {
			return procSample{}, err
		}
		rss, err := parseStatusRSS(status)
		if err != nil {
			return procSample{}, fmt.Errorf("%s/status: %w", dir, err)
		}
		total.CPU += cpu
		total.RSSKiB += rss
	}
	return total, nil
}

// parseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')', field 3 (state) is f[0]; utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name; want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > maxTicks {
			return 0, fmt.Errorf("bad tick count %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// parseStatusRSS returns VmRSS in KiB from /proc/<pid>/status.
func parseStatusRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want 'N kB'", sc.Text())
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no VmRSS line: %w", fs.ErrNotExist)
}
