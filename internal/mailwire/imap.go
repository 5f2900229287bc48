package mailwire

import (
	"bytes"
	"fmt"
	"math"
)

// Literal is an IMAP literal announced at the end of a line (RFC 9051
// §4.3): "{n}" (synchronising), "{n+}" (non-synchronising, RFC 7888), each
// optionally preceded by "~" (literal8, RFC 3516). n octets of data follow
// the line's CRLF, then the rest of the same command or response.
type Literal struct {
	// Size is the number of octets announced.
	Size int64
	// NonSync reports "{n+}": the client sends the data without waiting
	// for a continuation request. Servers never announce one.
	NonSync bool
	// Binary reports "~{n}", a literal8.
	Binary bool
}

// ParseLiteral finds the literal announced at the end of line (with or
// without its line ending). n is number64: one or more digits, at most
// 2^63-1 (RFC 9051 §9); a larger count is no literal any server takes, so
// the line announces none. ok is false when there is no literal.
func ParseLiteral(line []byte) (lit Literal, ok bool) {
	s := TrimEOL(line)
	i := len(s) - 1
	if i < 2 || s[i] != '}' {
		return lit, false
	}
	i--
	if s[i] == '+' {
		lit.NonSync = true
		i--
	}
	end := i + 1
	for i >= 0 && s[i] >= '0' && s[i] <= '9' {
		i--
	}
	if i < 0 || s[i] != '{' || i+1 == end {
		return Literal{}, false
	}
	for _, c := range s[i+1 : end] {
		d := int64(c - '0')
		if lit.Size > (math.MaxInt64-d)/10 {
			return Literal{}, false
		}
		lit.Size = lit.Size*10 + d
	}
	lit.Binary = i > 0 && s[i-1] == '~'
	return lit, true
}

// IsAtomChar reports whether c is an RFC 9051 ATOM-CHAR: a visible ASCII
// character that is not an atom-special.
func IsAtomChar(c byte) bool {
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return c > 0x20 && c < 0x7f
}

// IsTagChar reports whether c may appear in an IMAP tag: an ASTRING-CHAR
// other than "+" (RFC 9051 tag).
func IsTagChar(c byte) bool {
	return c == ']' || c != '+' && IsAtomChar(c)
}

// SplitCommand splits an IMAP command line into its tag and its command
// name (RFC 9051 §2.2.1), as every part of the proxy must read them: the
// words before the first and second space. nameEnd indexes line just past
// the name. Either may be empty; validate them with IsTagChar and
// IsAtomChar where the grammar must be enforced.
func SplitCommand(line []byte) (tag, name []byte, nameEnd int) {
	tag, i := Word(line, 0)
	if i >= len(line) || line[i] != ' ' {
		return tag, nil, i
	}
	name, j := Word(line, i+1)
	return tag, name, j
}

// Response is one IMAP response line (RFC 9051 §7), parsed as far as a
// proxy needs: who it is for, what kind it is, and its response code. The
// slices point into the parsed line.
type Response struct {
	// Tag is "*" for untagged data, "+" for a continuation request, else
	// the tag of the command it completes.
	Tag []byte
	// Kind is the response keyword as sent: OK NO BAD BYE PREAUTH
	// CAPABILITY, or the word after a number (EXISTS, FETCH). Empty for a
	// continuation request.
	Kind []byte
	// Code is the response code atom inside "[...]" of a status response,
	// and CodeArgs the rest inside the brackets.
	Code, CodeArgs []byte
	// CodeStart and CodeEnd delimit "[...]" in the line, brackets
	// included; CodeEnd also covers one space that follows. Both are 0
	// without a code.
	CodeStart, CodeEnd int
	// Caps is the capability list of an untagged CAPABILITY response,
	// non-nil (if empty) exactly for such a response.
	Caps []byte
}

// IsKind reports whether r's keyword is kind, ignoring case.
func (r *Response) IsKind(kind string) bool {
	return len(r.Kind) == len(kind) && bytes.EqualFold(r.Kind, []byte(kind))
}

// IsCode reports whether r's response code is code, ignoring case.
func (r *Response) IsCode(code string) bool {
	return len(r.Code) == len(code) && r.Code != nil && bytes.EqualFold(r.Code, []byte(code))
}

// Untagged reports an untagged response ("*").
func (r *Response) Untagged() bool { return len(r.Tag) == 1 && r.Tag[0] == '*' }

// Continuation reports a continuation request ("+").
func (r *Response) Continuation() bool { return len(r.Tag) == 1 && r.Tag[0] == '+' }

// Status reports a status response: OK, NO, BAD, BYE or PREAUTH.
func (r *Response) Status() bool {
	switch len(r.Kind) {
	case 2:
		return r.IsKind("OK") || r.IsKind("NO")
	case 3:
		return r.IsKind("BAD") || r.IsKind("BYE")
	case 7:
		return r.IsKind("PREAUTH")
	}
	return false
}

