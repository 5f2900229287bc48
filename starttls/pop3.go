package starttls

import (
	"bytes"
	"strings"
)

// The POP3 dialogue before TLS (RFC 1939, RFC 2595, RFC 2449).
//
// Answered here: CAPA, STLS, NOOP and QUIT. The authentication commands
// USER, PASS, APOP and AUTH get "-ERR [AUTH] ..." in Mode Require and end
// the dialogue otherwise, going to the backend in Session.Pending. The
// transaction commands are not valid before authentication (RFC 1939 §4)
// and get -ERR; anything else is an unknown command.
//
// Why [AUTH]: RFC 3206 defines it for a USER/PASS/APOP/AUTH failure that is
// about the login itself rather than the system ([SYS/...]) or the mailbox
// ([IN-USE]); a client shows the text to the user instead of retrying
// blindly. Dovecot answers plaintext logins on an insecure connection the
// same way. CAPA advertises RESP-CODES and AUTH-RESP-CODE so that the code
// is allowed (RFC 2449 §8, RFC 3206 §6).

// defaultPOP3Capabilities are RFC 1939's optional commands and RFC 2449
// pipelining, offered by every common backend.
var defaultPOP3Capabilities = []string{"TOP", "UIDL", "PIPELINING"}

// pop3AuthCommands are the authorization-state commands that belong to the
// backend; pop3TransactionCommands are valid only after login.
var (
	pop3AuthCommands = map[string]bool{"USER": true, "PASS": true, "APOP": true, "AUTH": true}

	pop3TransactionCommands = map[string]bool{
		"STAT": true, "LIST": true, "RETR": true, "DELE": true, "RSET": true,
		"TOP": true, "UIDL": true, "LAST": true,
	}
)

// pop3Capabilities are the extra CAPA lines; in Require mode without SASL
// and USER (RFC 2595 §4: no login mechanism before STLS).
func (s *Server) pop3Capabilities() []string {
	if s.POP3Capabilities == nil {
		return defaultPOP3Capabilities
	}
	return s.withoutAuth(s.POP3Capabilities, func(c string) bool {
		verb, _, _ := strings.Cut(strings.ToUpper(c), " ")
		return verb == "SASL" || verb == "USER"
	})
}

// parsePOP3Command splits a command line (without CRLF) into its keyword,
// upper-cased, and its arguments, verbatim. ok is false unless the keyword
// is 3 or 4 ASCII letters (RFC 1939 §3, RFC 2449 §4).
func parsePOP3Command(line []byte) (keyword, args string, ok bool) {
	k, rest, _ := bytes.Cut(line, []byte{' '})
	if len(k) < 3 || len(k) > 4 || !allBytes(k, isAlpha) {
		return "", "", false
	}
	return strings.ToUpper(string(k)), string(rest), true
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

type pop3Handler struct{}

func (pop3Handler) greet(d *dialogue) {
	text := d.s.Greeting
	if text == "" {
		text = d.s.hostname() + " POP3 ready"
	}
	d.reply("+OK ", text)
}

func (pop3Handler) tooLong(*dialogue) string { return "-ERR Line too long" }

func (pop3Handler) closing(_ *dialogue, reason string) string { return "-ERR " + reason }

func (h pop3Handler) handle(d *dialogue, line, _ []byte) action {
	kw, args, ok := parsePOP3Command(line)
	if !ok {
		d.bad("-ERR Unknown command")
		return actContinue
	}
	switch kw {
	case "CAPA":
		h.capa(d)
	case "STLS":
		return h.stls(d, args)
	case "NOOP":
		d.reply("+OK")
	case "QUIT":
		d.reply("+OK ", d.s.hostname(), " POP3 closing connection")
		return actQuit
	default:
		return h.other(d, kw)
	}
	return actContinue
}

// capa answers CAPA with a multi-line list (RFC 2449 §5).
func (pop3Handler) capa(d *dialogue) {
	d.reply("+OK Capability list follows")
	if d.s.Mode != Disallow {
		d.reply("STLS")
	}
	if d.s.Mode != Require {
		d.reply("USER")
	}
	d.reply("RESP-CODES")
	d.reply("AUTH-RESP-CODE")
	for _, c := range d.s.pop3Capabilities() {
		d.reply(c)
	}
	d.reply(".")
}

func (pop3Handler) stls(d *dialogue, args string) action {
	switch {
	case d.s.Mode == Disallow:
		d.bad("-ERR STLS not available")
	case args != "":
		d.bad("-ERR Syntax: STLS takes no arguments")
	default:
		d.reply("+OK Begin TLS negotiation")
		return actStartTLS
	}
	return actContinue
}

// other answers the commands that belong to the backend or to nobody.
func (pop3Handler) other(d *dialogue, kw string) action {
	switch {
	case pop3AuthCommands[kw] && d.s.Mode == Require:
		d.bad("-ERR [AUTH] TLS required: issue STLS first")
	case pop3AuthCommands[kw]:
		return actHandover
	case pop3TransactionCommands[kw]:
		d.bad("-ERR Not valid before authentication")
	default:
		d.bad("-ERR Unknown command")
	}
	return actContinue
}
