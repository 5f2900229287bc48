package monitor

import (
	"bufio"
	"fmt"
	"io"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// The STARTTLS dialogues run here rather than inside go-smtp or imapclient:
// neither exposes STARTTLS on an existing client after a custom EHLO name or
// a capability check, and doing it here lets every failure carry its own
// reason (EHLO refused, STARTTLS not offered, STARTTLS refused, response
// injection, TLS verify failed). After the handshake the libraries take
// over on the TLS connection.

// smtpStartTLS runs EHLO and STARTTLS after the greeting (RFC 3207) and
// checks that the server sent nothing more before the handshake.
func (s *session) smtpStartTLS(br *bufio.Reader, hostname string) *Error {
	if _, err := io.WriteString(s.conn, "EHLO "+hostname+"\r\n"); err != nil {
		return s.ioFail(ErrHello, "EHLO", err)
	}
	code, lines, err := readSMTPReply(br)
	if err != nil {
		return s.ioFail(ErrHello, "EHLO", err)
	}
	if code != 250 {
		return &Error{Kind: ErrHello, Reason: fmt.Sprintf("EHLO refused: %d %s", code, lines[0])}
	}
	if !mailwire.HasKeyword(lines[1:], "STARTTLS") {
		return &Error{Kind: ErrStartTLS, Reason: "STARTTLS not offered"}
	}
	if _, err := io.WriteString(s.conn, "STARTTLS\r\n"); err != nil {
		return s.ioFail(ErrStartTLS, "STARTTLS", err)
	}
	if code, lines, err = readSMTPReply(br); err != nil {
		return s.ioFail(ErrStartTLS, "STARTTLS", err)
	}
	if code != 220 {
		return &Error{Kind: ErrStartTLS, Reason: fmt.Sprintf("STARTTLS refused: %d %s", code, lines[0])}
	}
	return checkInjection(br)
}

// imapStartTLS sends STARTTLS after the greeting (RFC 9051 §6.2.1) and waits
// for its tagged reply, skipping untagged data.
func (s *session) imapStartTLS(br *bufio.Reader) *Error {
	const tag = "m1"
	if _, err := io.WriteString(s.conn, tag+" STARTTLS\r\n"); err != nil {
		return s.ioFail(ErrStartTLS, "STARTTLS", err)
	}
	for range maxReplyLines {
		line, err := readLine(br)
		if err != nil {
			return s.ioFail(ErrStartTLS, "STARTTLS", err)
		}
		r, err := mailwire.ParseResponse([]byte(line))
		if err != nil || string(r.Tag) != tag {
			continue
		}
		if !r.IsKind("OK") {
			return &Error{Kind: ErrStartTLS, Reason: "STARTTLS refused: " + line[len(tag)+1:]}
		}
		return checkInjection(br)
	}
	return &Error{Kind: ErrStartTLS, Reason: "STARTTLS: no tagged reply"}
}

// checkInjection fails when bytes follow the "ready to start TLS" reply in
// cleartext: they would otherwise be lost or, worse, trusted (CVE-2011-0411
// in reverse).
func checkInjection(br *bufio.Reader) *Error {
	if n := br.Buffered(); n > 0 {
		return &Error{Kind: ErrStartTLS, Reason: fmt.Sprintf("STARTTLS: server sent %d bytes before the TLS handshake (response injection)", n)}
	}
	return nil
}
