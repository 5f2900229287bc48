package starttls

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
)

// maxFilteredLines bounds the responses Handover relays while it waits for
// the end of an IMAP CAPABILITY answer.
const maxFilteredLines = 4096

// firstCommand looks at the client's first command (in s.Pending, or read
// from the client when block is set). If it asks for capabilities (EHLO,
// CAPABILITY, CAPA) it alone is forwarded and the answer filtered. Every
// other byte the client sent stays unforwarded, for the copy that follows:
// what the client pipelined then reaches the backend through the same path
// as everything after it (the bridge's SMTP inspector and its limits
// included), never around it.
func (h *handover) firstCommand(block bool) error {
	line, rest, err := h.clientFirstLine(block)
	if err != nil {
		return fmt.Errorf("reading the client's first command: %w", err)
	}
	filter := h.capabilityFilter(line)
	if filter == nil {
		h.clientRest = joinParts(line, rest)
		return nil
	}
	h.clientRest = rest
	if err := h.toBackend(line); err != nil {
		return err
	}
	return filter()
}

// capabilityFilter returns the filter for the answer to line when line asks
// for capabilities, and nil otherwise.
func (h *handover) capabilityFilter(line []byte) func() error {
	if line == nil {
		return nil
	}
	switch h.s.Protocol {
	case SMTP:
		if strings.EqualFold(verbOf(string(mailwire.TrimEOL(line))), "EHLO") {
			return h.filterSMTP
		}
	case IMAP:
		if tag, ok := imapCapabilityCommand(mailwire.TrimEOL(line)); ok {
			return func() error { return h.filterIMAP(tag) }
		}
	case POP3:
		if strings.EqualFold(string(mailwire.TrimEOL(line)), "CAPA") {
			return h.filterPOP3
		}
	}
	return nil
}

// clientFirstLine splits off the client's first command line (terminator
// included) and returns everything read after it. line is nil when there is
// no complete line to look at: s.Pending has none and block is false, or
// the line is longer than maxHandoverLine; rest then holds all bytes read.
func (h *handover) clientFirstLine(block bool) (line, rest []byte, err error) {
	p := h.s.Pending
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return p[:i+1], p[i+1:], nil
	}
	if !block {
		return nil, p, nil
	}
	pr := bytes.NewReader(p)
	cr := bufpool.Get(io.MultiReader(pr, h.s.Conn), maxHandoverLine)
	defer bufpool.Put(cr) // line and rest are copies
	frag, err := cr.ReadSlice('\n')
	switch {
	case err == nil:
		line = bytes.Clone(frag)
	case errors.Is(err, bufio.ErrBufferFull):
		rest = bytes.Clone(frag)
	default:
		return nil, nil, err
	}
	// Bytes in cr's buffer come before any of s.Pending it has not read.
	buffered, _ := cr.Peek(cr.Buffered())
	rest = append(rest, buffered...)
	unread, _ := io.ReadAll(pr)
	return line, append(rest, unread...), nil
}

// imapCapabilityCommand reports whether line is "tag CAPABILITY" and returns
// the tag.
func imapCapabilityCommand(line []byte) (string, bool) {
	tag, name, end := mailwire.SplitCommand(line)
	if len(tag) == 0 || !allBytes(tag, mailwire.IsTagChar) || end != len(line) {
		return "", false
	}
	return string(tag), bytes.EqualFold(name, []byte("CAPABILITY"))
}

// filterSMTP relays the EHLO reply without STARTTLS.
func (h *handover) filterSMTP() error {
	r, err := readSMTPReply(h.backendLine)
	if err != nil {
		return fmt.Errorf("EHLO reply: %w", err)
	}
	return h.toClient(r.DropExtension("STARTTLS"))
}

// filterIMAP relays responses up to the tagged answer to tag, with STARTTLS
// and LOGINDISABLED dropped from capability lists. Literals are copied
// through unparsed, and the line that continues a response after a literal
// is never mistaken for a new response.
func (h *handover) filterIMAP(tag string) error {
	continued := false
	for n := 0; n < maxFilteredLines; n++ {
		raw, err := h.backendLine()
		if err != nil {
			return fmt.Errorf("CAPABILITY answer: %w", err)
		}
		out, noLiteral := raw, false
		if !continued {
			var edited []byte
			if edited, noLiteral = mailwire.DropTLSCapabilities(raw); edited != nil {
				out = edited
			}
		}
		if err := h.toClient(out); err != nil {
			return err
		}
		if lit, ok := mailwire.ParseLiteral(raw); ok && !noLiteral {
			if _, err := io.CopyN(h.s.Conn, h.br, lit.Size); err != nil {
				return fmt.Errorf("CAPABILITY answer literal: %w", err)
			}
			continued = true
			continue
		}
		if !continued {
			if r, err := parseIMAPLine(mailwire.TrimEOL(raw)); err == nil && r.tag == tag {
				return nil
			}
		}
		continued = false
	}
	return fmt.Errorf("%w: more than %d responses to CAPABILITY", ErrBadResponse, maxFilteredLines)
}

// filterPOP3 relays the CAPA answer without STLS.
func (h *handover) filterPOP3() error {
	status, err := h.backendLine()
	if err != nil {
		return fmt.Errorf("CAPA answer: %w", err)
	}
	if err := h.toClient(status); err != nil {
		return err
	}
	if mailwire.POP3Status(mailwire.TrimEOL(status)) != 1 {
		return nil
	}
	raw, _, err := readPOP3Multi(h.backendLine)
	if err != nil {
		return fmt.Errorf("CAPA list: %w", err)
	}
	return h.toClient(mailwire.DropSTLS(raw))
}
