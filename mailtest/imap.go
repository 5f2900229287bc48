package mailtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// newIMAPServer builds the IMAP server over the shared imapmemserver.
// InsecureAuth is the "backend trust" of a Dovecot behind a NetScaler: the
// gateway in front did TLS, so LOGIN over what looks like plain TCP is allowed.
// With cfg nil it offers no STARTTLS.
func (s *System) newIMAPServer(cfg *tls.Config) *imapserver.Server {
	return imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			if c.NetConn().RemoteAddr().Network() != "pipe" {
				s.log.Debug("mailtest: imap session", "client", c.NetConn().RemoteAddr().String())
			}
			return s.mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger:       printfLogger{s.log},
		TLSConfig:    cfg,
		InsecureAuth: true,
	})
}

// printfLogger adapts slog to the Printf/Println loggers of go-imap and
// go-smtp.
type printfLogger struct{ l *slog.Logger }

// Printf logs a formatted message at debug level: these libraries report
// ordinary client disconnects through it.
func (p printfLogger) Printf(format string, v ...any) { p.l.Debug(fmt.Sprintf(format, v...)) }

// Println logs its operands at debug level.
func (p printfLogger) Println(v ...any) { p.l.Debug(fmt.Sprint(v...)) }

// dialInternal returns a connection to the IMAP server that never leaves
// the process. POP3 sessions and Messages read the mailboxes through it, so
// that IMAP, POP3 and SMTP delivery share one store with one set of rules.
func (s *System) dialInternal(ctx context.Context) (net.Conn, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if !s.internalStarted {
		s.internalStarted = true
		s.wg.Add(1)
		go s.serveInternal()
	}
	s.conns.Add(1) // the server end, tracked like an accepted connection
	s.mu.Unlock()
	client, server := net.Pipe()
	if err := s.internal.handOver(ctx, &trackedConn{Conn: server, done: s.conns.Done}); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// serveInternal serves the in-process IMAP listener; named for stack dumps.
func (s *System) serveInternal() {
	defer s.wg.Done()
	if err := s.imap.Serve(s.internal); err != nil {
		s.log.Debug("mailtest: internal imap", "err", err)
	}
}

// pipeListener is a net.Listener whose connections are net.Pipe ends handed
// over by dial.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next dialled connection, or net.ErrClosed after Close.
func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and dial. It is safe to call more than once.
func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns a placeholder address.
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// handOver passes c to Accept. If that fails, it closes c.
func (l *pipeListener) handOver(ctx context.Context, c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.done:
		c.Close()
		return ErrClosed
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "internal" }
