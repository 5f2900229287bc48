package auth

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// The IMAP login dialogue (RFC 9051 §6.1, §6.2; RFC 3501; RFC 4959
// SASL-IR; RFC 7888 LITERAL+; RFC 2971 ID; RFC 5530 response codes).
//
// Answered here: CAPABILITY, NOOP, ID, LOGOUT, LOGIN and AUTHENTICATE;
// STARTTLS and everything else get a tagged BAD. Arguments are atoms,
// quoted strings or literals: a synchronising literal is asked for with a
// continuation request, a non-synchronising one is read as it comes, each
// at most 8192 octets. After a login the backend's capabilities go to the
// client in the tagged OK, so it sees what a direct login would show.

var (
	errIMAPSyntax  = errors.New("syntax error")
	errLiteralSize = errors.New("literal too large")
)

type imapHandler struct{}

// capabilities is the list before login.
func (imapHandler) capabilities(d *dialogue) string {
	var b strings.Builder
	b.WriteString("IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE")
	plain := d.sess.TLS || d.s.AllowPlaintext
	if !plain {
		b.WriteString(" LOGINDISABLED")
	}
	for _, m := range d.s.mechanisms(d.cert != nil) {
		if !plain && m != External {
			continue
		}
		b.WriteString(" AUTH=")
		b.WriteString(m)
	}
	return b.String()
}

func (h imapHandler) greet(d *dialogue) {
	text := d.ls.Greeting
	if text == "" {
		text = d.hostname() + " ready"
	}
	d.reply("* OK [CAPABILITY ", h.capabilities(d), "] ", sanitize(text))
}

func (imapHandler) closing(_ *dialogue, reason string) string { return "* BYE " + reason }

func (imapHandler) tooLong(*dialogue) string { return "* BAD Line too long" }

func (h imapHandler) handle(d *dialogue, line []byte) bool {
	tagb, nameb, end := mailwire.SplitCommand(line)
	if len(tagb) == 0 || !allBytes(tagb, mailwire.IsTagChar) {
		h.skipLiterals(d, line)
		d.bad("* BAD Invalid tag")
		return false
	}
	tag := string(tagb)
	if len(nameb) == 0 || !allBytes(nameb, mailwire.IsAtomChar) {
		h.skipLiterals(d, line)
		d.bad(tag + " BAD Invalid command")
		return false
	}
	rest := line[end:]
	switch name := strings.ToUpper(string(nameb)); name {
	case "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS":
		if len(rest) != 0 {
			h.skipLiterals(d, line)
			d.bad(tag + " BAD Unexpected arguments")
			return false
		}
		switch name {
		case "CAPABILITY":
			d.reply("* CAPABILITY ", h.capabilities(d))
			d.reply(tag, " OK Capability completed")
		case "NOOP":
			d.reply(tag, " OK NOOP completed")
		case "LOGOUT":
			d.quit("* BYE Logging out", tag+" OK Logout completed")
		case "STARTTLS":
			d.bad(tag + " BAD STARTTLS not available now")
		}
		return false
	case "ID", "LOGIN", "AUTHENTICATE":
		args, err := h.args(d, line, rest)
		switch {
		case errors.Is(err, errLiteralSize):
			d.bad(tag + " BAD Literal too large")
			return false
		case err != nil && d.err == nil:
			d.bad(tag + " BAD Invalid arguments")
			return false
		case err != nil:
			return false
		}
		switch name {
		case "ID":
			d.reply("* ID NIL")
			d.reply(tag, " OK ID completed")
			return false
		case "LOGIN":
			if len(args) != 2 || args[0].list || args[1].list || args[0].nil || args[1].nil {
				d.bad(tag + " BAD Invalid arguments")
				return false
			}
			req := d.baseRequest(Plain)
			req.User, req.Password = string(args[0].s), Secret(args[1].s)
			if strings.ContainsAny(req.User, "\x00\r\n") {
				d.bad(tag + " BAD Invalid arguments")
				return false
			}
			return h.answer(d, tag, d.try(req))
		}
		return h.authenticate(d, tag, args)
	}
	h.skipLiterals(d, line)
	d.bad(tag + " BAD Command not valid before login")
	return false
}

// authenticate runs AUTHENTICATE mech [initial-response].
func (h imapHandler) authenticate(d *dialogue, tag string, args []imapArg) bool {
	if len(args) < 1 || len(args) > 2 || args[0].quoted || args[0].list {
		d.bad(tag + " BAD Invalid arguments")
		return false
	}
	mech := strings.ToUpper(string(args[0].s))
	if !d.s.offers(mech, d.cert != nil) {
		d.reply(tag, " NO Unsupported authentication mechanism")
		return false
	}
	var ir []byte
	if len(args) == 2 {
		ir = args[1].s
	}
	req, err := d.saslExchange(mech, ir,
		func(c []byte) { d.reply("+ ", encodeSASL(c)) },
		d.readLine)
	switch {
	case errors.Is(err, errSASLAbort):
		d.reply(tag, " BAD Authentication aborted")
		return false
	case errors.Is(err, errSASLBase64), errors.Is(err, errSASLBad), errors.Is(err, errSASLTooLong):
		d.bad(tag + " BAD Invalid SASL response")
		return false
	case err != nil:
		d.err = err
		return false
	}
	return h.answer(d, tag, d.try(req))
}

