package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/acme"
	"github.com/mailedge/mailedge/sni/acme/acmetest"
)

const testEmail = "postmaster@example.com"

// events collects what a Manager reports, for tests to wait on.
type events struct {
	mu       sync.Mutex
	renewals []acme.Renewal
	errs     []error
	changed  chan struct{} // signalled on each report
}

func newEvents() *events { return &events{changed: make(chan struct{}, 1)} }

func (e *events) onRenew(r acme.Renewal) {
	e.mu.Lock()
	e.renewals = append(e.renewals, r)
	e.mu.Unlock()
	e.signal()
}

func (e *events) onError(err error) {
	e.mu.Lock()
	e.errs = append(e.errs, err)
	e.mu.Unlock()
	e.signal()
}

func (e *events) signal() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

func (e *events) counts() (renewals, errs int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.renewals), len(e.errs)
}

func (e *events) lastErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) == 0 {
		return nil
	}
	return e.errs[len(e.errs)-1]
}

// waitFor waits until cond holds, failing after a minute (a bound for a
// hung test, not a timing assertion).
func (e *events) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !cond() {
		select {
		case <-e.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newManager returns a Manager for pb's CA, HTTP-01 on pb's port, file
// storage in dir, reporting to ev and, if store is not nil, reloading it.
func newManager(pb *acmetest.Pebble, dir string, ev *events, store *sni.Store, domains ...string) *acme.Manager {
	return &acme.Manager{
		Domains:       domains,
		Email:         testEmail,
		CA:            pb.Directory,
		RootCAs:       pb.RootCAs,
		HTTPAddr:      "127.0.0.1:" + strconv.Itoa(pb.HTTPPort),
		Dir:           dir,
		CheckInterval: 200 * time.Millisecond,
		RetryInterval: 200 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnRenew: func(r acme.Renewal) {
			if store != nil {
				_ = store.Reload()
			}
			ev.onRenew(r)
		},
		OnError: ev.onError,
	}
}

// runManager runs m.Run until the test ends, and waits for it.
func runManager(t *testing.T, m *acme.Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v; want context.Canceled", err)
		}
	})
}

// serveTLS serves cfg on a loopback listener: each connection completes
// its handshake and is closed. It stops when the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		_ = tc.Handshake()
		_, _ = io.Copy(io.Discard, tc) // until the client closes
	})
}

// handshake connects to addr as a mail client would, with SNI name and the
// ALPN id alpn, verifying the chain against roots, and returns the state.
func handshake(t *testing.T, addr, name, alpn string, roots *x509.CertPool) tls.ConnectionState {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, NextProtos: []string{alpn}, RootCAs: roots})
	require.NoError(t, err, "handshake for %s", name)
	defer c.Close()
	return c.ConnectionState()
}

// servedSerial returns the serial of the leaf store serves for name.
func servedSerial(t *testing.T, store *sni.Store, name string) string {
	t.Helper()
	c, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	require.NoError(t, err)
	return c.Leaf.SerialNumber.String()
}
