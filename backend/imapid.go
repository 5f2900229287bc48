package backend

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// Tags of the IMAP commands Dial sends.
const (
	capTag = "me0"
	idTag  = "me1"
)

// imapQuote returns s as an IMAP quoted string (RFC 9051 §4.3): backslash
// and double quote escaped. CR, LF and NUL cannot appear in a quoted string
// and are refused rather than sent, so a value can never end the command.
func imapQuote(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("%w: CR, LF or NUL in IMAP ID value %q", ErrIdentity, s)
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String(), nil
}

// idFields returns the Dovecot ID fields known for ci, in pairs.
func idFields(ci ClientInfo) []string {
	var f []string
	if src := tcpAddr(ci.Src); src != nil {
		f = append(f, "x-originating-ip", src.IP.String(), "x-originating-port", strconv.Itoa(src.Port))
	}
	if dst := tcpAddr(ci.Dst); dst != nil {
		f = append(f, "x-connected-ip", dst.IP.String(), "x-connected-port", strconv.Itoa(dst.Port))
	}
	return f
}

// idCommand builds the ID command line (RFC 2971) for fields.
func idCommand(fields []string) (string, error) {
	var b strings.Builder
	b.WriteString(idTag + " ID (")
	for i, v := range fields {
		q, err := imapQuote(v)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(q)
	}
	b.WriteString(")\r\n")
	return b.String(), nil
}

// imapID sends the ID command for ci and reads up to its tagged answer.
// Nothing is sent when no field is known. The ID capability is checked
// first (RFC 2971 §3.1), from the greeting's [CAPABILITY] code or else with
// a CAPABILITY command: servers that do not know ID may answer an unknown
// command before login with BAD and BYE (go-imap does, against
// cross-protocol attacks). A missing capability, or a NO or BAD answer, is
// ErrIdentity unless bestEffort.
func imapID(br *bufio.Reader, w io.Writer, greeting []byte, ci ClientInfo, max int, bestEffort bool) (sent bool, err error) {
	fields := idFields(ci)
	if len(fields) == 0 {
		return false, nil
	}
	cmd, err := idCommand(fields)
	if err != nil {
		return false, err
	}
	caps, ok := greetingCaps(greeting)
	if !ok {
		if caps, err = imapCapability(br, w, max); err != nil {
			return false, err
		}
	}
	if !containsFold(caps, "ID") {
		if bestEffort {
			return false, nil
		}
		return false, fmt.Errorf("%w: ID capability not advertised", ErrIdentity)
	}
	if _, err := io.WriteString(w, cmd); err != nil {
		return false, err
	}
	status, err := readTagged(br, idTag, max, nil)
	if err != nil {
		return false, err
	}
	if !strings.EqualFold(status, "OK") {
		if !bestEffort {
			return false, fmt.Errorf("%w: ID answered %s", ErrIdentity, status)
		}
		return false, nil
	}
	return true, nil
}

// greetingCaps returns the atoms of a [CAPABILITY ...] response code in an
// IMAP greeting, and whether there was one.
func greetingCaps(greeting []byte) ([]string, bool) {
	r, err := mailwire.ParseResponse(greeting)
	if err != nil || !r.IsCode("CAPABILITY") {
		return nil, false
	}
	return r.Capabilities(), true
}

// imapCapability asks for the capabilities with the CAPABILITY command.
func imapCapability(br *bufio.Reader, w io.Writer, max int) ([]string, error) {
	if _, err := io.WriteString(w, capTag+" CAPABILITY\r\n"); err != nil {
		return nil, err
	}
	var caps []string
	status, err := readTagged(br, capTag, max, func(r *mailwire.Response) {
		if r.Caps != nil {
			caps = append(caps, r.Capabilities()...)
		}
	})
	if err != nil {
		return nil, err
	}
	if status != "OK" {
		return nil, fmt.Errorf("%w: CAPABILITY answered %s", ErrProtocol, status)
	}
	return caps, nil
}

// readTagged reads untagged IMAP answers up to the tagged one for tag and
// returns its status word (OK, NO or BAD), passing each untagged answer to
// untagged if not nil. An untagged BYE is ErrRefused.
func readTagged(br *bufio.Reader, tag string, max int, untagged func(*mailwire.Response)) (string, error) {
	for range maxReplyLines {
		line, err := readIMAPLine(br, max)
		if err != nil {
			return "", err
		}
		text := mailwire.TrimEOL(line)
		r, err := mailwire.ParseResponse(text)
		switch {
		case err != nil:
			return "", fmt.Errorf("%w: unexpected IMAP answer %q: %w", ErrProtocol, text, err)
		case string(r.Tag) == tag:
			return strings.ToUpper(string(r.Kind)), nil
		case !r.Untagged():
			return "", fmt.Errorf("%w: unexpected IMAP answer %q", ErrProtocol, text)
		case r.IsKind("BYE"):
			return "", fmt.Errorf("%w: %q", ErrRefused, text)
		}
		if untagged != nil {
			untagged(&r)
		}
	}
	return "", fmt.Errorf("%w: more than %d untagged IMAP answers", ErrProtocol, maxReplyLines)
}

// readIMAPLine reads one IMAP answer line including any literals it
// carries ("{n}" at a line end is followed by n octets and the rest of the
// line), at most max octets in all.
func readIMAPLine(br *bufio.Reader, max int) ([]byte, error) {
	line, err := mailwire.ReadLine(br, max)
	if err != nil {
		return nil, err
	}
	if r, err := mailwire.ParseResponse(line); err == nil && r.NoLiteral() {
		return line, nil
	}
	for {
		lit, ok := mailwire.ParseLiteral(line)
		if !ok {
			return line, nil
		}
		if lit.Size > int64(max-len(line)) {
			return nil, fmt.Errorf("%w: IMAP literal of %d octets", ErrLineTooLong, lit.Size)
		}
		data := make([]byte, lit.Size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, err
		}
		line = append(line, data...)
		if max-len(line) < 2 {
			return nil, fmt.Errorf("%w: IMAP answer over %d octets", ErrLineTooLong, max)
		}
		rest, err := mailwire.ReadLine(br, max-len(line))
		if err != nil {
			return nil, err
		}
		line = append(line, rest...)
	}
}
