package backend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/mailedge/mailedge/starttls"
)

// maxReplyLines bounds the lines of one multi-line SMTP reply or of the
// untagged answers to one IMAP command, so a backend cannot make Dial buffer
// without end. Real EHLO replies have about a dozen lines.
const maxReplyLines = 64

// GreetingError reports a backend that answered with a refusal (SMTP 4xx or
// 5xx, IMAP "* BYE", POP3 "-ERR") or with something that is not a greeting
// of the protocol at all (including IMAP "* PREAUTH", which a proxy must not
// accept: the client never authenticated). A Pool fails over on it; the
// caller can relay Text to the client in the protocol's own words.
type GreetingError struct {
	// Protocol is the protocol that was expected.
	Protocol starttls.Protocol
	// Code is the SMTP reply code (for example 421 or 554), or 0.
	Code int
	// Text is the greeting as read, every line with its terminator.
	Text []byte
	// Err is ErrRefused for a refusal and ErrProtocol for anything else.
	Err error
}

// Error returns a one-line description including the first greeting line.
func (e *GreetingError) Error() string {
	first, _, _ := bytes.Cut(e.Text, []byte("\n"))
	return fmt.Sprintf("backend: %v greeting %q: %v", e.Protocol, bytes.TrimRight(first, "\r"), e.Err)
}

// Unwrap returns Err, so errors.Is(err, ErrRefused) works.
func (e *GreetingError) Unwrap() error { return e.Err }

// Temporary reports whether the refusal says to try again later: an SMTP
// 4xx code (421 is the usual "service not available"). IMAP and POP3 do not
// tell, so they report false.
func (e *GreetingError) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// readLine reads one line of at most max bytes including its LF and returns
// it with its terminator as a fresh slice. Longer lines fail with
// ErrLineTooLong; an unterminated line at the end of input fails with
// io.ErrUnexpectedEOF. Memory stays bounded by max plus r's buffer.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var acc []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(acc)+len(frag) > max {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, max)
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

// reply is one SMTP reply: its code and its raw lines.
type reply struct {
	code int
	raw  []byte // every line with its terminator
}

// lines returns the text after "NNN-" / "NNN " of every line.
func (rp reply) lines() [][]byte {
	var out [][]byte
	for line := range bytes.Lines(rp.raw) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 4 {
			out = append(out, line[4:])
		} else {
			out = append(out, nil)
		}
	}
	return out
}

// readReply reads one SMTP reply (RFC 5321 §4.2): lines "NNN-text" ending
// with "NNN text" or a bare "NNN", every line with the same code.
func readReply(r *bufio.Reader, max int) (reply, error) {
	var rp reply
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return rp, fmt.Errorf("%w: SMTP reply longer than %d lines", ErrProtocol, maxReplyLines)
		}
		line, err := readLine(r, max)
		if errors.Is(err, io.EOF) && n > 0 {
			err = io.ErrUnexpectedEOF // a reply cut short
		}
		if err != nil {
			return rp, err
		}
		rp.raw = append(rp.raw, line...)
		code, last, ok := parseReplyLine(line)
		if !ok || (n > 0 && code != rp.code) {
			return rp, fmt.Errorf("%w: malformed SMTP reply line %q", ErrProtocol, bytes.TrimRight(line, "\r\n"))
		}
		rp.code = code
		if last {
			return rp, nil
		}
	}
}

// parseReplyLine splits "NNN-..." or "NNN ..." or "NNN\r\n".
func parseReplyLine(line []byte) (code int, last, ok bool) {
	text := bytes.TrimRight(line, "\r\n")
	if len(text) < 3 {
		return 0, false, false
	}
	for _, c := range text[:3] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 {
		return 0, false, false
	}
	switch {
	case len(text) == 3 || text[3] == ' ':
		return code, true, true
	case text[3] == '-':
		return code, false, true
	}
	return 0, false, false
}

// readGreeting reads the server greeting of proto from r and returns it
// with its terminators. A refusal or an unexpected greeting is returned as
// a *GreetingError; I/O errors and over-long lines are returned as they are.
func readGreeting(r *bufio.Reader, proto starttls.Protocol, max int) ([]byte, error) {
	if proto == starttls.SMTP {
		rp, err := readReply(r, max)
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				return nil, &GreetingError{Protocol: proto, Text: rp.raw, Err: ErrProtocol}
			}
			return nil, err
		}
		return rp.raw, checkSMTPGreeting(rp)
	}
	line, err := readLine(r, max)
	if err != nil {
		return nil, err
	}
	switch proto {
	case starttls.IMAP:
		return line, checkIMAPGreeting(line)
	case starttls.POP3:
		return line, checkPOP3Greeting(line)
	}
	return nil, fmt.Errorf("%w: unknown protocol %d", ErrConfig, int(proto))
}

func checkSMTPGreeting(rp reply) error {
	switch {
	case rp.code == 220:
		return nil
	case rp.code >= 400:
		return &GreetingError{Protocol: starttls.SMTP, Code: rp.code, Text: rp.raw, Err: ErrRefused}
	}
	return &GreetingError{Protocol: starttls.SMTP, Code: rp.code, Text: rp.raw, Err: ErrProtocol}
}

// checkIMAPGreeting accepts "* OK" (RFC 9051 §7.1.1). "* BYE" is a refusal;
// "* PREAUTH" would hand the client an authenticated session it never
// earned, so it is refused as a protocol error (fail closed).
func checkIMAPGreeting(line []byte) error {
	status, ok := bytes.CutPrefix(line, []byte("* "))
	if ok {
		word, _, _ := bytes.Cut(bytes.TrimRight(status, "\r\n"), []byte(" "))
		switch {
		case bytes.EqualFold(word, []byte("OK")):
			return nil
		case bytes.EqualFold(word, []byte("BYE")):
			return &GreetingError{Protocol: starttls.IMAP, Text: line, Err: ErrRefused}
		}
	}
	return &GreetingError{Protocol: starttls.IMAP, Text: line, Err: ErrProtocol}
}

// checkPOP3Greeting accepts "+OK" and refuses "-ERR" (RFC 1939 §4).
func checkPOP3Greeting(line []byte) error {
	text := bytes.TrimRight(line, "\r\n")
	switch {
	case isStatus(text, "+OK"):
		return nil
	case isStatus(text, "-ERR"):
		return &GreetingError{Protocol: starttls.POP3, Text: line, Err: ErrRefused}
	}
	return &GreetingError{Protocol: starttls.POP3, Text: line, Err: ErrProtocol}
}

// isStatus reports whether text is status alone or followed by a space.
func isStatus(text []byte, status string) bool {
	rest, ok := bytes.CutPrefix(text, []byte(status))
	return ok && (len(rest) == 0 || rest[0] == ' ')
}