// answer writes the tagged result of a login.
func (imapHandler) answer(d *dialogue, tag string, v verdict) bool {
	switch {
	case v.ok:
		text := sanitize(v.up.Text)
		if text == "" {
			text = "Logged in"
		}
		if v.up.Capabilities != nil {
			d.reply(tag, " OK [CAPABILITY ", strings.Join(v.up.Capabilities, " "), "] ", text)
		} else {
			d.reply(tag, " OK ", text)
		}
		return true
	case v.privacy:
		d.reply(tag, " NO [PRIVACYREQUIRED] TLS is required to log in")
	case v.temporary:
		d.reply(tag, " NO [UNAVAILABLE] ", orText(v.message, "Temporary authentication failure, try again later"))
	default:
		d.reply(tag, " NO [AUTHENTICATIONFAILED] ", orText(v.message, "Authentication failed."))
	}
	if d.err != nil && errors.Is(d.err, ErrTooManyFailures) {
		d.reply("* BYE Too many failed logins")
	}
	return false
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// imapArg is one argument of a command: an atom, a quoted string, a
// literal's data, NIL, or a parenthesised list (whose content is skipped).
type imapArg struct {
	s      []byte
	quoted bool // quoted string or literal: a string, never NIL
	nil    bool
	list   bool
}

// args parses the arguments of a command whose first line is line and whose
// arguments start at rest, reading any literals they carry.
func (imapHandler) args(d *dialogue, line, rest []byte) ([]imapArg, error) {
	var args []imapArg
	depth := 0
	for {
		lit, hasLit := mailwire.ParseLiteral(line)
		body := rest
		if hasLit {
			i := bytes.LastIndexByte(body, '{')
			if i < 0 {
				return nil, errIMAPSyntax
			}
			if lit.Binary {
				return nil, errIMAPSyntax
			}
			body = body[:i]
		}
		var err error
		if args, depth, err = tokens(body, args, depth); err != nil {
			if hasLit {
				skipLiteral(d, lit)
			}
			return nil, err
		}
		if !hasLit {
			break
		}
		if lit.Size > maxSecretLine {
			if lit.NonSync {
				d.reply("* BYE Literal too large")
				d.err = errLiteralSize
			}
			return nil, errLiteralSize
		}
		if !lit.NonSync {
			d.reply("+ Ready for literal data")
			if err := d.flush(); err != nil {
				d.err = err
				return nil, err
			}
		}
		data := make([]byte, lit.Size)
		if _, err := io.ReadFull(d.br, data); err != nil {
			d.err = err
			return nil, err
		}
		if depth == 0 {
			args = append(args, imapArg{s: data, quoted: true})
		}
		raw, err := mailwire.ReadLine(d.br, d.maxLine)
		if err != nil {
			d.err = err
			return nil, err
		}
		line = mailwire.TrimEOL(raw)
		rest = line
	}
	if depth != 0 {
		return nil, errIMAPSyntax
	}
	return args, nil
}

// tokens appends the arguments in b to args: atoms, quoted strings and
// parenthesised lists, separated by spaces (leniently: any number). depth
// is the list nesting carried over from before a literal; the content of a
// list is skipped.
func tokens(b []byte, args []imapArg, depth int) ([]imapArg, int, error) {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == ' ':
			i++
		case c == '(':
			depth++
			if depth == 1 {
				args = append(args, imapArg{list: true})
			}
			if depth > 8 {
				return nil, 0, errIMAPSyntax
			}
			i++
		case c == ')':
			if depth == 0 {
				return nil, 0, errIMAPSyntax
			}
			depth--
			i++
		case c == '"':
			s, n, err := quoted(b[i:])
			if err != nil {
				return nil, 0, err
			}
			if depth == 0 {
				args = append(args, imapArg{s: s, quoted: true})
			}
			i += n
		default:
			j := i
			for j < len(b) && (mailwire.IsAtomChar(b[j]) || b[j] == ']') {
				j++
			}
			if j == i {
				return nil, 0, errIMAPSyntax
			}
			if depth == 0 {
				a := imapArg{s: b[i:j]}
				a.nil = strings.EqualFold(string(a.s), "NIL")
				args = append(args, a)
			}
			i = j
		}
	}
	return args, depth, nil
}

// quoted reads a quoted string at the start of b (RFC 9051 quoted) and
// returns its value and the length consumed.
func quoted(b []byte) ([]byte, int, error) {
	var out []byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			return out, i + 1, nil
		case '\\':
			i++
			if i == len(b) || (b[i] != '\\' && b[i] != '"') {
				return nil, 0, errIMAPSyntax
			}
			out = append(out, b[i])
		case '\r', '\n', 0:
			return nil, 0, errIMAPSyntax
		default:
			out = append(out, c)
		}
	}
	return nil, 0, errIMAPSyntax
}

// skipLiteral reads and drops the data of a non-synchronising literal that
// is refused; a synchronising one is not sent once the refusal is read.
func skipLiteral(d *dialogue, lit mailwire.Literal) {
	if !lit.NonSync {
		return
	}
	if lit.Size > int64(d.maxLine) {
		d.reply("* BYE Literal too large")
		d.err = errLiteralSize
		return
	}
	if _, err := io.CopyN(io.Discard, d.br, lit.Size); err != nil {
		d.err = err
	}
}

// skipLiterals drops the non-synchronising literals of a refused command
// and the lines they continue into, so that their bytes are not read as
// commands.
func (imapHandler) skipLiterals(d *dialogue, line []byte) {
	for {
		lit, ok := mailwire.ParseLiteral(line)
		if !ok || !lit.NonSync {
			return
		}
		skipLiteral(d, lit)
		if d.err != nil {
			return
		}
		raw, err := mailwire.ReadLine(d.br, d.maxLine)
		if err != nil {
			d.err = err
			return
		}
		line = mailwire.TrimEOL(raw)
	}
}

func allBytes(b []byte, f func(byte) bool) bool {
	for _, c := range b {
		if !f(c) {
			return false
		}
	}
	return true
}
