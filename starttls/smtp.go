package starttls

import (
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// The SMTP dialogue before TLS (RFC 5321, RFC 3207).
//
// Answered here: EHLO, HELO, NOOP, RSET, HELP, QUIT and STARTTLS (before or
// after EHLO, as RFC 3207 allows). The mail transaction and authentication
// commands (smtpBackendVerbs) are refused with 530 in Mode Require; in Allow
// and Disallow they end the dialogue and go to the backend in
// Session.Pending, after EHLO or HELO (so that the handover has a name to
// replay; before it they get 503). Anything else is 502, or 500 when it is
// not a command at all.

// defaultSMTPExtensions are safe for any backend a plain session might be
// handed to: RFC 2920, RFC 1870 (no declared limit), RFC 6152, RFC 2034.
var defaultSMTPExtensions = []string{"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"}

// smtpBackendVerbs are the commands that belong to a mail transaction or to
// authentication: refused before TLS in Require mode, handed over otherwise.
var smtpBackendVerbs = map[string]bool{
	"MAIL": true, "RCPT": true, "DATA": true, "BDAT": true, "AUTH": true,
	"VRFY": true, "EXPN": true, "ETRN": true, "ATRN": true, "BURL": true,
}

// smtpExtensions are the EHLO keywords to advertise. In Require mode AUTH
// is never among them: authentication is refused until TLS (RFC 3207 §4.2),
// and advertising it would invite clients to send credentials in clear.
func (s *Server) smtpExtensions() []string {
	if s.SMTPExtensions == nil {
		return defaultSMTPExtensions
	}
	return s.withoutAuth(s.SMTPExtensions, func(e string) bool {
		verb, _, _ := strings.Cut(e, " ")
		return strings.EqualFold(verb, "AUTH")
	})
}

// withoutAuth returns list without the entries isAuth matches when Mode is
// Require, and list itself otherwise.
func (s *Server) withoutAuth(list []string, isAuth func(string) bool) []string {
	if s.Mode != Require {
		return list
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		if !isAuth(e) {
			out = append(out, e)
		}
	}
	return out
}

// parseSMTPCommand splits a command line (without CRLF) into its verb,
// upper-cased, and its argument, the rest after one space with surrounding
// spaces removed. ok is false when the verb is empty or not made of ASCII
// letters and digits (RFC 5321 §4.1.1: a verb is 4 alphabetic characters;
// digits and other lengths are allowed here so that extensions parse).
func parseSMTPCommand(line []byte) (verb, arg string, ok bool) {
	v, rest := mailwire.SplitVerb(line)
	if len(v) == 0 || len(v) > 16 {
		return "", "", false
	}
	for _, c := range v {
		if !isAlnum(c) {
			return "", "", false
		}
	}
	return strings.ToUpper(string(v)), string(rest), true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validHelo reports whether arg can be recorded and replayed as an EHLO/HELO
// argument: one word of visible ASCII or UTF-8 (RFC 6531 allows U-labels).
func validHelo(arg string) bool {
	return arg != "" && len(arg) <= 255 && !strings.ContainsFunc(arg, isSpaceOrCtl)
}

type smtpHandler struct{}

func (smtpHandler) greet(d *dialogue) {
	text := d.s.Greeting
	if text == "" {
		text = "ESMTP ready"
	}
	d.reply("220 ", d.s.hostname(), " ", text)
}

func (smtpHandler) tooLong(*dialogue) string { return "500 5.5.2 Line too long" }

func (smtpHandler) closing(d *dialogue, reason string) string {
	return "421 4.7.0 " + d.s.hostname() + " " + reason + ", closing connection"
}

func (h smtpHandler) handle(d *dialogue, line, _ []byte) action {
	verb, arg, ok := parseSMTPCommand(line)
	if !ok {
		d.bad("500 5.5.2 Syntax error, command unrecognized")
		return actContinue
	}
	switch verb {
	case "EHLO", "HELO":
		h.hello(d, verb, arg)
	case "STARTTLS":
		return h.startTLS(d, arg)
	case "NOOP":
		d.reply("250 2.0.0 OK")
	case "RSET":
		if arg != "" {
			d.bad("501 5.5.4 Syntax: RSET")
			break
		}
		d.reply("250 2.0.0 OK")
	case "HELP":
		if d.s.Mode == Disallow {
			d.reply("214 2.0.0 Commands: EHLO HELO NOOP RSET HELP QUIT")
			break
		}
		d.reply("214 2.0.0 Commands: EHLO HELO STARTTLS NOOP RSET HELP QUIT")
	case "QUIT":
		d.reply("221 2.0.0 ", d.s.hostname(), " closing connection")
		return actQuit
	default:
		return h.other(d, verb)
	}
	return actContinue
}

// hello answers EHLO with the extension list, STARTTLS first unless the
// mode forbids it, or HELO with one line, and records the client's name.
func (smtpHandler) hello(d *dialogue, verb, arg string) {
	if !validHelo(arg) {
		d.bad("501 5.5.4 Syntax: " + verb + " hostname")
		return
	}
	d.helo, d.heloVerb = arg, verb
	host := d.s.hostname()
	if verb == "HELO" {
		d.reply("250 ", host)
		return
	}
	exts := d.s.smtpExtensions()
	if d.s.Mode != Disallow {
		d.reply("250-", host)
		d.appendEHLOLines(append([]string{"STARTTLS"}, exts...))
		return
	}
	if len(exts) == 0 {
		d.reply("250 ", host)
		return
	}
	d.reply("250-", host)
	d.appendEHLOLines(exts)
}

// appendEHLOLines appends the extension lines of a multi-line EHLO reply
// whose first line is already out; lines is not empty.
func (d *dialogue) appendEHLOLines(lines []string) {
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		d.reply("250", sep, l)
	}
}

func (smtpHandler) startTLS(d *dialogue, arg string) action {
	switch {
	case d.s.Mode == Disallow:
		d.bad("502 5.5.1 STARTTLS not available")
	case arg != "":
		d.bad("501 5.5.4 Syntax: STARTTLS takes no parameters")
	default:
		d.reply("220 2.0.0 Ready to start TLS")
		return actStartTLS
	}
	return actContinue
}

// other answers the commands that belong to the backend or to nobody.
func (smtpHandler) other(d *dialogue, verb string) action {
	switch {
	case !smtpBackendVerbs[verb]:
		d.bad("502 5.5.2 Command not recognized")
	case d.s.Mode == Require:
		d.bad("530 5.7.0 Must issue a STARTTLS command first")
	case d.helo == "":
		d.bad("503 5.5.1 Send EHLO or HELO first")
	default:
		return actHandover
	}
	return actContinue
}
