package mailwire

import (
	"bytes"
	"fmt"
)

// POP3Status classifies a POP3 status line (RFC 1939 §3): +1 for "+OK",
// -1 for "-ERR", 0 for anything else. The keywords are case-sensitive in
// the RFC but servers vary, so the comparison is not.
func POP3Status(line []byte) int {
	s := TrimEOL(line)
	switch {
	case hasPrefixFold(s, "+OK") && (len(s) == 3 || s[3] == ' '):
		return 1
	case hasPrefixFold(s, "-ERR") && (len(s) == 4 || s[4] == ' '):
		return -1
	}
	return 0
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// MultiEnd reports whether line (with or without its line ending) is the
// "." that ends a POP3 multi-line response.
func MultiEnd(line []byte) bool {
	s := TrimEOL(line)
	return len(s) == 1 && s[0] == '.'
}

// Unstuff returns the text of one line of a POP3 multi-line response
// without its line ending and without the byte-stuffed leading "."
// (RFC 1939 §3). Call it only on lines that are not MultiEnd.
func Unstuff(line []byte) []byte {
	s := TrimEOL(line)
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
	}
	return s
}

// IsSTLSLine reports whether a raw line of a CAPA response body (RFC 2449
// §5) advertises STLS, read as a POP3 client reads it: unstuffed, by its
// keyword.
func IsSTLSLine(line []byte) bool {
	return !MultiEnd(line) && KeywordIs(Unstuff(line), "STLS")
}

// ReadPOP3Multi reads the body of a POP3 multi-line response after its
// status line, up to and including the "." line, with next (ReadLine,
// usually). It returns the raw lines, terminators kept, and their
// unstuffed texts. A body of more than maxLines lines is malformed; end of
// input is io.ErrUnexpectedEOF.
func ReadPOP3Multi(next func() ([]byte, error), maxLines int) (raw [][]byte, texts []string, err error) {
	for n := 0; ; n++ {
		if n == maxLines {
			return raw, texts, fmt.Errorf("%w: multi-line response longer than %d lines", ErrMalformed, maxLines)
		}
		l, err := next()
		if err != nil {
			// The status line came first, so EOF is always mid-response.
			return raw, texts, midReply(1, err)
		}
		raw = append(raw, l)
		if MultiEnd(l) {
			return raw, texts, nil
		}
		texts = append(texts, string(Unstuff(l)))
	}
}

// DropSTLS joins the raw lines of a CAPA body (the terminating "."
// included) without those that advertise STLS. It allocates the result.
func DropSTLS(raw [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range raw {
		if !IsSTLSLine(l) {
			b.Write(l)
		}
	}
	return b.Bytes()
}
