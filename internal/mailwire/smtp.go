package mailwire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrMalformed reports a reply or response that breaks the grammar. The
// packages that read from peers wrap it in their own protocol error.
var ErrMalformed = errors.New("malformed reply")

// ReplyHead reads the first bytes of an SMTP reply line (RFC 5321 §4.2):
// head holds up to its first four bytes. code is the three-digit code, or
// -1 if the line does not start with three digits; more reports a
// continuation line ("250-"), after which the reply goes on. Any other line
// ends the reply: that is how a streaming reader finds reply ends, and
// ParseReplyLine agrees with it on every well-formed line.
func ReplyHead(head []byte) (code int, more bool) {
	if len(head) < 3 {
		return -1, false
	}
	for _, c := range head[:3] {
		if c < '0' || c > '9' {
			return -1, false
		}
		code = code*10 + int(c-'0')
	}
	return code, len(head) > 3 && head[3] == '-'
}

// ParseReplyLine splits one SMTP reply line, with or without its line
// ending, into its code (200 to 599), whether more lines follow ("250-")
// and its text. A bare "250" is a last line with empty text, as RFC 5321
// allows. A malformed line gives an error wrapping ErrMalformed.
func ParseReplyLine(line []byte) (code int, more bool, text []byte, err error) {
	line = TrimEOL(line)
	code, more = ReplyHead(line)
	switch {
	case code < 0:
		return 0, false, nil, fmt.Errorf("%w: reply line %q has no code", ErrMalformed, clip(line))
	case code < 200 || code > 599:
		return 0, false, nil, fmt.Errorf("%w: reply code %d out of range", ErrMalformed, code)
	case len(line) == 3:
		return code, false, nil, nil
	case line[3] != ' ' && line[3] != '-':
		return 0, false, nil, fmt.Errorf("%w: bad separator in reply line %q", ErrMalformed, clip(line))
	}
	return code, more, line[4:], nil
}

// Reply is one SMTP reply: a code shared by all its lines, the text of each
// line, and the reply exactly as read.
type Reply struct {
	// Code is the three-digit reply code.
	Code int
	// Lines holds the text after "ddd-" or "ddd " of each line.
	Lines []string
	// Raw is the reply as read, every line with its terminator.
	Raw []byte
}

// String joins the lines, for error messages.
func (r Reply) String() string {
	var b bytes.Buffer
	b.WriteString(strconv.Itoa(r.Code))
	for i, l := range r.Lines {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteString(" / ")
		}
		b.WriteString(l)
	}
	return b.String()
}

// ReadReply reads one possibly multi-line reply with next, which returns
// one line with its terminator per call (ReadLine, usually). All lines must
// carry the same code, and a reply of more than maxLines lines is
// malformed. End of input after the first line is io.ErrUnexpectedEOF.
func ReadReply(next func() ([]byte, error), maxLines int) (Reply, error) {
	var r Reply
	for n := 0; ; n++ {
		if n == maxLines {
			return r, fmt.Errorf("%w: reply longer than %d lines", ErrMalformed, maxLines)
		}
		raw, err := next()
		if err != nil {
			return r, midReply(n, err)
		}
		r.Raw = append(r.Raw, raw...)
		code, more, text, err := ParseReplyLine(raw)
		if err != nil {
			return r, err
		}
		if n > 0 && code != r.Code {
			return r, fmt.Errorf("%w: reply code changed from %d to %d", ErrMalformed, r.Code, code)
		}
		r.Code = code
		r.Lines = append(r.Lines, string(text))
		if !more {
			return r, nil
		}
	}
}

// ParseReply parses raw as one complete reply (ReadReply over its lines).
func ParseReply(raw []byte, maxLines int) (Reply, error) {
	rest := raw
	r, err := ReadReply(func() ([]byte, error) {
		if len(rest) == 0 {
			return nil, io.EOF
		}
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		return line, nil
	}, maxLines)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%w: data after the reply", ErrMalformed)
	}
	return r, err
}

// Render writes r back in wire form, "ddd-" on every line but the last.
// It allocates the result.
func (r Reply) Render() []byte {
	var b bytes.Buffer
	for i, l := range r.Lines {
		sep := byte('-')
		if i == len(r.Lines)-1 {
			sep = ' '
		}
		fmt.Fprintf(&b, "%03d%c%s\r\n", r.Code, sep, l)
	}
	return b.Bytes()
}

// Keywords returns the extension lines of an EHLO reply: all but the
// first, which names the server.
func (r Reply) Keywords() []string {
	if len(r.Lines) < 2 {
		return nil
	}
	return append([]string(nil), r.Lines[1:]...)
}

// DropExtension returns r without the extension lines whose keyword is kw
// (STARTTLS, once the client is past its TLS handover: RFC 3207 §4.2),
// rendered anew, when r is a successful EHLO reply that offers kw;
// otherwise r.Raw unchanged. The first line, the server's name, always
// stays.
func (r Reply) DropExtension(kw string) []byte {
	if r.Code != 250 || len(r.Lines) < 2 || !HasKeyword(r.Lines[1:], kw) {
		return r.Raw
	}
	out := Reply{Code: r.Code, Lines: r.Lines[:1:1]}
	for _, l := range r.Lines[1:] {
		if !KeywordIs([]byte(l), kw) {
			out.Lines = append(out.Lines, l)
		}
	}
	return out.Render()
}

// SplitVerb splits an SMTP command line given without its line ending
// into its verb, the word before the first space, and its argument, the
// rest with surrounding spaces and tabs removed (RFC 5321 §4.1.1). The verb
// is neither validated nor upper-cased.
func SplitVerb(line []byte) (verb, arg []byte) {
	verb, arg, _ = bytes.Cut(line, []byte{' '})
	return verb, bytes.Trim(arg, " \t")
}

// midReply turns io.EOF after n lines of a reply into io.ErrUnexpectedEOF.
func midReply(n int, err error) error {
	if n > 0 && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// clip shortens what a misbehaving peer sent, for an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