// Capabilities returns the capability atoms of an untagged CAPABILITY
// response or of a [CAPABILITY ...] code, or nil. It allocates.
func (r *Response) Capabilities() []string {
	var list []byte
	switch {
	case r.Untagged() && r.IsKind("CAPABILITY"):
		list = r.Caps
	case r.IsCode("CAPABILITY"):
		list = r.CodeArgs
	default:
		return nil
	}
	var caps []string
	for _, f := range bytes.Fields(list) {
		caps = append(caps, string(f))
	}
	if caps == nil {
		caps = []string{}
	}
	return caps
}

// NoLiteral reports a response whose text never carries a literal,
// whatever the line ends with: a continuation request, a status response
// (its text is resp-text) and an untagged CAPABILITY.
func (r *Response) NoLiteral() bool {
	return r.Continuation() || r.Caps != nil || r.Status()
}

// ParseResponse parses one response line, with or without its line ending.
// On a malformed line it returns what it parsed so far and an error
// wrapping ErrMalformed.
func ParseResponse(line []byte) (Response, error) {
	var r Response
	s := TrimEOL(line)
	if len(s) > 0 && s[0] == '+' && (len(s) == 1 || s[1] == ' ') {
		r.Tag = s[:1]
		return r, nil
	}
	tag, i := Word(s, 0)
	if len(tag) == 0 || i >= len(s) || s[i] != ' ' {
		return r, fmt.Errorf("%w: response %q has no tag and keyword", ErrMalformed, clip(s))
	}
	r.Tag = tag
	word, j := Word(s, i+1)
	if r.Untagged() && len(word) > 0 && word[0] >= '0' && word[0] <= '9' {
		word = nil
		if j < len(s) {
			word, j = Word(s, j+1)
		}
	}
	if len(word) == 0 {
		return r, fmt.Errorf("%w: response %q has no keyword", ErrMalformed, clip(s))
	}
	r.Kind = word
	if r.Untagged() && r.IsKind("CAPABILITY") {
		r.Caps = s[j:]
		return r, nil
	}
	if j+1 >= len(s) || s[j+1] != '[' || !r.Status() {
		return r, nil
	}
	start := j + 1
	end := bytes.IndexByte(s[start:], ']')
	if end < 0 {
		return r, fmt.Errorf("%w: unterminated response code in %q", ErrMalformed, clip(s))
	}
	inner := s[start+1 : start+end]
	code, args := inner, []byte(nil)
	if k := bytes.IndexByte(inner, ' '); k >= 0 {
		code, args = inner[:k], inner[k+1:]
	}
	r.Code, r.CodeArgs = code, args
	if r.Code == nil {
		r.Code = inner[:0]
	}
	r.CodeStart, r.CodeEnd = start, start+end+1
	if r.CodeEnd < len(s) && s[r.CodeEnd] == ' ' {
		r.CodeEnd++
	}
	return r, nil
}

// DropTLSCapabilities returns a copy of the response line without the
// atoms STARTTLS and LOGINDISABLED in its capability list, in an untagged
// CAPABILITY response or a [CAPABILITY ...] code; nil when there is none to
// remove. After the proxy's TLS both are false, and LOGINDISABLED would
// make a client refuse to log in over a connection that is encrypted (RFC
// 9051 §6.2.1, §7.2.2). noLiteral is Response.NoLiteral of the line.
func DropTLSCapabilities(line []byte) (edited []byte, noLiteral bool) {
	r, err := ParseResponse(line)
	noLiteral = r.NoLiteral()
	if err != nil {
		return nil, noLiteral
	}
	switch {
	case r.Caps != nil:
		end := len(TrimEOL(line))
		return dropAtoms(line, end-len(r.Caps), end), true
	case r.IsCode("CAPABILITY"):
		from, to := r.CodeStart+1+len(r.Code), r.CodeStart+1+len(r.Code)
		if r.CodeArgs != nil {
			to += 1 + len(r.CodeArgs)
		}
		return dropAtoms(line, from, to), true
	}
	return nil, noLiteral
}

// dropAtoms returns a copy of line with the whitespace-separated atoms STARTTLS
// and LOGINDISABLED removed from line[from:to], or nil if there are none.
func dropAtoms(line []byte, from, to int) []byte {
	region := line[from:to]
	if !containsFold(region, "STARTTLS") && !containsFold(region, "LOGINDISABLED") {
		return nil
	}
	out := make([]byte, 0, len(line))
	out = append(out, line[:from]...)
	dropped := false
	for _, a := range bytes.Fields(region) { // as Capabilities splits
		switch {
		case len(a) == 0:
		case bytes.EqualFold(a, []byte("STARTTLS")), bytes.EqualFold(a, []byte("LOGINDISABLED")):
			dropped = true
		default:
			out = append(out, ' ')
			out = append(out, a...)
		}
	}
	if !dropped {
		return nil
	}
	return append(out, line[to:]...)
}

// containsFold reports whether s contains the upper-case ASCII word w in
// any case.
func containsFold(s []byte, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(w)], []byte(w)) {
			return true
		}
	}
	return false
}
