package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// service is one listener with everything a connection on it goes through.
type service struct {
	name     string
	proto    starttls.Protocol
	implicit bool
	hostname string
	srv      *starttls.Server
	pool     *backend.Pool
	limiter  *ratelimit.Limiter // nil: no limits on this listener
	inspect  bool               // SMTP message and recipient rates
	log      *slog.Logger
	metrics  *metrics
	idle     time.Duration

	wg sync.WaitGroup
}

// serve accepts until l is closed. Sessions get ctx; cancelling it ends them.
func (s *service) serve(ctx context.Context, l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, c)
		}()
	}
}

// sessionLog collects what the one log line per session reports.
type sessionLog struct {
	client, sni, tlsVersion, cipher, member string
	outcome                                 string
	err                                     error
	stats                                   bridge.Stats
	start                                   time.Time
}

func (s *service) handle(ctx context.Context, conn net.Conn) {
	sl := &sessionLog{client: conn.RemoteAddr().String(), start: time.Now(), outcome: "ok"}
	defer func() { conn.Close(); s.finish(sl) }()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	src := addrOf(conn.RemoteAddr())
	if s.limiter != nil {
		lease, err := s.limiter.Admit(src)
		if err != nil {
			s.refuseLimited(conn, err, sl)
			return
		}
		defer lease.Release()
	}
	sess, err := s.clientSide(ctx, conn, sl)
	if err != nil {
		return
	}
	be, err := s.pool.Dial(ctx, backend.ClientInfo{
		Src: conn.RemoteAddr(), Dst: conn.LocalAddr(), TLS: tlsState(sess),
		ServerName: sess.ServerName, Helo: sess.Helo, HeloVerb: sess.HeloVerb,
	})
	if err != nil {
		sl.outcome, sl.err = "no_backend", err
		sess.Conn.Write(starttls.Unavailable(s.proto, s.hostname, "Service not available, try again later"))
		return
	}
	sl.member = be.Member
	client, server, err := starttls.Handover(ctx, sess, be.Backend())
	if err != nil {
		be.Close()
		sl.outcome, sl.err = "handover_failed", err
		return
	}
	sl.stats, err = bridge.Join(ctx, client, server, s.bridgeOptions(src))
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		// Many clients (swaks, Outlook) reset instead of closing after QUIT.
		sl.outcome = "reset"
	default:
		sl.outcome, sl.err = "copy_error", err
	}
}

// clientSide runs the TLS handshake (implicit) or the STARTTLS dialogue.
func (s *service) clientSide(ctx context.Context, conn net.Conn, sl *sessionLog) (*starttls.Session, error) {
	var sess *starttls.Session
	var err error
	if s.implicit {
		sess, err = s.srv.ServeTLS(ctx, conn)
	} else {
		sess, err = s.srv.Serve(ctx, conn)
	}
	if err != nil {
		sl.outcome, sl.err = "client_refused", err
		if errors.Is(err, starttls.ErrClientQuit) {
			sl.outcome, sl.err = "client_quit", nil
		}
		s.metrics.handshakeFailed(s.name, err)
		return nil, err
	}
	if sess.TLS {
		sl.sni = sess.ServerName
		sl.tlsVersion = tls.VersionName(sess.State.Version)
		sl.cipher = tls.CipherSuiteName(sess.State.CipherSuite)
		s.metrics.handshake(s.name, sess, s.implicit)
	} else {
		s.metrics.plainSession(s.name)
	}
	return sess, nil
}

func (s *service) refuseLimited(conn net.Conn, err error, sl *sessionLog) {
	sl.outcome, sl.err = "rate_limited", err
	s.metrics.limited(s.name, err)
	if s.implicit {
		// The refusal could only be read inside TLS; spending a handshake on
		// a source already over its limit is what a flood wants. Close.
		return
	}
	var reply string
	switch s.proto {
	case starttls.SMTP:
		reply = ratelimit.SMTPReply(err, s.hostname)
	case starttls.IMAP:
		reply = ratelimit.IMAPReply(err)
	case starttls.POP3:
		reply = ratelimit.POP3Reply(err)
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte(reply))
}

func (s *service) bridgeOptions(src netip.Addr) bridge.Options {
	opt := bridge.Options{IdleTimeout: s.idle}
	if s.inspect && s.proto == starttls.SMTP && s.limiter != nil {
		lim := s.limiter
		opt.SMTP = &bridge.SMTPInspector{Check: func(c bridge.SMTPCommand) string {
			var err error
			switch c.Verb {
			case "MAIL":
				err = lim.AllowMessage(src)
			case "RCPT":
				err = lim.AllowRecipient(src)
			}
			if err != nil {
				s.metrics.limited(s.name, err)
				return ratelimit.SMTPReply(err, s.hostname)
			}
			return ""
		}}
	}
	return opt
}

func (s *service) finish(sl *sessionLog) {
	s.metrics.session(s.name, sl)
	attrs := []any{
		"listener", s.name, "client", sl.client, "outcome", sl.outcome,
		"sni", sl.sni, "tls", sl.tlsVersion, "cipher", sl.cipher, "backend", sl.member,
		"bytes_in", sl.stats.ClientToServer, "bytes_out", sl.stats.ServerToClient,
		"duration", time.Since(sl.start).Round(time.Millisecond),
	}
	if sl.err != nil {
		attrs = append(attrs, "err", sl.err.Error())
	}
	s.log.Info("session", attrs...)
}

// idleTimeout is the per-protocol idle time of DESIGN.md: IMAP 30 minutes
// (RFC 9051 autologout), SMTP 10 minutes (the DATA timeout of RFC 5321
// §4.5.3.2, the longest of its timers), POP3 10 minutes (RFC 1939).
func idleTimeout(p starttls.Protocol) time.Duration {
	if p == starttls.IMAP {
		return 31 * time.Minute
	}
	return 10 * time.Minute
}

func tlsState(s *starttls.Session) *tls.ConnectionState {
	if !s.TLS {
		return nil
	}
	st := s.State
	return &st
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
