package starttls

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
)

// action is what a handler tells the dialogue loop to do after a command.
type action int

const (
	actContinue action = iota // replies appended; read the next command
	actStartTLS               // go-ahead appended; handshake next
	actHandover               // plain session: return it with the line pending
	actQuit                   // goodbye appended; flush and end
	actClose                  // closing reply appended; d.err says why
)

// handler is one protocol's half of the dialogue. Replies are appended to
// d.out; the loop decides when to write them.
type handler interface {
	// greet appends the greeting.
	greet(d *dialogue)
	// handle answers one command; line has no CRLF, raw is the line as read.
	handle(d *dialogue, line, raw []byte) action
	// tooLong returns the reply to an over-long line.
	tooLong(d *dialogue) string
	// closing returns the reply sent before closing, with reason as text.
	closing(d *dialogue, reason string) string
}

// dialogue is the state of one pre-TLS conversation.
type dialogue struct {
	ctx      context.Context
	s        *Server
	h        handler
	conn     net.Conn
	br       *bufio.Reader
	out      []byte // replies not yet written
	maxLine  int
	maxErrs  int
	maxCmds  int
	errs     int
	cmds     int
	err      error // why the loop must stop after actClose
	helo     string
	heloVerb string
}

func newDialogue(ctx context.Context, s *Server, conn net.Conn) *dialogue {
	return &dialogue{
		ctx:     ctx,
		s:       s,
		h:       s.handler(),
		conn:    conn,
		br:      bufpool.Get(conn, bufpool.Small),
		out:     make([]byte, 0, 512),
		maxLine: s.maxLineLength(),
		maxErrs: limit(s.MaxErrors, defaultMaxErrors),
		maxCmds: limit(s.MaxCommands, defaultMaxCommands),
	}
}

// run greets the client and answers commands until the dialogue ends.
func (d *dialogue) run() (*Session, error) {
	d.h.greet(d)
	for {
		if err := d.flushIfIdle(); err != nil {
			return nil, err
		}
		if d.cmds == 0 && mailwire.StartsWithTLSRecord(d.br) {
			return nil, d.foreign("a TLS ClientHello before STARTTLS")
		}
		raw, err := mailwire.ReadLine(d.br, d.maxLine)
		if err != nil {
			if err := d.readFailed(err); err != nil {
				return nil, err
			}
			continue
		}
		if mailwire.IsHTTPRequest(raw) {
			return nil, d.foreign("an HTTP request")
		}
		switch d.command(raw) {
		case actStartTLS:
			return d.startTLS()
		case actHandover:
			return d.handover(raw)
		case actQuit:
			return nil, d.finish(ErrClientQuit)
		case actClose:
			return nil, d.finish(d.err)
		}
	}
}

// foreign ends a dialogue in which the client spoke another protocol (what
// it is): at once, with no reply, not even those still owed to commands
// pipelined before, so that nothing the client sent comes back.
func (d *dialogue) foreign(what string) error {
	d.out = d.out[:0]
	return fmt.Errorf("%w: %s", ErrForeignProtocol, what)
}

// command counts and dispatches one command line.
func (d *dialogue) command(raw []byte) action {
	if !d.count() {
		return actClose
	}
	act := d.h.handle(d, mailwire.TrimEOL(raw), raw)
	if d.err != nil {
		return actClose
	}
	return act
}

// count counts one command, or appends the closing reply and reports false
// when it is one more than MaxCommands.
func (d *dialogue) count() bool {
	d.cmds++
	if d.maxCmds > 0 && d.cmds > d.maxCmds {
		d.closeWith("Too many commands", fmt.Errorf("%w: more than %d commands before TLS", ErrTooManyErrors, d.maxCmds))
		return false
	}
	return true
}

