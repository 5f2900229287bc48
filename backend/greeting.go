package backend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"

	"github.com/mailedge/mailedge/internal/mailwire"
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

// readReply reads one SMTP reply of lines of at most max bytes each; a
// malformed reply is ErrProtocol.
func readReply(r *bufio.Reader, max int) (mailwire.Reply, error) {
	rp, err := mailwire.ReadReply(func() ([]byte, error) { return mailwire.ReadLine(r, max) }, maxReplyLines)
	if errors.Is(err, mailwire.ErrMalformed) {
		err = fmt.Errorf("%w: SMTP reply: %w", ErrProtocol, err)
	}
	return rp, err
}

// readGreeting reads the server greeting of proto from r and returns it
// with its terminators. A refusal or an unexpected greeting is returned as
// a *GreetingError; I/O errors and over-long lines are returned as they are.
func readGreeting(r *bufio.Reader, proto starttls.Protocol, max int) ([]byte, error) {
	if proto == starttls.SMTP {
		rp, err := readReply(r, max)
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				return nil, &GreetingError{Protocol: proto, Text: rp.Raw, Err: ErrProtocol}
			}
			return nil, err
		}
		return rp.Raw, checkSMTPGreeting(rp)
	}
	line, err := mailwire.ReadLine(r, max)
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

func checkSMTPGreeting(rp mailwire.Reply) error {
	switch {
	case rp.Code == 220:
		return nil
	case rp.Code >= 400:
		return &GreetingError{Protocol: starttls.SMTP, Code: rp.Code, Text: rp.Raw, Err: ErrRefused}
	}
	return &GreetingError{Protocol: starttls.SMTP, Code: rp.Code, Text: rp.Raw, Err: ErrProtocol}
}

// checkIMAPGreeting accepts "* OK" (RFC 9051 §7.1.1). "* BYE" is a refusal;
// "* PREAUTH" would hand the client an authenticated session it never
// earned, so it is refused as a protocol error (fail closed).
func checkIMAPGreeting(line []byte) error {
	r, err := mailwire.ParseResponse(line)
	switch {
	case err != nil || !r.Untagged():
	case r.IsKind("OK"):
		return nil
	case r.IsKind("BYE"):
		return &GreetingError{Protocol: starttls.IMAP, Text: line, Err: ErrRefused}
	}
	return &GreetingError{Protocol: starttls.IMAP, Text: line, Err: ErrProtocol}
}

// checkPOP3Greeting accepts "+OK" and refuses "-ERR" (RFC 1939 §4).
func checkPOP3Greeting(line []byte) error {
	switch mailwire.POP3Status(line) {
	case 1:
		return nil
	case -1:
		return &GreetingError{Protocol: starttls.POP3, Text: line, Err: ErrRefused}
	}
	return &GreetingError{Protocol: starttls.POP3, Text: line, Err: ErrProtocol}
}
