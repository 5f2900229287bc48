package monitor

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/internal/pop3client"
	"github.com/mailedge/mailedge/starttls"
)

// maxLine bounds every line a probe reads before handing the connection to
// a library: twice RFC 5321's 1000 octets, as go-smtp's client does.
const maxLine = 2000

// maxReplyLines bounds a multi-line SMTP reply or the untagged lines before
// an IMAP tagged reply.
const maxReplyLines = 100

// errMalformed marks a line that is not the protocol's: a reply that
// breaks the grammar, or a line over maxLine.
var errMalformed = mailwire.ErrMalformed

// Greeting is the cheapest probe, what NetScaler's nssmtp.pl does: connect,
// read the greeting, say goodbye, close. A greeting that refuses service
// (SMTP 421/554, IMAP * BYE, POP3 -ERR), an IMAP * PREAUTH (a proxy must not
// hand out pre-authenticated sessions) and anything that is not the
// protocol fail the probe.
type Greeting struct {
	// Protocol is the protocol whose greeting is expected. If zero, SMTP.
	Protocol starttls.Protocol
	// Security is starttls.Plain or TLS. STARTTLS is probed like Plain: the
	// greeting comes before the upgrade, and this probe stops there. If
	// zero, Plain.
	Security starttls.Security
	// TLSConfig is used with Security TLS. If nil, TLS 1.2 or later with
	// the system roots and the host of the address as server name.
	TLSConfig *tls.Config
	// Dial, if not nil, opens the probe's TCP connection instead of a
	// plain dial: for a member that accepts only a balancer's connections,
	// it can write a PROXY header (LOCAL) first. If nil, net.Dialer.
	Dial DialFunc
}

// Probe connects to addr and checks the greeting.
func (g Greeting) Probe(ctx context.Context, addr string) Result {
	s := begin(ctx)
	s.dialFn = g.Dial
	return s.end(g.run(s, addr))
}

func (g Greeting) run(s *session, addr string) *Error {
	if _, _, e := s.greeted(addr, g.Security, g.TLSConfig, g.Protocol); e != nil {
		return e
	}
	// Say goodbye so the server logs a clean session, but do not wait for
	// the answer: the probe has what it came for.
	_, _ = io.WriteString(s.conn, goodbye(g.Protocol))
	return nil
}

// greeted connects to addr, does the handshake of implicit TLS, and reads
// and checks the greeting: the first steps every probe shares. The reader
// it returns holds whatever the server sent after the greeting.
func (s *session) greeted(addr string, sec starttls.Security, cfg *tls.Config, p starttls.Protocol) (*bufio.Reader, string, *Error) {
	if e := s.dial(addr); e != nil {
		return nil, "", e
	}
	if sec == starttls.TLS {
		if e := s.handshake(s.tlsConfig(cfg, addr, p)); e != nil {
			return nil, "", e
		}
	}
	br := bufio.NewReaderSize(s.conn, maxLine)
	greeting, e := s.greet(br, p)
	return br, greeting, e
}

// goodbye is each protocol's polite close.
func goodbye(p starttls.Protocol) string {
	if p == starttls.IMAP {
		return "m0 LOGOUT\r\n"
	}
	return "QUIT\r\n"
}

// greet reads and checks the greeting of p. It returns the greeting line to
// replay to a client library, CRLF included.
func (s *session) greet(br *bufio.Reader, p starttls.Protocol) (string, *Error) {
	switch p {
	case starttls.IMAP:
		return s.greetIMAP(br)
	case starttls.POP3:
		return s.greetPOP3(br)
	}
	return s.greetSMTP(br)
}

func (s *session) greetSMTP(br *bufio.Reader) (string, *Error) {
	code, lines, err := readSMTPReply(br)
	switch {
	case errors.Is(err, errMalformed):
		return "", fail(ErrGreeting, err, "wrong greeting: not SMTP")
	case err != nil:
		return "", s.greetFail(err)
	case code != 220:
		return "", &Error{Kind: ErrGreeting, Reason: fmt.Sprintf("wrong greeting: %d %s", code, lines[0])}
	}
	return "220 " + lines[0] + "\r\n", nil
}

func (s *session) greetIMAP(br *bufio.Reader) (string, *Error) {
	line, err := readLine(br)
	if err != nil {
		return "", s.greetFail(err)
	}
	r, err := mailwire.ParseResponse([]byte(line))
	if err == nil && r.Untagged() {
		_, text, _ := strings.Cut(line[2:], " ") // after "* " and the keyword
		switch {
		case r.IsKind("OK"):
			return line + "\r\n", nil
		case r.IsKind("PREAUTH"):
			return "", &Error{Kind: ErrGreeting, Reason: "unexpected PREAUTH greeting: " + text}
		case r.IsKind("BYE"):
			return "", &Error{Kind: ErrGreeting, Reason: "server said BYE: " + text}
		}
	}
	return "", &Error{Kind: ErrGreeting, Reason: fmt.Sprintf("wrong greeting: not IMAP: %q", clip(line))}
}

func (s *session) greetPOP3(br *bufio.Reader) (string, *Error) {
	line, err := readLine(br)
	if err != nil {
		return "", s.greetFail(err)
	}
	_, err = pop3client.ParseStatus(line)
	var perr *pop3client.Error
	switch {
	case errors.As(err, &perr):
		return "", &Error{Kind: ErrGreeting, Reason: "wrong greeting: " + line, Err: err}
	case err != nil:
		return "", &Error{Kind: ErrGreeting, Reason: fmt.Sprintf("wrong greeting: not POP3: %q", clip(line)), Err: err}
	}
	return line + "\r\n", nil
}

// rawLine reads one line of at most maxLine bytes with its line ending; a
// longer line is errMalformed.
func rawLine(br *bufio.Reader) ([]byte, error) {
	raw, err := mailwire.ReadLine(br, maxLine)
	if errors.Is(err, mailwire.ErrLineTooLong) {
		err = fmt.Errorf("%w: %w", errMalformed, err)
	}
	return raw, err
}

// readLine is rawLine without the line ending.
func readLine(br *bufio.Reader) (string, error) {
	raw, err := rawLine(br)
	return string(mailwire.TrimEOL(raw)), err
}

// readSMTPReply reads a reply of one or more lines ("250-a", "250 b") and
// returns its code and the text of each line.
func readSMTPReply(br *bufio.Reader) (int, []string, error) {
	r, err := mailwire.ReadReply(func() ([]byte, error) { return rawLine(br) }, maxReplyLines)
	if err != nil {
		return 0, nil, err
	}
	return r.Code, r.Lines, nil
}

// clip shortens what a misbehaving server sent, for a reason string.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
