package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"
)

// bench holds everything the tests share.
type bench struct {
	t     target
	base  *tls.Config
	proc  *procWatcher
	c     int
	d     time.Duration
	idleN int
	hold  time.Duration
	chunk int64
	body  []byte // SMTP upload message: -size rounded down to whole lines
}

// testNames are the tests -tests accepts, in the order "all" runs them.
// idle comes first so that it sees the proxy before the other tests have
// grown its heap.
var testNames = []string{"idle", "full", "resumed", "login", "rtt", "seq", "bulk1", "bulk16", "first"}

// tlsConfig returns a per-worker copy of the base config.
func (b *bench) tlsConfig() *tls.Config { return b.base.Clone() }

// runTest runs one named test and returns its result.
func (b *bench) runTest(ctx context.Context, name string) (Result, error) {
	r := Result{Test: name, Proto: b.t.Proto, TLS: b.t.TLS, Concurrency: b.c}
	var m measured
	switch name {
	case "full":
		m = b.run(ctx, job{op: b.connectOp}, b.c, b.d)
	case "first":
		m = b.run(ctx, job{op: b.firstOp}, b.c, b.d)
	case "resumed":
		m = b.run(ctx, job{setup: b.warmCache, op: b.connectOp}, b.c, b.d)
		r.Resumed = m.resumed
	case "login":
		m = b.run(ctx, job{op: b.loginOp}, b.c, b.d)
	case "seq":
		r.Concurrency = 1
		m = b.run(ctx, job{op: b.connectOp}, 1, b.d)
	case "rtt":
		r.Concurrency = 1
		m = b.run(ctx, job{setup: b.loginSetup, holds: true, op: func(_ context.Context, w *worker) (int64, error) { return 0, w.s.noop() }}, 1, b.d)
	case "bulk1", "bulk16":
		r.Concurrency = 1
		if name == "bulk16" {
			r.Concurrency = 16
		}
		m = b.run(ctx, job{setup: b.loginSetup, holds: true, op: b.bulkOp}, r.Concurrency, b.d)
	case "idle":
		return b.idle(ctx, r)
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

// idle opens idleN logged-in sessions, lets the proxy settle, reads its
// RSS and CPU, holds the sessions for hold, reads again and closes them.
func (b *bench) idle(ctx context.Context, r Result) (Result, error) {
	r.Sessions = b.idleN
	before, err := b.proc.sample()
	if err != nil {
		return r, fmt.Errorf("idle: %w", err)
	}
	sessions := make([]*session, b.idleN)
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
			if k >= b.idleN || ctx.Err() != nil {
				return
			}
			s, err := b.t.open(ctx, cfg)
			if err == nil {
				if err = s.login(); err != nil {
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
	r.Ops = int64(b.idleN) - r.Errors
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
