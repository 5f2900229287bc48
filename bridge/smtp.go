package bridge

import (
	"bytes"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// defaultMaxLine is the command-line limit when SMTPInspector.MaxLineLength
// is zero: RFC 5321 §4.5.3.1.4 allows 512 octets, extensions (SMTPUTF8,
// AUTH initial responses) need more.
const defaultMaxLine = 4096

// Local replies the inspector writes itself.
const (
	replyNoTLS       = "454 4.7.0 TLS not available\r\n"
	replyLineTooLong = "500 5.5.2 Line too long\r\n"
)

// SMTPCommand is one command line the client sent, as seen by
// SMTPInspector.Check.
type SMTPCommand struct {
	// Verb is the command word in upper case: "MAIL", "RCPT", "DATA",
	// "BDAT", "EHLO", ... It is "" for an empty line.
	Verb string
	// Arg is, for MAIL and RCPT, the path inside the angle brackets ("" for
	// the null reverse-path "<>"); for other verbs, the rest of the line
	// after the verb with spaces trimmed.
	Arg string
	// Line is the raw line including its line ending. It is a copy the
	// callee may keep.
	Line []byte
}

// SMTPInspector watches the client-to-server direction of an SMTP session
// (RFC 5321, with PIPELINING from RFC 2920 and CHUNKING from RFC 3030) and
// can answer commands itself. It is configuration only: one inspector may
// be shared by any number of concurrent Joins, and each Join keeps its own
// parsing state and returns its counters in Stats.SMTP.
//
// The inspector sees only command lines. After DATA is answered with 354,
// the message content up to <CRLF>.<CRLF> is forwarded untouched (bare LF
// never ends it, dot-stuffing is left alone); after a BDAT command the
// chunk is forwarded by its length; SASL responses after a 334 reply are
// forwarded unchecked. Because a server may refuse DATA and AUTH, the
// inspector forwards nothing after those two commands until the server has
// answered them; RFC 2920 requires clients to wait there anyway.
//
// Replies keep their order under pipelining: a reply the inspector gives
// itself is written to the client exactly after the server's replies to
// the commands the client sent before it.
//
// STARTTLS is answered "454 4.7.0 TLS not available" and never forwarded:
// the session is past its TLS handover, and a backend that started TLS
// would be speaking to the proxy, not to the client. A command line longer
// than MaxLineLength is discarded up to its line feed and answered
// "500 5.5.2 Line too long", so an oversize line can never slip past
// Check.
type SMTPInspector struct {
	// Check, if non-nil, is called for every command line before it is
	// forwarded (not for STARTTLS, oversize lines, message content or SASL
	// responses). It returns "" to forward the command, or a reply such as
	// "452 4.7.1 Error: too many recipients from 192.0.2.1" to send to the
	// client instead; a missing CRLF is added, and a multi-line reply must
	// use CRLF between its lines. A refused BDAT command's chunk is
	// discarded. Check runs on the client-to-server copier goroutine.
	Check func(SMTPCommand) string
	// Reply, if non-nil, is called with each forwarded command and the
	// server's reply code (0 if the server closed before answering), on
	// the server-to-client copier goroutine. End of data is reported with
	// Verb "." (after DATA) or as the BDAT ... LAST command.
	Reply func(cmd SMTPCommand, code int)
	// MaxLineLength bounds a command line, line ending included. If zero,
	// 4096 octets.
	MaxLineLength int
	// AwaitGreeting says the server's greeting has not been relayed yet
	// (Join starts right after connecting, with no handover), so the
	// client is owed it before any reply of the inspector's own. If false,
	// the greeting was dealt with before Join.
	AwaitGreeting bool
	// Timeouts, if non-nil, give the session an idle timeout per phase of
	// the dialogue (RFC 5321 §4.5.3.2: 5 minutes for commands, 2 for the
	// reply to DATA, 3 between data blocks, 10 for the reply to the end of
	// data) in place of Options.IdleTimeout. A phase that shortens the
	// timeout takes effect at the session's next timeout check, at most
	// the longer timeout later. If nil, Options.IdleTimeout applies.
	Timeouts *SMTPTimeouts
}

func (ins *SMTPInspector) maxLine() int {
	if ins.MaxLineLength > 0 {
		return ins.MaxLineLength
	}
	return defaultMaxLine
}

// SMTPStats are the counters of one inspected session.
type SMTPStats struct {
	// Commands is the number of command lines seen, refused ones included.
	Commands int64
	// Messages is the number of messages whose end (<CRLF>.<CRLF> after
	// DATA, or BDAT ... LAST) the server accepted with a 2xx reply.
	Messages int64
	// Recipients is the number of RCPT commands the server accepted.
	Recipients int64
	// Refused is the number of commands answered by the inspector itself.
	Refused int64
	// RecipientsRefused is the number of RCPT commands the server refused
	// (4xx or 5xx: a relay denied, an unknown user, a greylisting).
	RecipientsRefused int64
}

// parseCommand splits a command line into verb and argument. It never
// fails: a line that is not a command yields a verb the server will reject.
func parseCommand(line []byte) SMTPCommand {
	v, a := mailwire.SplitVerb(bytes.TrimRight(line, "\r\n")) // every CR before the LF, as Postfix drops them
	cmd := SMTPCommand{Line: bytes.Clone(line), Verb: strings.ToUpper(string(v))}
	rest := string(a)
	switch cmd.Verb {
	case "MAIL":
		cmd.Arg = pathArg(rest, "FROM:")
	case "RCPT":
		cmd.Arg = pathArg(rest, "TO:")
	default:
		cmd.Arg = rest
	}
	return cmd
}

// pathArg returns the path of "FROM:<path> params" (or "TO:"): what is
// inside the angle brackets, honouring quoted local parts, or the first
// word when the client left the brackets out.
func pathArg(rest, prefix string) string {
	if len(rest) < len(prefix) || !strings.EqualFold(rest[:len(prefix)], prefix) {
		return ""
	}
	rest = strings.TrimLeft(rest[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		word, _, _ := strings.Cut(rest, " ")
		return word
	}
	quoted := false
	for i := 1; i < len(rest); i++ {
		switch rest[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case '>':
			if !quoted {
				return rest[1:i]
			}
		}
	}
	return rest[1:]
}

// parseBDAT returns the chunk size and LAST flag of a BDAT argument, and
// false if the syntax is wrong (the server then reads no chunk either).
func parseBDAT(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f[0]) > 18 {
		return 0, false, false
	}
	for _, c := range []byte(f[0]) {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		size = size*10 + int64(c-'0')
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	return size, last, true
}

// localReply normalises a Check answer into CRLF-terminated bytes.
func localReply(r string) []byte {
	if !strings.HasSuffix(r, "\n") {
		r += "\r\n"
	}
	return []byte(r)
}
