package starttls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// smtpReply is one SMTP reply (RFC 5321 section 4.2): a three-digit code
// shared by all its lines, and the text of each line.
type smtpReply struct {
	code  int
	lines []string // text after "ddd-" or "ddd ", without terminator
	raw   []byte   // the reply exactly as read
}

// text joins the lines for error messages.
func (r smtpReply) text() string {
	return fmt.Sprintf("%d %s", r.code, strings.Join(r.lines, " / "))
}

// parseSMTPLine splits one reply line (without terminator) into its code,
// whether more lines follow ("250-") and its text. A bare "250" is a last
// line with empty text, as RFC 5321 allows.
func parseSMTPLine(line []byte) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("%w: short reply line %q", ErrBadResponse, line)
	}
	for _, d := range line[:3] {
		if d < '0' || d > '9' {
			return 0, false, "", fmt.Errorf("%w: reply line %q has no code", ErrBadResponse, line)
		}
	}
	code, _ = strconv.Atoi(string(line[:3]))
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("%w: reply code %d out of range", ErrBadResponse, code)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		return code, true, string(line[4:]), nil
	case ' ':
		return code, false, string(line[4:]), nil
	}
	return 0, false, "", fmt.Errorf("%w: bad separator in reply line %q", ErrBadResponse, line)
}

// readSMTPReply reads one possibly multi-line reply with next, which returns
// lines with their terminators. All lines must carry the same code.
func readSMTPReply(next func() ([]byte, error)) (smtpReply, error) {
	var r smtpReply
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return r, fmt.Errorf("%w: reply longer than %d lines", ErrBadResponse, maxReplyLines)
		}
		raw, err := next()
		if err != nil {
			return r, midReply(n, err)
		}
		code, more, text, err := parseSMTPLine(trimEOL(raw))
		if err != nil {
			return r, err
		}
		if n > 0 && code != r.code {
			return r, fmt.Errorf("%w: reply code changed from %d to %d", ErrBadResponse, r.code, code)
		}
		r.code = code
		r.lines = append(r.lines, text)
		r.raw = append(r.raw, raw...)
		if !more {
			return r, nil
		}
	}
}

// render writes r back in wire form, "ddd-" on all lines but the last.
func (r smtpReply) render() []byte {
	var b bytes.Buffer
	for i, l := range r.lines {
		sep := byte('-')
		if i == len(r.lines)-1 {
			sep = ' '
		}
		fmt.Fprintf(&b, "%03d%c%s\r\n", r.code, sep, l)
	}
	return b.Bytes()
}

// ehloKeywords returns the extension lines of an EHLO reply (all but the
// first, which names the server).
func ehloKeywords(r smtpReply) []string {
	if len(r.lines) < 2 {
		return nil
	}
	return append([]string(nil), r.lines[1:]...)
}

// ehloKeyword returns the first word of an EHLO or CAPA line, upper-cased.
func ehloKeyword(line string) string {
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		line = line[:i]
	}
	return strings.ToUpper(line)
}

// hasKeyword reports whether lines advertise kw (case-insensitive).
func hasKeyword(lines []string, kw string) bool {
	for _, l := range lines {
		if ehloKeyword(l) == kw {
			return true
		}
	}
	return false
}

// filterEHLO drops STARTTLS from a successful EHLO reply and renders the
// result; the first line (the server's name) always stays. Other replies are
// returned unchanged.
func filterEHLO(r smtpReply) []byte {
	if r.code != 250 || len(r.lines) < 2 || !hasKeyword(r.lines[1:], "STARTTLS") {
		return r.raw
	}
	out := smtpReply{code: r.code, lines: r.lines[:1:1]}
	for _, l := range r.lines[1:] {
		if ehloKeyword(l) != "STARTTLS" {
			out.lines = append(out.lines, l)
		}
	}
	return out.render()
}

// pop3Status classifies a POP3 status line: +1 for "+OK", -1 for "-ERR",
// 0 for anything else. The keywords are case-sensitive per RFC 1939 but
// servers vary, so the comparison is not.
func pop3Status(line []byte) int {
	switch {
	case pop3HasPrefix(line, "+OK") && (len(line) == 3 || line[3] == ' '):
		return 1
	case pop3HasPrefix(line, "-ERR") && (len(line) == 4 || line[4] == ' '):
		return -1
	}
	return 0
}

func pop3HasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// readPOP3Multi reads the body of a POP3 multi-line response (RFC 1939
// section 3) after its status line, up to and including the "." line. It
// returns the raw lines (terminators kept) and the dot-unstuffed texts.
func readPOP3Multi(next func() ([]byte, error)) (raw [][]byte, texts []string, err error) {
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return raw, texts, fmt.Errorf("%w: multi-line response longer than %d lines", ErrBadResponse, maxReplyLines)
		}
		l, err := next()
		if err != nil {
			// The status line came first, so EOF is always mid-response.
			return raw, texts, midReply(1, err)
		}
		raw = append(raw, l)
		t := trimEOL(l)
		if len(t) == 1 && t[0] == '.' {
			return raw, texts, nil
		}
		if len(t) > 0 && t[0] == '.' {
			t = t[1:]
		}
		texts = append(texts, string(t))
	}
}

// filterCAPA drops the STLS line from the raw lines of a CAPA body (the
// terminating "." included) and joins the rest.
func filterCAPA(raw [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range raw {
		t := trimEOL(l)
		if ehloKeyword(string(t)) == "STLS" {
			continue
		}
		b.Write(l)
	}
	return b.Bytes()
}

// midReply turns io.EOF after n lines of a reply into io.ErrUnexpectedEOF.
func midReply(n int, err error) error {
	if n > 0 && errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
