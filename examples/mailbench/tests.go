package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bench holds everything the tests share.
type bench struct {
	t      target
	client string // the client kind (-client), "" for the default
	base   *tls.Config
	proc   *procWatcher
	c      int
	d      time.Duration
	idleN  int
	hold   time.Duration
	chunk  int64
	body   []byte // SMTP upload message: -size rounded down to whole lines
}

// testNames are the tests -tests accepts, in the order "all" runs them.
// idle comes first so that it sees the proxy before the other tests have
// grown its heap.
var testNames = []string{"idle", "idlefetch", "idleappend", "full", "resumed", "login", "rtt", "seq", "bulk1", "bulk16", "first"}

// scalable are the tests that take a scale, "name@N": N clients for the
// timed tests (full@64: 64 clients connecting at once; rtt@16: 16 logged-in
// sessions each in a closed loop of round trips), N sessions for idle and
// idlefetch. The scale is part of the test's name in the results, so each
// scale is a row of its own.
var scalable = []string{"idle", "idlefetch", "idleappend", "full", "first", "resumed", "login", "rtt"}

// splitTest splits a test name into the test and its scale (0 without
// one).
func splitTest(name string) (test string, n int, err error) {
	test, scale, ok := strings.Cut(name, "@")
	if !ok {
		return test, 0, nil
	}
	n, err = strconv.Atoi(scale)
	switch {
	case err != nil || n < 1:
		return test, 0, fmt.Errorf("test %q: the scale after @ must be a positive number", name)
	case !slices.Contains(scalable, test):
		return test, 0, fmt.Errorf("test %q: %s takes no scale (these do: %s)", name, test, strings.Join(scalable, ", "))
	}
	return test, n, nil
}

// tlsConfig returns a per-worker copy of the base config.
func (b *bench) tlsConfig() *tls.Config { return b.base.Clone() }

// runTest runs one named test and returns its result, with what its
// handshakes negotiated.
func (b *bench) runTest(ctx context.Context, name string) (Result, error) {
	b.t.Seen.reset()
	r, err := b.runOne(ctx, name)
	r.KeyExchange, r.Version = b.t.Seen.names()
	return r, err
}

func (b *bench) runOne(ctx context.Context, name string) (Result, error) {
	r := Result{Test: name, Proto: b.t.Proto, TLS: b.t.TLS, Client: b.client, Concurrency: b.c}
	test, n, err := splitTest(name)
	if err != nil {
		return r, err
	}
	if n > 0 {
		r.Concurrency = n
	}
	var m measured
	switch test {
	case "full":
		m = b.run(ctx, job{op: b.connectOp}, r.Concurrency, b.d)
	case "first":
		m = b.run(ctx, job{op: b.firstOp}, r.Concurrency, b.d)
	case "resumed":
		m = b.run(ctx, job{setup: b.warmCache, op: b.connectOp}, r.Concurrency, b.d)
		r.Resumed = m.resumed
	case "login":
		m = b.run(ctx, job{op: b.loginOp}, r.Concurrency, b.d)
	case "seq":
		r.Concurrency = 1
		m = b.run(ctx, job{op: b.connectOp}, 1, b.d)
	case "rtt":
		r.Concurrency = max(n, 1)
		m = b.run(ctx, job{setup: b.loginSetup, holds: true, op: func(_ context.Context, w *worker) (int64, error) { return 0, w.s.noop() }}, r.Concurrency, b.d)
	case "bulk1", "bulk16":
		r.Concurrency = 1
		if test == "bulk16" {
			r.Concurrency = 16
		}
		m = b.run(ctx, job{setup: b.loginSetup, holds: true, op: b.bulkOp}, r.Concurrency, b.d)
	case "idle", "idlefetch", "idleappend":
		r.Concurrency = b.c
		r.Sessions = cmp.Or(n, b.idleN)
		return b.idle(ctx, r, strings.TrimPrefix(test, "idle"))
	default:
		return r, fmt.Errorf("unknown test %q (want %s)", name, strings.Join(testNames, ", "))
	}
	r.fill(m)
	return r, nil
}

// connectOp is one connection: TCP, TLS (or the STARTTLS dialogue and
// TLS), the greeting, which an ordinary proxy can only relay after it
// connected to the backend, and close.
func (b *bench) connectOp(ctx context.Context, w *worker) (int64, error) {
	s, err := b.t.open(ctx, w.cfg)
	if err != nil {
		return 0, err
	}
	if s.resumed() {
		w.resumed++
	}
	s.close()
	return 0, nil
}

