package starttls

import (
	"bytes"
	"fmt"
	"strings"
)

// imapResp is one IMAP response line (RFC 9051 section 7), parsed only as
// far as the proxy needs: who it is for, what kind it is, and its response
// code. Offsets index the line the response was parsed from.
type imapResp struct {
	tag  string // "*" untagged, "+" continuation, else the command tag
	kind string // upper-cased: OK NO BAD BYE PREAUTH CAPABILITY, or the word after a number (EXISTS)
	code string // upper-cased response code atom inside "[...]", or ""
	args string // the rest inside the brackets, or the capability list of * CAPABILITY
	// codeStart and codeEnd delimit "[...]" including the brackets, when
	// code is set; codeEnd also covers one space that follows.
	codeStart, codeEnd int
}

// imapIsStatus reports whether kind is a status response that may carry a code.
func imapIsStatus(kind string) bool {
	switch kind {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return true
	}
	return false
}

// parseIMAPLine parses one response line given without its terminator.
func parseIMAPLine(line []byte) (imapResp, error) {
	var r imapResp
	s := string(line)
	if strings.IndexFunc(s, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) >= 0 {
		return r, fmt.Errorf("%w: control character in response %q", ErrBadResponse, line)
	}
	if s == "+" || strings.HasPrefix(s, "+ ") {
		r.tag = "+"
		return r, nil
	}
	tag, rest, ok := strings.Cut(s, " ")
	if !ok || tag == "" || rest == "" {
		return r, fmt.Errorf("%w: response %q has no tag and keyword", ErrBadResponse, line)
	}
	r.tag = tag
	word, after, _ := strings.Cut(rest, " ")
	if word != "" && word[0] >= '0' && word[0] <= '9' && tag == "*" {
		word, after, _ = strings.Cut(after, " ")
	}
	r.kind = strings.ToUpper(word)
	if r.kind == "" {
		return r, fmt.Errorf("%w: response %q has no keyword", ErrBadResponse, line)
	}
	if r.kind == "CAPABILITY" && tag == "*" {
		r.args = after
		return r, nil
	}
	if !imapIsStatus(r.kind) || !strings.HasPrefix(after, "[") {
		return r, nil
	}
	end := strings.IndexByte(after, ']')
	if end < 0 {
		return r, fmt.Errorf("%w: unterminated response code in %q", ErrBadResponse, line)
	}
	code, args, _ := strings.Cut(after[1:end], " ")
	r.code, r.args = strings.ToUpper(code), args
	r.codeStart = len(s) - len(after)
	r.codeEnd = r.codeStart + end + 1
	if r.codeEnd < len(s) && s[r.codeEnd] == ' ' {
		r.codeEnd++
	}
	return r, nil
}

// dropTLSCaps removes STARTTLS and LOGINDISABLED from a space-separated
// capability list: after the proxy's TLS they are false, and LOGINDISABLED
// would make a client refuse to log in over a connection that is encrypted.
func dropTLSCaps(list string) string {
	var kept []string
	for _, c := range strings.Fields(list) {
		switch strings.ToUpper(c) {
		case "STARTTLS", "LOGINDISABLED":
			continue
		}
		kept = append(kept, c)
	}
	return strings.Join(kept, " ")
}

// capsOf returns the capability atoms of a * CAPABILITY response or of a
// [CAPABILITY ...] code, or nil.
func capsOf(r imapResp) []string {
	if r.kind == "CAPABILITY" && r.tag == "*" || r.code == "CAPABILITY" {
		return strings.Fields(r.args)
	}
	return nil
}

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
// that it advertises neither STARTTLS nor LOGINDISABLED, in a * CAPABILITY
// response or a [CAPABILITY ...] code. Any other line comes back unchanged.
func filterIMAPLine(raw []byte) []byte {
	body := trimEOL(raw)
	eol := raw[len(body):]
	r, err := parseIMAPLine(body)
	switch {
	case err != nil:
		return raw
	case r.tag == "*" && r.kind == "CAPABILITY":
		return joinParts([]byte("* CAPABILITY "), []byte(dropTLSCaps(r.args)), eol)
	case r.code == "CAPABILITY":
		code := "[CAPABILITY " + dropTLSCaps(r.args) + "]"
		tail := body[r.codeEnd:]
		if r.codeEnd > r.codeStart && body[r.codeEnd-1] == ' ' {
			code += " "
		}
		return joinParts(body[:r.codeStart], []byte(code), tail, eol)
	}
	return raw
}

// stripIMAPCode removes the response code of a status line, whatever it
// is, and any further bracketed code the remaining text would start with:
// used when replaying a greeting read before a STARTTLS upgrade, whose codes
// (CAPABILITY, ALERT, REFERRAL) are stale or untrusted.
func stripIMAPCode(raw []byte) []byte {
	body := trimEOL(raw)
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
