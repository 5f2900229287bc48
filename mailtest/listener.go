package mailtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/pires/go-proxyproto"
)

// Addrs are the loopback addresses Start listens on, as host:port. The
// implicit-TLS ones and the Plain ones are empty unless Options.TLSConfig
// is set (without it IMAP, Submission, MX and POP3 offer no TLS at all).
type Addrs struct {
	IMAP        string // IMAP; STARTTLS offered when TLS is configured
	Submission  string // SMTP submission, AUTH required (port 587 style)
	MX          string // SMTP for the local domains, no AUTH (port 25 style)
	POP3        string // POP3; STLS offered when TLS is configured
	IMAPS       string // IMAP over implicit TLS (port 993 style)
	Submissions string // SMTP submission over implicit TLS (port 465 style)
	POP3S       string // POP3 over implicit TLS (port 995 style)

	PlainIMAP       string // IMAP offering no STARTTLS
	PlainSubmission string // SMTP submission offering no STARTTLS
	PlainMX         string // MX-style SMTP offering no STARTTLS
	PlainPOP3       string // POP3 offering no STLS
}

// Protocol names a service of a System.
type Protocol int

const (
	// IMAP is IMAP4rev2 and IMAP4rev1 (RFC 9051, RFC 3501).
	IMAP Protocol = iota
	// POP3 is POP3 (RFC 1939) with CAPA (RFC 2449).
	POP3
	// Submission is SMTP message submission with AUTH (RFC 6409, RFC 4954).
	Submission
	// MX is SMTP for the local domains without AUTH (RFC 5321).
	MX
)

// Security is how a listener protects its connections.
type Security int

const (
	// Plain is plain text with no TLS offered.
	Plain Security = iota
	// StartTLS is plain text upgraded by STARTTLS (RFC 3207, RFC 9051
	// §6.2.1) or STLS (RFC 2595).
	StartTLS
	// ImplicitTLS is TLS from the first byte (RFC 8314).
	ImplicitTLS
)

// Addr returns the address serving p with sec, or "" if Start opened none
// (TLS was not configured, or MX over implicit TLS, which no RFC defines).
func (a Addrs) Addr(p Protocol, sec Security) string {
	tlsOn := a.IMAPS != ""
	type key struct {
		p   Protocol
		sec Security
	}
	m := map[key]string{
		{IMAP, StartTLS}: a.IMAP, {POP3, StartTLS}: a.POP3, {Submission, StartTLS}: a.Submission, {MX, StartTLS}: a.MX,
		{IMAP, ImplicitTLS}: a.IMAPS, {POP3, ImplicitTLS}: a.POP3S, {Submission, ImplicitTLS}: a.Submissions,
		{IMAP, Plain}: a.PlainIMAP, {POP3, Plain}: a.PlainPOP3, {Submission, Plain}: a.PlainSubmission, {MX, Plain}: a.PlainMX,
	}
	if !tlsOn {
		m = map[key]string{{IMAP, Plain}: a.IMAP, {POP3, Plain}: a.POP3, {Submission, Plain}: a.Submission, {MX, Plain}: a.MX}
	}
	return m[key{p, sec}]
}

// ServeIMAP serves IMAP on l until Close, offering STARTTLS when
// Options.TLSConfig is set. It returns ErrClosed after Close.
func (s *System) ServeIMAP(l net.Listener) error { return s.serve(l, false, true, s.imap.Serve) }

// ServeIMAPPlain serves IMAP on l until Close, never offering STARTTLS.
func (s *System) ServeIMAPPlain(l net.Listener) error {
	return s.serve(l, false, true, s.imapPlain.Serve)
}

// ServeIMAPS serves IMAP over implicit TLS (RFC 8314) on l until Close.
// The server is the one that offers no STARTTLS: the flag rewrite wraps
// the *tls.Conn, which hides from go-imap that the session is TLS already.
func (s *System) ServeIMAPS(l net.Listener) error { return s.serve(l, true, true, s.imapPlain.Serve) }

// ServeSubmission serves SMTP submission (RFC 6409: AUTH required before
// MAIL) on l until Close, offering STARTTLS when Options.TLSConfig is set.
// It returns ErrClosed after Close.
func (s *System) ServeSubmission(l net.Listener) error { return s.serve(l, false, false, s.sub.Serve) }

// ServeSubmissionPlain serves SMTP submission on l until Close, never
// offering STARTTLS.
func (s *System) ServeSubmissionPlain(l net.Listener) error {
	return s.serve(l, false, false, s.subPlain.Serve)
}

// ServeSubmissions serves SMTP submission over implicit TLS (RFC 8314) on l
// until Close.
func (s *System) ServeSubmissions(l net.Listener) error { return s.serve(l, true, false, s.sub.Serve) }

// ServeMX serves MX-style SMTP (no AUTH, local domains only) on l until
// Close, offering STARTTLS when Options.TLSConfig is set. It returns
// ErrClosed after Close.
func (s *System) ServeMX(l net.Listener) error { return s.serve(l, false, false, s.mx.Serve) }

