package starttls

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// The IMAP dialogue before TLS (RFC 9051, RFC 3501, RFC 2595).
//
// Answered here: CAPABILITY, NOOP, LOGOUT and STARTTLS, tags echoed exactly.
// In Mode Require LOGIN and AUTHENTICATE get NO [PRIVACYREQUIRED] and every
// other command BAD; in Allow and Disallow any other well-formed command
// ends the dialogue and goes to the backend in Session.Pending.
//
// The greeting advertises IMAP4rev1, not IMAP4rev2: the pre-TLS capability
// list is ours, and only a plain session (Allow, Disallow) keeps acting on
// it, against a backend that may well be rev1-only; a rev2 client re-reads
// the capabilities after STARTTLS or LOGIN anyway and learns the backend's.
//
// Literals before TLS. A command carrying a literal ("{n}", "{n+}", or
// "~{n}" from RFC 3516) is refused unless it is handed over. For a
// synchronising literal the tagged BAD goes out at once and the client must
// not send the literal (RFC 9051 §4.3). A non-synchronising literal
// (RFC 7888) is already on its way: its bytes, and the rest of the command
// after it, are read and discarded, provided the whole command fits in
// MaxLineLength; a larger one gets "* BYE" and Serve fails with
// ErrLineTooLong, since its bytes would otherwise be read as commands.

// defaultIMAPCapabilities are extensions every common backend (Dovecot,
// Cyrus, Exchange, go-imap) offers, all part of IMAP4rev2's base.
var defaultIMAPCapabilities = []string{"IDLE", "NAMESPACE", "UIDPLUS", "UNSELECT"}

var (
	errIMAPTag     = errors.New("invalid tag")
	errIMAPCommand = errors.New("invalid command name")
)

// imapRequest is a parsed IMAP command line.
type imapRequest struct {
	tag    string // exactly as sent; "" when invalid
	name   string // upper-cased
	args   string // everything after the name and one space, verbatim
	size   int    // length of the line
	lit    mailwire.Literal
	hasLit bool // the line announces lit
}

// parseIMAPCommand parses "tag SP name [SP args]" (line without CRLF). The
// literal at the end of the line is parsed whatever the outcome, so that a
// refusal can discard it. The error is errIMAPTag when the tag is not an
// IMAP tag (answer with tag "*"), errIMAPCommand when the name is missing
// or not an atom (answer with the tag).
func parseIMAPCommand(line []byte) (imapRequest, error) {
	cmd := imapRequest{size: len(line)}
	cmd.lit, cmd.hasLit = mailwire.ParseLiteral(line)
	tag, name, end := mailwire.SplitCommand(line)
	if len(tag) == 0 || !allBytes(tag, mailwire.IsTagChar) {
		return cmd, errIMAPTag
	}
	cmd.tag = string(tag)
	if len(name) == 0 || !allBytes(name, mailwire.IsAtomChar) {
		return cmd, errIMAPCommand
	}
	cmd.name = strings.ToUpper(string(name))
	if end < len(line) {
		cmd.args = string(line[end+1:])
	}
	return cmd, nil
}

func allBytes(b []byte, ok func(byte) bool) bool {
	for _, c := range b {
		if !ok(c) {
			return false
		}
	}
	return true
}

// imapCapabilities are the extra capability atoms to advertise; in Require
// mode without AUTH= and SASL-IR (RFC 9051 §6.2.1: LOGINDISABLED is
// advertised and no mechanism is usable before TLS).
func (s *Server) imapCapabilities() []string {
	if s.IMAPCapabilities == nil {
		return defaultIMAPCapabilities
	}
	return s.withoutAuth(s.IMAPCapabilities, func(c string) bool {
		u := strings.ToUpper(c)
		return strings.HasPrefix(u, "AUTH=") || u == "SASL-IR"
	})
}

// imapCapList is the capability list for the greeting and CAPABILITY.
func imapCapList(s *Server) string {
	caps := []string{"IMAP4rev1"}
	if s.Mode != Disallow {
		caps = append(caps, "STARTTLS")
	}
	if s.Mode == Require {
		caps = append(caps, "LOGINDISABLED")
	}
	return strings.Join(append(caps, s.imapCapabilities()...), " ")
}