// readFailed handles a failed line read. An over-long line after which the
// reader resynchronised is a bad command; any other error ends the dialogue.
func (d *dialogue) readFailed(err error) error {
	switch {
	case mailwire.Resynced(err):
		if d.count() {
			d.bad(d.h.tooLong(d))
		}
		if d.err != nil {
			return d.finish(d.err)
		}
		return nil
	case errors.Is(err, ErrLineTooLong):
		d.closeWith("Line too long", nil)
		return d.finish(err)
	}
	return fmt.Errorf("starttls: reading command: %w", err)
}

// reply appends one reply (without its CRLF) to the output.
func (d *dialogue) reply(parts ...string) {
	for _, p := range parts {
		d.out = append(d.out, p...)
	}
	d.out = append(d.out, "\r\n"...)
}

// bad appends the reply to a bad command, or, when it is the MaxErrors-th,
// the closing reply in its place, and marks the dialogue for closing.
func (d *dialogue) bad(reply string) {
	d.errs++
	if d.maxErrs > 0 && d.errs >= d.maxErrs {
		d.closeWith("Too many errors", fmt.Errorf("%w: %d bad commands", ErrTooManyErrors, d.errs))
		return
	}
	d.reply(reply)
}

// closeWith appends the protocol's closing reply and records why.
func (d *dialogue) closeWith(reason string, err error) {
	d.reply(d.h.closing(d, reason))
	d.err = err
}

// flushIfIdle writes the pending replies unless a whole command is already
// buffered: a pipelined group is answered with one write, in order, while
// a client waiting for its answer is never kept waiting.
func (d *dialogue) flushIfIdle() error {
	if len(d.out) == 0 {
		return nil
	}
	if n := d.br.Buffered(); n > 0 {
		buf, _ := d.br.Peek(n)
		if bytes.IndexByte(buf, '\n') >= 0 {
			return nil
		}
	}
	return d.flush()
}

func (d *dialogue) flush() error {
	if len(d.out) == 0 {
		return nil
	}
	_, err := d.conn.Write(d.out)
	d.out = d.out[:0]
	if err != nil {
		return fmt.Errorf("starttls: writing reply: %w", err)
	}
	return nil
}

// finish writes what is pending and returns err, the reason to stop.
func (d *dialogue) finish(err error) error {
	if werr := d.flush(); werr != nil {
		return fmt.Errorf("%w; %w", err, werr)
	}
	return err
}

// startTLS checks that the go-ahead was the last thing the client sent,
// writes it, and runs the handshake on the raw conn.
func (d *dialogue) startTLS() (*Session, error) {
	// Bytes after the STARTTLS line were sent before the client could have
	// seen the go-ahead: a command injection (CVE-2011-0411). They are
	// never answered; bytes arriving later reach the TLS layer and fail the
	// handshake, because the bufio.Reader is dropped here, empty.
	if n := d.br.Buffered(); n > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the STARTTLS command", ErrInjection, n)
	}
	if err := d.flush(); err != nil {
		return nil, err
	}
	if err := d.conn.SetDeadline(time.Now().Add(d.s.handshakeTimeout())); err != nil {
		return nil, fmt.Errorf("starttls: setting deadline: %w", err)
	}
	// Checked after SetDeadline: a cancellation from now on expires the
	// deadline we just set, one before it is seen here.
	if err := d.ctx.Err(); err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	sess, err := d.s.handshake(d.conn)
	if err != nil {
		return nil, err
	}
	sess.Helo, sess.HeloVerb = d.helo, d.heloVerb
	return sess, nil
}

// handover ends the dialogue for a plain session: raw, the command that
// belongs to the backend, and everything buffered after it become Pending.
func (d *dialogue) handover(raw []byte) (*Session, error) {
	if err := d.flush(); err != nil {
		return nil, err
	}
	buf, _ := d.br.Peek(d.br.Buffered())
	return &Session{
		Protocol: d.s.Protocol,
		Conn:     d.conn,
		Helo:     d.helo,
		HeloVerb: d.heloVerb,
		Pending:  append(raw, buf...),
	}, nil
}
