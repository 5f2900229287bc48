package mailtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

const pop3WriteTimeout = time.Minute

// errQuit ends a POP3 session after its final reply.
var errQuit = errors.New("mailtest: pop3 quit")

// servePOP3 accepts POP3 connections on l until it is closed; each runs
// in a goroutine owned by s.
func (s *System) servePOP3(l net.Listener) error { return s.servePOP3With(l, s.opt.TLSConfig) }

// servePOP3Plain is servePOP3 for a listener that offers no STLS.
func (s *System) servePOP3Plain(l net.Listener) error { return s.servePOP3With(l, nil) }

// servePOP3With is servePOP3 offering STLS with cfg, or none if cfg is nil.
func (s *System) servePOP3With(l net.Listener, cfg *tls.Config) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return ErrClosed
		}
		s.pop3Conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.pop3Conn(c, cfg)
	}
}

// pop3Conn runs one POP3 session; named for stack dumps.
func (s *System) pop3Conn(c net.Conn, cfg *tls.Config) {
	defer s.wg.Done()
	p := &pop3Session{s: s, tlsConfig: cfg}
	p.setConn(c)
	err := p.run()
	if p.md != nil {
		p.md.close()
		s.unlockMaildrop(p.user)
	}
	p.conn.Close()
	s.mu.Lock()
	delete(s.pop3Conns, c)
	s.mu.Unlock()
	if err != nil && !errors.Is(err, errQuit) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("mailtest: pop3 session", "client", c.RemoteAddr().String(), "err", err)
	}
}

// pop3Session is the state of one POP3 conversation (RFC 1939 §3):
// AUTHORIZATION while md is nil, TRANSACTION after.
type pop3Session struct {
	s         *System
	tlsConfig *tls.Config // STLS offered with it; nil: not offered
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	user      string // from USER; the canonical name once logged in
	md        *maildrop
	errors    int
}

func (p *pop3Session) setConn(c net.Conn) {
	p.conn = c
	p.br = bufio.NewReaderSize(c, 1024)
	p.bw = bufio.NewWriter(c)
}

func (p *pop3Session) isTLS() bool {
	_, ok := p.conn.(*tls.Conn)
	return ok
}

// run greets the client and serves commands until QUIT or an error.
func (p *pop3Session) run() error {
	p.s.log.Debug("mailtest: pop3 session", "client", p.conn.RemoteAddr().String())
	if err := p.reply("+OK %s POP3 server ready", p.s.hostname()); err != nil {
		return err
	}
	for {
		p.conn.SetReadDeadline(time.Now().Add(p.s.pop3Timeout()))
		line, err := readPOP3Line(p.br)
		if errors.Is(err, errLineTooLong) {
			p.reply("-ERR line too long")
			return err
		}
		if err != nil {
			return err
		}
		cmd, err := parsePOP3Command(line)
		if err != nil {
			err = p.fail("syntax error")
		} else if p.md == nil {
			err = p.authorization(cmd)
		} else {
			err = p.transaction(cmd)
		}
		if err != nil {
			return err
		}
	}
}

// reply writes one status line and flushes it.
func (p *pop3Session) reply(format string, args ...any) error {
	p.conn.SetWriteDeadline(time.Now().Add(pop3WriteTimeout))
	fmt.Fprintf(p.bw, format+"\r\n", args...)
	return p.bw.Flush()
}

// fail writes -ERR and counts the error; too many end the session.
func (p *pop3Session) fail(text string) error {
	p.errors++
	if p.errors >= pop3MaxErrors {
		p.reply("-ERR %s; too many errors, closing connection", text)
		return errQuit
	}
	return p.reply("-ERR %s", text)
}

// authorization handles a command in the AUTHORIZATION state.
func (p *pop3Session) authorization(cmd pop3Command) error {
	switch cmd.name {
	case "CAPA":
		return p.capa()
	case "QUIT":
		p.reply("+OK %s POP3 server signing off", p.s.hostname())
		return errQuit
	case "USER":
		if len(cmd.args) != 1 {
			return p.fail("USER takes one argument")
		}
		p.user = cmd.args[0]
		return p.reply("+OK send PASS")
	case "PASS":
		if p.user == "" || len(cmd.args) != 1 {
			return p.fail("USER first, then PASS with one argument")
		}
		return p.pass(cmd.args[0])
	case "STLS":
		return p.stls()
	case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP":
		return p.fail("command not valid in this state")
	}
	return p.fail("unknown command")
}

// capa answers CAPA (RFC 2449 §5).
func (p *pop3Session) capa() error {
	caps := []string{"USER", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if p.tlsConfig != nil && !p.isTLS() && p.md == nil {
		caps = append(caps, "STLS")
	}
	caps = append(caps, "IMPLEMENTATION mailedge-demo")
	return p.reply("+OK capability list follows\r\n%s\r\n.", strings.Join(caps, "\r\n"))
}

// pass checks the password, locks the maildrop and enters TRANSACTION.
func (p *pop3Session) pass(pass string) error {
	name, ok := p.s.checkPassword(p.user, pass)
	if !ok {
		p.s.log.Info("mailtest: pop3 auth failed", "client", p.conn.RemoteAddr().String(), "user", p.user)
		p.user = ""
		return p.fail("[AUTH] invalid user name or password")
	}
	if !p.s.lockMaildrop(name) {
		p.user = ""
		return p.fail("[IN-USE] maildrop already locked")
	}
	md, err := p.s.openMaildrop(p.s.ctx, name, pass)
	if err != nil {
		p.s.unlockMaildrop(name)
		p.user = ""
		p.s.log.Error("mailtest: pop3 open maildrop", "user", name, "err", err)
		return p.fail("[SYS/TEMP] cannot open maildrop")
	}
	p.user, p.md = name, md
	n, size := md.stat()
	return p.reply("+OK %s has %d messages (%d octets)", name, n, size)
}

// stls upgrades the connection (RFC 2595 §4). Bytes the client pipelined
// after STLS would be plaintext posing as protected commands, so they end
// the session instead (CVE-2011-0411 class).
func (p *pop3Session) stls() error {
	if p.tlsConfig == nil || p.isTLS() {
		return p.fail("STLS not available")
	}
	if err := p.reply("+OK begin TLS negotiation"); err != nil {
		return err
	}
	if p.br.Buffered() > 0 {
		return fmt.Errorf("mailtest: pop3 data after STLS: %w", errQuit)
	}
	tc := tls.Server(p.conn, p.tlsConfig)
	ctx, cancel := context.WithTimeout(p.s.ctx, pop3WriteTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("mailtest: pop3 STLS handshake: %w", err)
	}
	p.setConn(tc)
	p.user = ""
	return nil
}

func (s *System) lockMaildrop(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pop3Locks[name] {
		return false
	}
	s.pop3Locks[name] = true
	return true
}

func (s *System) unlockMaildrop(name string) {
	s.mu.Lock()
	delete(s.pop3Locks, name)
	s.mu.Unlock()
}
