package demo

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
// implicit-TLS ones are empty unless Options.TLSConfig is set.
type Addrs struct {
	IMAP        string // IMAP; STARTTLS offered when TLS is configured
	Submission  string // SMTP submission, AUTH required (port 587 style)
	MX          string // SMTP for the local domains, no AUTH (port 25 style)
	POP3        string // POP3; STLS offered when TLS is configured
	IMAPS       string // IMAP over implicit TLS (port 993 style)
	Submissions string // SMTP submission over implicit TLS (port 465 style)
	POP3S       string // POP3 over implicit TLS (port 995 style)
}

// ServeIMAP serves IMAP on l until Close. It returns ErrClosed after Close.
func (s *System) ServeIMAP(l net.Listener) error { return s.serve(l, false, s.imap.Serve) }

// ServeIMAPS serves IMAP over implicit TLS (RFC 8314) on l until Close.
func (s *System) ServeIMAPS(l net.Listener) error { return s.serve(l, true, s.imap.Serve) }

// ServeSubmission serves SMTP submission (RFC 6409: AUTH required before
// MAIL) on l until Close. It returns ErrClosed after Close.
func (s *System) ServeSubmission(l net.Listener) error { return s.serve(l, false, s.sub.Serve) }

// ServeSubmissions serves SMTP submission over implicit TLS (RFC 8314) on l
// until Close.
func (s *System) ServeSubmissions(l net.Listener) error { return s.serve(l, true, s.sub.Serve) }

// ServeMX serves MX-style SMTP (no AUTH, local domains only) on l until
// Close. It returns ErrClosed after Close.
func (s *System) ServeMX(l net.Listener) error { return s.serve(l, false, s.mx.Serve) }

// ServePOP3 serves POP3 on l until Close. It returns ErrClosed after Close.
func (s *System) ServePOP3(l net.Listener) error { return s.serve(l, false, s.servePOP3) }

// ServePOP3S serves POP3 over implicit TLS (RFC 8314) on l until Close.
func (s *System) ServePOP3S(l net.Listener) error { return s.serve(l, true, s.servePOP3) }

// serve wraps l (PROXY header, connection tracking, implicit TLS) and runs
// fn on it. The System owns l from here on and closes it on Close.
func (s *System) serve(l net.Listener, implicitTLS bool, fn func(net.Listener) error) error {
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

// Start listens on 127.0.0.1:0 for every service (and the implicit-TLS ones
// when Options.TLSConfig is set), serves them in goroutines it owns, and
// returns their addresses. Everything stops on Close or when ctx ends.
func (s *System) Start(ctx context.Context) (Addrs, error) {
	var a Addrs
	type svc struct {
		addr  *string
		serve func(net.Listener) error
	}
	svcs := []svc{{&a.IMAP, s.ServeIMAP}, {&a.Submission, s.ServeSubmission}, {&a.MX, s.ServeMX}, {&a.POP3, s.ServePOP3}}
	if s.opt.TLSConfig != nil {
		svcs = append(svcs, svc{&a.IMAPS, s.ServeIMAPS}, svc{&a.Submissions, s.ServeSubmissions}, svc{&a.POP3S, s.ServePOP3S})
	}
	var lns []net.Listener
	var lc net.ListenConfig
	for _, v := range svcs {
		l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return Addrs{}, fmt.Errorf("demo: listen: %w", err)
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
		s.log.Error("demo: serve", "addr", l.Addr().String(), "err", err)
	}
}
