package mailtest

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"testing"
)

// Started is a System started for a test by NewSystem: its listeners'
// addresses and, unless Options.TLSConfig was given, the CA that signed
// its certificate.
type Started struct {
	*System
	// Addrs are the loopback addresses of every listener.
	Addrs Addrs
	// CA signed the servers' certificate; nil if Options.TLSConfig was
	// given.
	CA *CA
}

// NewSystem starts a System for the test tb on 127.0.0.1 and closes it
// when the test ends (tb.Cleanup), failing the test if Close reports an
// error. Every protocol listens in plain text, with STARTTLS (STLS) and
// over implicit TLS: see Addrs.Addr. If opt.TLSConfig is nil, NewSystem
// makes a CA (Started.CA) and a certificate for opt's host name,
// "localhost" and 127.0.0.1; ClientTLSConfig trusts it. If opt.Logger is
// nil, the System logs nothing (New logs to slog.Default()).
func NewSystem(tb testing.TB, opt Options) *Started {
	tb.Helper()
	st := &Started{}
	if opt.TLSConfig == nil {
		st.CA = NewCA(tb)
		leaf := st.CA.MustIssue(tb, CertOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, hostnameOf(opt), "localhost")
		opt.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	sys, err := New(opt)
	if err != nil {
		tb.Fatalf("mailtest: new system: %v", err)
	}
	st.System = sys
	tb.Cleanup(func() {
		if err := sys.Close(); err != nil && !errors.Is(err, ErrClosed) {
			tb.Errorf("mailtest: close system: %v", err)
		}
	})
	st.Addrs, err = sys.Start(context.Background())
	if err != nil {
		tb.Fatalf("mailtest: start system: %v", err)
	}
	return st
}

// Addr returns the address serving p with sec ("" for MX over implicit
// TLS, which no RFC defines).
func (st *Started) Addr(p Protocol, sec Security) string { return st.Addrs.Addr(p, sec) }

// ClientTLSConfig returns a client configuration that trusts Started.CA
// and expects the System's host name. It is nil if Options.TLSConfig was
// given: the caller knows what to trust then.
func (st *Started) ClientTLSConfig() *tls.Config {
	if st.CA == nil {
		return nil
	}
	return st.CA.ClientConfig(st.hostname())
}

// hostnameOf is System.hostname for an Options not yet in a System.
func hostnameOf(opt Options) string {
	if opt.Hostname != "" {
		return opt.Hostname
	}
	return defaultHostname
}
