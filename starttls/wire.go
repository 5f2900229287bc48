package starttls

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// The wire grammar is package mailwire's; this file adapts its results to
// the errors of this package.

// readSMTPReply reads one possibly multi-line reply with next, which returns
// lines with their terminators.
func readSMTPReply(next func() ([]byte, error)) (mailwire.Reply, error) {
	r, err := mailwire.ReadReply(next, maxReplyLines)
	return r, badResponse(err)
}

// readPOP3Multi reads the body of a POP3 multi-line response after its
// status line, up to and including the "." line.
func readPOP3Multi(next func() ([]byte, error)) (raw [][]byte, texts []string, err error) {
	raw, texts, err = mailwire.ReadPOP3Multi(next, maxReplyLines)
	return raw, texts, badResponse(err)
}

// badResponse makes a grammar error from mailwire an ErrBadResponse.
func badResponse(err error) error {
	if errors.Is(err, mailwire.ErrMalformed) {
		return fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	return err
}

// imapResp is one IMAP response line as the dialogues here judge it:
// mailwire.Response with its words upper-cased.
type imapResp struct {
	tag  string // "*" untagged, "+" continuation, else the command tag
	kind string // upper-cased: OK NO BAD BYE PREAUTH CAPABILITY, or the word after a number (EXISTS)
	code string // upper-cased response code atom inside "[...]", or ""
	args string // the rest inside the brackets, or the capability list of * CAPABILITY
	// codeStart and codeEnd delimit "[...]" including the brackets, when
	// code is set; codeEnd also covers one space that follows.
	codeStart, codeEnd int
	caps               []string // Response.Capabilities: of * CAPABILITY or [CAPABILITY ...]
}

// parseIMAPLine parses one response line given without its terminator.
// Before TLS a control character in a response is refused outright.
func parseIMAPLine(line []byte) (imapResp, error) {
	var r imapResp
	if bytes.ContainsFunc(line, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) {
		return r, fmt.Errorf("%w: control character in response %q", ErrBadResponse, line)
	}
	w, err := mailwire.ParseResponse(line)
	if err != nil {
		return r, badResponse(err)
	}
	r.tag, r.kind, r.caps = string(w.Tag), strings.ToUpper(string(w.Kind)), w.Capabilities()
	switch {
	case w.Untagged() && w.IsKind("CAPABILITY"):
		r.args = strings.TrimPrefix(string(w.Caps), " ")
	case w.Code != nil:
		r.code, r.args = strings.ToUpper(string(w.Code)), string(w.CodeArgs)
		r.codeStart, r.codeEnd = w.CodeStart, w.CodeEnd
	}
	return r, nil
}

// capsOf returns the capability atoms of a * CAPABILITY response or of a
// [CAPABILITY ...] code, or nil.
func capsOf(r imapResp) []string { return r.caps }

// hasCap reports whether caps holds name (case-insensitive).
func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// filterIMAPLine rewrites one raw response line (terminator included) so
// that it advertises neither STARTTLS nor LOGINDISABLED. Any other line
// comes back unchanged.
func filterIMAPLine(raw []byte) []byte {
	if edited, _ := mailwire.DropTLSCapabilities(raw); edited != nil {
		return edited
	}
	return raw
}

// stripIMAPCode removes the response code of a status line, whatever it
// is, and any further bracketed code the remaining text would start with:
// used when replaying a greeting read before a STARTTLS upgrade, whose codes
// (CAPABILITY, ALERT, REFERRAL) are stale or untrusted.
func stripIMAPCode(raw []byte) []byte {
	body := mailwire.TrimEOL(raw)
	eol := raw[len(body):]
	for {
		r, err := parseIMAPLine(body)
		if err != nil || r.code == "" {
			return joinParts(body, eol)
		}
		text := body[r.codeEnd:]
		if len(bytes.TrimSpace(text)) == 0 {
			// RFC 9051 requires text after the code-less status keyword.
			text = []byte("ready")
		}
		next := joinParts(body[:r.codeStart], text)
		if _, err := parseIMAPLine(next); err != nil {
			// The rest looked like a broken code: drop it too.
			next = joinParts(body[:r.codeStart], []byte("ready"))
		}
		body = next
	}
}

func joinParts(parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
