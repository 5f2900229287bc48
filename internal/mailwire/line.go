package mailwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrLineTooLong reports a line longer than the reader's limit. Every
// package of mailedge that reads mail lines reports this same error value.
var ErrLineTooLong = errors.New("line too long")

// errNoLineEnd is wrapped together with ErrLineTooLong when ReadLine gave
// up discarding an over-long line: the stream is out of step.
var errNoLineEnd = errors.New("no line end to resynchronise on")

// maxDiscard bounds how many bytes ReadLine throws away after an over-long
// line while it looks for the line end to resynchronise on. A peer that
// sends more than this without a line feed is not speaking the protocol.
const maxDiscard = 64 << 10

// ReadLine reads one line of at most max bytes, counting its terminating
// LF, and returns it with its terminator ("\r\n" or a bare "\n") as a fresh
// slice the caller may keep.
//
// Memory stays bounded by max plus r's buffer size whatever the peer sends.
// If the line is longer than max, ReadLine discards input up to and
// including the next LF, so that the next call starts on a fresh line, and
// returns an error wrapping ErrLineTooLong; if no LF comes within 64 KiB
// (or the input ends first) the stream is out of step, which Resynced
// tells apart.
//
// At the end of input ReadLine returns io.EOF if nothing was read, and
// io.ErrUnexpectedEOF for a partial line: an unterminated line is never
// returned. A max below 1 means 1.
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	if max < 1 {
		max = 1
	}
	var acc []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(acc)+len(frag) > max {
			return nil, discardLine(r, frag, err, max)
		}
		switch {
		case err == nil:
			return append(acc, frag...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			acc = append(acc, frag...) // copy before ReadSlice reuses the buffer
		case errors.Is(err, io.EOF) && len(acc)+len(frag) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// discardLine skips the rest of an over-long line. frag and err are the
// result of the ReadSlice that crossed the limit.
func discardLine(r *bufio.Reader, frag []byte, err error, max int) error {
	discarded := len(frag)
	for {
		if err == nil {
			return fmt.Errorf("%w: more than %d bytes (%d skipped)", ErrLineTooLong, max, discarded)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%w: more than %d bytes: %w (%w)", ErrLineTooLong, max, errNoLineEnd, midReply(1, err))
		}
		if discarded >= maxDiscard {
			return fmt.Errorf("%w: more than %d bytes: %w within %d bytes", ErrLineTooLong, max, errNoLineEnd, discarded)
		}
		frag, err = r.ReadSlice('\n')
		discarded += len(frag)
	}
}

// Resynced reports whether err from ReadLine is an over-long line after
// which the reader stands at the start of the next line, so a dialogue may
// answer with an error and go on.
func Resynced(err error) bool {
	return errors.Is(err, ErrLineTooLong) && !errors.Is(err, errNoLineEnd)
}

// TrimEOL returns b without a trailing "\n" or "\r\n".
func TrimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// Word returns the token of s that starts at i and ends before a space,
// CR or LF, and the index just past it.
func Word(s []byte, i int) ([]byte, int) {
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\r' && s[j] != '\n' {
		j++
	}
	return s[i:j], j
}

// ReplaceSpan returns a new slice holding line with line[i:j] replaced by
// repl.
func ReplaceSpan(line []byte, i, j int, repl string) []byte {
	out := make([]byte, 0, len(line)-(j-i)+len(repl))
	out = append(out, line[:i]...)
	out = append(out, repl...)
	return append(out, line[j:]...)
}

// keywordEnd returns the length of the first word of a capability line:
// up to a space, a tab or the line end.
func keywordEnd(text []byte) int {
	for i, c := range text {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return i
		}
	}
	return len(text)
}

// Keyword returns the first word of an EHLO or CAPA line's text,
// upper-cased: the extension keyword (RFC 5321 §4.1.1.1, RFC 2449 §5).
// It allocates the returned string.
func Keyword(text []byte) string {
	return string(bytes.ToUpper(text[:keywordEnd(text)]))
}

// KeywordIs reports whether the first word of an EHLO or CAPA line's text
// is kw, ignoring case, the way Keyword compares.
func KeywordIs(text []byte, kw string) bool {
	return bytes.EqualFold(text[:keywordEnd(text)], []byte(kw))
}

// HasKeyword reports whether one of lines (EHLO or CAPA line texts)
// advertises kw, ignoring case.
func HasKeyword(lines []string, kw string) bool {
	for _, l := range lines {
		if KeywordIs([]byte(l), kw) {
			return true
		}
	}
	return false
}