type imapHandler struct{}

func (imapHandler) greet(d *dialogue) {
	text := d.s.Greeting
	if text == "" {
		text = d.s.hostname() + " ready"
	}
	d.reply("* OK [CAPABILITY ", imapCapList(d.s), "] ", text)
}

func (imapHandler) tooLong(*dialogue) string { return "* BAD Line too long" }

func (imapHandler) closing(_ *dialogue, reason string) string { return "* BYE " + reason }

func (h imapHandler) handle(d *dialogue, line, _ []byte) action {
	cmd, err := parseIMAPCommand(line)
	switch {
	case errors.Is(err, errIMAPTag):
		h.refuse(d, cmd, "* BAD Invalid tag")
		return actContinue
	case err != nil:
		h.refuse(d, cmd, cmd.tag+" BAD Invalid command")
		return actContinue
	}
	switch cmd.name {
	case "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS":
		if cmd.args != "" {
			h.refuse(d, cmd, cmd.tag+" BAD "+cmd.name+" takes no arguments")
			return actContinue
		}
		return h.local(d, cmd)
	case "ID":
		// RFC 2971 allows ID in any state, and clients send it before
		// STARTTLS; it is answered here so that, in Allow mode, it does
		// not hand a client that may still upgrade to the backend.
		if cmd.hasLit {
			h.refuse(d, cmd, cmd.tag+" BAD No literals in ID before TLS")
			return actContinue
		}
		d.reply("* ID NIL")
		d.reply(cmd.tag, " OK ID completed")
		return actContinue
	}
	switch {
	case d.s.Mode != Require:
		return actHandover
	case cmd.name == "LOGIN" || cmd.name == "AUTHENTICATE":
		h.refuse(d, cmd, cmd.tag+" NO [PRIVACYREQUIRED] TLS required: issue STARTTLS first")
	default:
		h.refuse(d, cmd, cmd.tag+" BAD Command not allowed before STARTTLS")
	}
	return actContinue
}

// local answers the commands of the pre-TLS dialogue.
func (imapHandler) local(d *dialogue, cmd imapRequest) action {
	switch cmd.name {
	case "CAPABILITY":
		d.reply("* CAPABILITY ", imapCapList(d.s))
		d.reply(cmd.tag, " OK CAPABILITY completed")
	case "NOOP":
		d.reply(cmd.tag, " OK NOOP completed")
	case "LOGOUT":
		d.reply("* BYE ", d.s.hostname(), " logging out")
		d.reply(cmd.tag, " OK LOGOUT completed")
		return actQuit
	case "STARTTLS":
		if d.s.Mode == Disallow {
			d.bad(cmd.tag + " BAD STARTTLS not available")
			break
		}
		d.reply(cmd.tag, " OK Begin TLS negotiation now")
		return actStartTLS
	}
	return actContinue
}

// refuse answers a bad or refused command with reply, after discarding a
// non-synchronising literal that is on its way (see the rule above).
func (imapHandler) refuse(d *dialogue, cmd imapRequest, reply string) {
	if cmd.hasLit && cmd.lit.NonSync {
		if err := skipIMAPLiterals(d, cmd.lit.Size, cmd.size+2); err != nil {
			d.closeWith("Command too long", err)
			return
		}
	}
	d.bad(reply)
}

// skipIMAPLiterals discards a non-synchronising literal of n bytes and the
// rest of its command, which may announce further literals, as long as the
// whole command stays within the line limit; used is what the first line
// already took.
func skipIMAPLiterals(d *dialogue, n int64, used int) error {
	budget := int64(d.maxLine - used)
	for {
		if n+2 > budget {
			return fmt.Errorf("%w: IMAP literal of %d bytes before TLS", ErrLineTooLong, n)
		}
		if _, err := d.br.Discard(int(n)); err != nil {
			return fmt.Errorf("starttls: discarding literal: %w", err)
		}
		budget -= n
		raw, err := mailwire.ReadLine(d.br, int(budget))
		if err != nil {
			return err
		}
		budget -= int64(len(raw))
		lit, ok := mailwire.ParseLiteral(raw)
		if !ok || !lit.NonSync {
			return nil
		}
		n = lit.Size
	}
}
