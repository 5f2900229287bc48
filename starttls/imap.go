package starttls

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	tag  string // exactly as sent; "" when invalid
	name string // upper-cased
	args string // everything after the name and one space, verbatim
	size int    // length of the line
	lit  imapLiteral
}

// imapLiteral is the literal announced at the end of a line, if any.
type imapLiteral struct {
	size    int64 // -1 when the line announces no literal
	nonSync bool  // "{n+}": the client sends it without waiting
}

// parseIMAPCommand parses "tag SP name [SP args]" (line without CRLF). The
// literal at the end of the line is parsed whatever the outcome, so that a
// refusal can discard it. The error is errIMAPTag when the tag is not an
// IMAP tag (answer with tag "*"), errIMAPCommand when the name is missing
// or not an atom (answer with the tag).
func parseIMAPCommand(line []byte) (imapRequest, error) {
	cmd := imapRequest{size: len(line), lit: parseIMAPLiteral(line)}
	tag, rest, _ := bytes.Cut(line, []byte{' '})
	if len(tag) == 0 || !allBytes(tag, isTagChar) {
		return cmd, errIMAPTag
	}
	cmd.tag = string(tag)
	name, args, _ := bytes.Cut(rest, []byte{' '})
	if len(name) == 0 || !allBytes(name, isAtomChar) {
		return cmd, errIMAPCommand
	}
	cmd.name = strings.ToUpper(string(name))
	cmd.args = string(args)
	return cmd, nil
}

// parseIMAPLiteral finds a literal announcement "{n}", "{n+}" or "~{n}" at
// the end of line. n must be a decimal of at most 10 digits (number64 is
// not needed before TLS: such a command is refused or handed over).
func parseIMAPLiteral(line []byte) imapLiteral {
	none := imapLiteral{size: -1}
	if len(line) < 3 || line[len(line)-1] != '}' {
		return none
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return none
	}
	digits := line[open+1 : len(line)-1]
	lit := imapLiteral{}
	if d, ok := bytes.CutSuffix(digits, []byte{'+'}); ok {
		digits, lit.nonSync = d, true
	}
	if len(digits) == 0 || len(digits) > 10 || !allBytes(digits, isDigit) {
		return none
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return none
	}
	lit.size = n
	return lit
}

func allBytes(b []byte, ok func(byte) bool) bool {
	for _, c := range b {
		if !ok(c) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isAtomChar is RFC 9051 ATOM-CHAR: a visible ASCII character that is not an
// atom-special.
func isAtomChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !strings.ContainsRune(`(){%*"\]`, rune(c))
}

// isTagChar is an ASTRING-CHAR other than "+" (RFC 9051 tag).
func isTagChar(c byte) bool {
	return c == ']' || c != '+' && isAtomChar(c)
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
		if cmd.lit.size >= 0 {
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
	if cmd.lit.size >= 0 && cmd.lit.nonSync {
		if err := skipIMAPLiterals(d, cmd.lit.size, cmd.size+2); err != nil {
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
		raw, err := readRawLine(d.br, int(budget))
		if err != nil {
			return err
		}
		budget -= int64(len(raw))
		lit := parseIMAPLiteral(trimEOL(raw))
		if lit.size < 0 || !lit.nonSync {
			return nil
		}
		n = lit.size
	}
}