// firstOp is connectOp plus the first command (EHLO, CAPABILITY, CAPA)
// through to the backend: what a STARTTLS connectOp does after the
// upgrade, so that implicit TLS and STARTTLS compare with the same backend
// work. On a STARTTLS target it is connectOp.
func (b *bench) firstOp(ctx context.Context, w *worker) (int64, error) {
	s, err := b.t.open(ctx, w.cfg)
	if err != nil {
		return 0, err
	}
	defer s.close()
	if b.t.implicit() {
		err = s.firstCommand()
	}
	return 0, err
}

// warmCache gives a worker a session cache and one ticket in it.
func (b *bench) warmCache(ctx context.Context, w *worker) error {
	w.cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	_, err := b.connectOp(ctx, w)
	w.resumed = 0
	return err
}

// loginOp is a whole short session: connect, TLS, login, logout.
func (b *bench) loginOp(ctx context.Context, w *worker) (int64, error) {
	s, err := b.t.open(ctx, w.cfg)
	if err != nil {
		return 0, err
	}
	defer s.close()
	if err := s.login(); err != nil {
		return 0, err
	}
	return 0, s.logout()
}

// loginSetup opens the session a worker keeps for rtt and bulk.
func (b *bench) loginSetup(ctx context.Context, w *worker) error {
	s, err := b.t.open(ctx, w.cfg)
	if err != nil {
		return err
	}
	if err := s.login(); err != nil {
		s.close()
		return err
	}
	w.s = s
	return nil
}

// bulkOp moves one chunk: an XFETCH download for IMAP, a DATA upload
// for SMTP.
func (b *bench) bulkOp(_ context.Context, w *worker) (int64, error) {
	if b.t.Proto == "smtp" {
		return w.s.upload(b.body)
	}
	return w.s.download(b.chunk)
}

// idle opens r.Sessions logged-in sessions, lets the proxy settle, reads
// its RSS and CPU, holds the sessions for hold, reads again and closes
// them. With traffic "fetch" (IMAP) each session first downloads -size
// bytes and then sits in IDLE, as a mail client idles after syncing a
// mailbox: the proxy's memory after traffic, not only after the login;
// with "append" it uploads a message of -size bytes (APPEND) instead,
// which is the direction whose records crypto/tls reads into a buffer it
// keeps for the connection's life.
func (b *bench) idle(ctx context.Context, r Result, traffic string) (Result, error) {
	if traffic != "" && b.t.Proto != "imap" {
		return r, fmt.Errorf("idle%s: IDLE is IMAP's, not %s", traffic, b.t.Proto)
	}
	before, err := b.proc.sample()
	if err != nil {
		return r, fmt.Errorf("idle: %w", err)
	}
	sessions := make([]*session, r.Sessions)
	var errs errCount
	var next sync.Mutex
	i := 0
	start := time.Now()
	parallel(b.c, func(int) {
		cfg := b.tlsConfig()
		for {
			next.Lock()
			k := i
			i++
			next.Unlock()
			if k >= r.Sessions || ctx.Err() != nil {
				return
			}
			s, err := b.t.open(ctx, cfg)
			if err == nil {
				err = s.login()
				switch {
				case err != nil:
				case traffic == "fetch":
					_, err = s.download(b.chunk)
				case traffic == "append":
					_, err = s.appendMessage(b.body)
				}
				if err == nil && traffic != "" {
					err = s.idle()
				}
				if err != nil {
					s.close()
				}
			}
			if err != nil {
				errs.add(err)
				continue
			}
			s.nc.SetDeadline(time.Time{})
			sessions[k] = s
		}
	})
	r.Duration = time.Since(start).Seconds()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}()
	r.Errors, r.FirstError = errs.n.Load(), errs.msg
	r.Ops = int64(r.Sessions) - r.Errors
	settle := min(time.Second, b.hold)
	sleepCtx(ctx, settle)
	mid, err := b.proc.sample()
	if err != nil {
		return r, fmt.Errorf("idle: %w", err)
	}
	sleepCtx(ctx, b.hold)
	end, err := b.proc.sample()
	if err != nil {
		return r, fmt.Errorf("idle: %w", err)
	}
	r.RSSBeforeKiB, r.RSSAfterKiB = before.RSSKiB, mid.RSSKiB
	if r.Ops > 0 {
		r.KiBPerSession = float64(mid.RSSKiB-before.RSSKiB) / float64(r.Ops)
	}
	r.IdleCPUPercent = 100 * (end.CPU - mid.CPU).Seconds() / b.hold.Seconds()
	return r, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
