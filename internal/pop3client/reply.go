package pop3client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// MaxLineLength is the longest line, CRLF included, that a [Reader] made with
// a zero limit accepts. RFC 2449 caps responses at 512 octets; message
// content lines may reach 1000, so this leaves room for both.
const MaxLineLength = 1024

// MaxLines is the most lines a multi-line reply may hold before
// [Reader.ReadLines] gives up with [ErrMalformed]; it bounds memory when a
// broken server never sends the terminating ".".
const MaxLines = 10000

var (
	// ErrLineTooLong reports a reply line longer than the reader's limit.
	// The stream is out of step afterwards; close the connection.
	ErrLineTooLong = mailwire.ErrLineTooLong
	// ErrMalformed reports a reply that is neither +OK nor -ERR, or a
	// multi-line reply that does not end properly.
	ErrMalformed = errors.New("pop3client: malformed reply")
	// ErrInjection reports bytes the server sent after its +OK to STLS and
	// before the TLS handshake (response injection); they are never used.
	ErrInjection = errors.New("pop3client: data received before the TLS handshake")
	// ErrBadArgument reports a command argument that holds CR or LF.
	ErrBadArgument = errors.New("pop3client: argument contains CR or LF")
)

// Error is a -ERR reply from the server.
type Error struct {
	// Text is the reply text after "-ERR ", possibly empty.
	Text string
}

// Error returns "pop3client: -ERR " and the server's text.
func (e *Error) Error() string {
	if e.Text == "" {
		return "pop3client: -ERR"
	}
	return "pop3client: -ERR " + e.Text
}

// Reader reads POP3 replies: status lines and dot-terminated multi-line
// bodies, with every line bounded.
type Reader struct {
	br  *bufio.Reader
	max int
}

// NewReader returns a Reader over r that accepts lines of at most max bytes
// including the line ending. If max is zero or negative, MaxLineLength.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = MaxLineLength
	}
	return &Reader{br: bufio.NewReaderSize(r, max), max: max}
}

// Buffered returns the number of bytes received but not yet read.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadLine returns the next line without its CRLF (a bare LF also ends a
// line). A final line cut short by EOF is an error (io.ErrUnexpectedEOF).
func (r *Reader) ReadLine() (string, error) {
	b, err := mailwire.ReadLine(r.br, r.max)
	if err != nil {
		return "", err
	}
	return string(mailwire.TrimEOL(b)), nil
}

// ParseStatus parses a status line. It returns the text after "+OK" for a
// positive reply, an [*Error] for "-ERR", and an error wrapping
// [ErrMalformed] for anything else. The indicators are matched without
// regard to case, as lenient clients do.
func ParseStatus(line string) (string, error) {
	_, text, _ := strings.Cut(line, " ")
	switch mailwire.POP3Status([]byte(line)) {
	case 1:
		return text, nil
	case -1:
		return "", &Error{Text: text}
	}
	return "", fmt.Errorf("%w: %q", ErrMalformed, truncate(line, 64))
}

// ReadReply reads one status line and parses it with [ParseStatus].
func (r *Reader) ReadReply() (string, error) {
	line, err := r.ReadLine()
	if err != nil {
		return "", err
	}
	return ParseStatus(line)
}

// ReadLines reads the body of a multi-line reply up to the line holding a
// single ".", removes the dot-stuffing (a leading ".." becomes "."), and
// returns the lines. It does not read the status line.
func (r *Reader) ReadLines() ([]string, error) {
	_, lines, err := mailwire.ReadPOP3Multi(func() ([]byte, error) { return mailwire.ReadLine(r.br, r.max) }, MaxLines+1)
	if errors.Is(err, mailwire.ErrMalformed) {
		return nil, fmt.Errorf("%w: more than %d lines", ErrMalformed, MaxLines)
	}
	if err != nil {
		return nil, err
	}
	return lines, nil
}

// truncate shortens s to at most n bytes for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