// ServeMXPlain serves MX-style SMTP on l until Close, never offering
// STARTTLS.
func (s *System) ServeMXPlain(l net.Listener) error { return s.serve(l, false, false, s.mxPlain.Serve) }

// ServePOP3 serves POP3 on l until Close, offering STLS when
// Options.TLSConfig is set. It returns ErrClosed after Close.
func (s *System) ServePOP3(l net.Listener) error { return s.serve(l, false, false, s.servePOP3) }

// ServePOP3Plain serves POP3 on l until Close, never offering STLS.
func (s *System) ServePOP3Plain(l net.Listener) error {
	return s.serve(l, false, false, s.servePOP3Plain)
}

// ServePOP3S serves POP3 over implicit TLS (RFC 8314) on l until Close.
func (s *System) ServePOP3S(l net.Listener) error { return s.serve(l, true, false, s.servePOP3) }

// serve wraps l (PROXY header, connection tracking, implicit TLS, IMAP
// flag casing when imap is set) and runs fn on it. The System owns l from
// here on and closes it on Close.
func (s *System) serve(l net.Listener, implicitTLS, imap bool, fn func(net.Listener) error) error {
	if implicitTLS && s.opt.TLSConfig == nil {
		l.Close()
		return fmt.Errorf("%w: implicit TLS needs Options.TLSConfig", ErrBadOptions)
	}
	inner := l
	if s.opt.AcceptProxy {
		inner = &proxyproto.Listener{
			Listener:          l,
			ConnPolicy:        loopbackProxyPolicy,
			ReadHeaderTimeout: proxyHeaderTimeout,
		}
	}
	tl := &trackListener{Listener: inner, s: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.listeners[tl] = struct{}{}
	s.mu.Unlock()
	var outer net.Listener = tl
	if implicitTLS {
		outer = tls.NewListener(tl, s.opt.TLSConfig)
	}
	if imap {
		outer = flagCaseListener{outer}
	}
	err := fn(outer)
	s.mu.Lock()
	delete(s.listeners, tl)
	closed := s.closed
	s.mu.Unlock()
	tl.Close()
	if closed {
		return ErrClosed
	}
	return err
}

// loopbackProxyPolicy trusts PROXY headers from loopback peers only. They
// must send one: the mail protocols speak first, so a server cannot wait to
// see whether a header comes. Other peers are served unwrapped.
func loopbackProxyPolicy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil && ap.Addr().Unmap().IsLoopback() {
		return proxyproto.REQUIRE, nil
	}
	return proxyproto.SKIP, nil
}

// trackListener counts the connections it accepts so that Close can wait
// for every one to be closed by the server that handles it.
type trackListener struct {
	net.Listener
	s    *System
	once sync.Once
	err  error
}

// Accept waits for the next connection and tracks it until it is closed.
func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.s.conns.Add(1)
	return &trackedConn{Conn: c, done: l.s.conns.Done}, nil
}

// Close closes the underlying listener once; later calls return nil, so
// that the System and the protocol servers may both close it.
func (l *trackListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return nil
}

// trackedConn reports its first Close to the owning System.
type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
}

// Close closes the connection and marks it done.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}

// Start listens on 127.0.0.1:0 for every service (and the implicit-TLS and
// Plain ones when Options.TLSConfig is set), serves them in goroutines it owns, and
// returns their addresses. Everything stops on Close or when ctx ends.
func (s *System) Start(ctx context.Context) (Addrs, error) {
	var a Addrs
	type svc struct {
		addr  *string
		serve func(net.Listener) error
	}
	svcs := []svc{{&a.IMAP, s.ServeIMAP}, {&a.Submission, s.ServeSubmission}, {&a.MX, s.ServeMX}, {&a.POP3, s.ServePOP3}}
	if s.opt.TLSConfig != nil {
		svcs = append(svcs, svc{&a.IMAPS, s.ServeIMAPS}, svc{&a.Submissions, s.ServeSubmissions}, svc{&a.POP3S, s.ServePOP3S},
			svc{&a.PlainIMAP, s.ServeIMAPPlain}, svc{&a.PlainSubmission, s.ServeSubmissionPlain},
			svc{&a.PlainMX, s.ServeMXPlain}, svc{&a.PlainPOP3, s.ServePOP3Plain})
	}
	var lns []net.Listener
	var lc net.ListenConfig
	for _, v := range svcs {
		l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return Addrs{}, fmt.Errorf("mailtest: listen: %w", err)
		}
		lns = append(lns, l)
		*v.addr = l.Addr().String()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		for _, l := range lns {
			l.Close()
		}
		return Addrs{}, ErrClosed
	}
	s.wg.Add(len(lns))
	s.mu.Unlock()
	for i, l := range lns {
		go s.serveLoop(l, svcs[i].serve)
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	s.mu.Lock()
	if s.closed {
		stop()
	} else {
		s.stops = append(s.stops, stop)
	}
	s.mu.Unlock()
	return a, nil
}

// serveLoop runs one of Start's listeners; named for stack dumps.
func (s *System) serveLoop(l net.Listener, serve func(net.Listener) error) {
	defer s.wg.Done()
	if err := serve(l); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Error("mailtest: serve", "addr", l.Addr().String(), "err", err)
	}
}
