package mailwire

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseLiteral(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		lit  Literal
	}{
		{line: "{0}", ok: true, lit: Literal{Size: 0}},
		{line: "{5}", ok: true, lit: Literal{Size: 5}},
		{line: "{5}\r\n", ok: true, lit: Literal{Size: 5}},
		{line: "{5}\n", ok: true, lit: Literal{Size: 5}},
		{line: "{5+}", ok: true, lit: Literal{Size: 5, NonSync: true}},
		{line: "{5+}\r\n", ok: true, lit: Literal{Size: 5, NonSync: true}},
		{line: "~{5}", ok: true, lit: Literal{Size: 5, Binary: true}},
		{line: "~{5}\r\n", ok: true, lit: Literal{Size: 5, Binary: true}},
		{line: "~{5+}\r\n", ok: true, lit: Literal{Size: 5, NonSync: true, Binary: true}},
		{line: "A1 LOGIN {4}\r\n", ok: true, lit: Literal{Size: 4}},
		{line: "A1 APPEND INBOX (\\Seen) ~{12+}\r\n", ok: true, lit: Literal{Size: 12, NonSync: true, Binary: true}},
		{line: "* 1 FETCH (BODY[] {342}\r\n", ok: true, lit: Literal{Size: 342}},
		{line: "{9223372036854775807}", ok: true, lit: Literal{Size: math.MaxInt64}},
		{line: "{9223372036854775807+}\r\n", ok: true, lit: Literal{Size: math.MaxInt64, NonSync: true}},
		{line: "{00000000000000000005}", ok: true, lit: Literal{Size: 5}}, // 20 digits, small value
		{line: "{0000000000000000000000000009223372036854775807}", ok: true, lit: Literal{Size: math.MaxInt64}},
		// "x{5}": the announcement ends the line; what precedes it is not
		// the parser's business (a server that reads it as a literal would
		// otherwise run out of step with the proxy).
		{line: "x{5}", ok: true, lit: Literal{Size: 5}},
		{line: "A1 LOGIN x{5}\r\n", ok: true, lit: Literal{Size: 5}},
		{line: "{{5}", ok: true, lit: Literal{Size: 5}},
		{line: "~~{5}", ok: true, lit: Literal{Size: 5, Binary: true}},
		{line: "{1}{2}", ok: true, lit: Literal{Size: 2}},
		{line: "{9223372036854775808}"},  // 2^63
		{line: "{9223372036854775808+}"}, // 2^63
		{line: "{18446744073709551615}"}, // 2^64-1
		{line: "{18446744073709551616}"}, // 2^64
		{line: "{12345678901234567890}"}, // 20 digits
		{line: "{99999999999999999999}"}, // 20 digits
		{line: "{+}"},
		{line: "{}"},
		{line: "{-1}"},
		{line: "{+5}"},
		{line: "{5++}"},
		{line: "{ 5}"},
		{line: "{5 }"},
		{line: "{5}} "},
		{line: "{5}}"},
		{line: "{5} "},
		{line: "{5}\r"},
		{line: "{5}\r\r\n"},
		{line: "{5}\n\n"},
		{line: "{5}~"},
		{line: "{5"},
		{line: "5}"},
		{line: "5+}"},
		{line: "}"},
		{line: "+}"},
		{line: ""},
		{line: "\r\n"},
		{line: "{0x5}"},
		{line: "{\u0665}"}, // ARABIC-INDIC DIGIT FIVE
		{line: "A1 NOOP\r\n"},
		{line: "{5}x"},
	}
	for _, tt := range tests {
		lit, ok := ParseLiteral([]byte(tt.line))
		if ok != tt.ok || lit != tt.lit {
			t.Errorf("ParseLiteral(%q) = %+v, %v; want %+v, %v", tt.line, lit, ok, tt.lit, tt.ok)
		}
	}
}

// atomSpecials is RFC 9051's atom-specials without CTL: "(" ")" "{" SP,
// list-wildcards, quoted-specials and resp-specials.
const atomSpecials = "(){ %*\"\\]"

func TestIsAtomCharAndIsTagChar(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		// CHAR = %x01-7F; CTL = %x00-1F / %x7F; ATOM-CHAR = any CHAR
		// except atom-specials.
		atom := c >= 0x01 && c <= 0x7f && c > 0x1f && c != 0x7f && !strings.ContainsRune(atomSpecials, rune(c))
		// tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR = ATOM-CHAR
		// / resp-specials.
		tag := (atom || c == ']') && c != '+'
		if got := IsAtomChar(b); got != atom {
			t.Errorf("IsAtomChar(%q) = %v, want %v", b, got, atom)
		}
		if got := IsTagChar(b); got != tag {
			t.Errorf("IsTagChar(%q) = %v, want %v", b, got, tag)
		}
	}
	for _, c := range []byte("AZaz09.-_+!#$&'/:;<=>?@[^`|}~") {
		if !IsAtomChar(c) {
			t.Errorf("IsAtomChar(%q) = false", c)
		}
	}
	for _, c := range []byte("(){ %*\"\\]\x00\r\n\t\x7f\x80\xff") {
		if IsAtomChar(c) {
			t.Errorf("IsAtomChar(%q) = true", c)
		}
	}
	if !IsTagChar(']') || IsTagChar('+') || IsTagChar('*') || IsTagChar(' ') || !IsTagChar('A') {
		t.Error("IsTagChar disagrees on ], +, *, space or A")
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		line    string
		tag     string
		name    string
		noName  bool
		nameEnd int
	}{
		{line: "A1 NOOP\r\n", tag: "A1", name: "NOOP", nameEnd: 7},
		{line: "A1 NOOP", tag: "A1", name: "NOOP", nameEnd: 7},
		{line: "A1 NOOP\n", tag: "A1", name: "NOOP", nameEnd: 7},
		{line: "a001 login user pass\r\n", tag: "a001", name: "login", nameEnd: 10},
		{line: "A1 UID FETCH 1:* (FLAGS)\r\n", tag: "A1", name: "UID", nameEnd: 6},
		{line: "A1 STARTTLS\r\n", tag: "A1", name: "STARTTLS", nameEnd: 11},
		{line: "A1 LOGIN {4}\r\n", tag: "A1", name: "LOGIN", nameEnd: 8},
		{line: "A1\r\n", tag: "A1", noName: true, nameEnd: 2},
		{line: "A1", tag: "A1", noName: true, nameEnd: 2},
		{line: "", tag: "", noName: true, nameEnd: 0},
		{line: "\r\n", tag: "", noName: true, nameEnd: 0},
		{line: " NOOP\r\n", tag: "", name: "NOOP", nameEnd: 5},
		{line: "A1  NOOP\r\n", tag: "A1", name: "", nameEnd: 3},
		{line: "A1 \r\n", tag: "A1", name: "", nameEnd: 3},
		{line: "A1\tNOOP\r\n", tag: "A1\tNOOP", noName: true, nameEnd: 7},
		{line: "A1 NOOP\tx\r\n", tag: "A1", name: "NOOP\tx", nameEnd: 9},
		{line: "A1\rNOOP\r\n", tag: "A1", noName: true, nameEnd: 2},
	}
	for _, tt := range tests {
		tag, name, end := SplitCommand([]byte(tt.line))
		if string(tag) != tt.tag || string(name) != tt.name || (name == nil) != tt.noName || end != tt.nameEnd {
			t.Errorf("SplitCommand(%q) = %q, %q (nil %v), %d; want %q, %q (nil %v), %d",
				tt.line, tag, name, name == nil, end, tt.tag, tt.name, tt.noName, tt.nameEnd)
		}
		if !tt.noName && string(tt.line[end-len(name):end]) != tt.name {
			t.Errorf("SplitCommand(%q): nameEnd %d does not end the name", tt.line, end)
		}
	}
}

type respWant struct {
	tag, kind  string
	code       string // "" with hasCode false means no code
	hasCode    bool
	args       string
	span       string // line[CodeStart:CodeEnd]
	caps       string
	capList    []string // Capabilities(); nil means nil
	bad        bool
	untagged   bool
	cont       bool
	status     bool
	noLiteral  bool
	kindIsCaps bool
}

func TestParseResponse(t *testing.T) {
	okCaps := []string{"IMAP4rev1", "STARTTLS"}
	tests := []struct {
		line string
		want respWant
	}{
		{"+", respWant{tag: "+", cont: true, noLiteral: true}},
		{"+\r\n", respWant{tag: "+", cont: true, noLiteral: true}},
		{"+ go ahead\r\n", respWant{tag: "+", cont: true, noLiteral: true}},
		{"+ {5}\r\n", respWant{tag: "+", cont: true, noLiteral: true}},
		{"+ OK [CAPABILITY STARTTLS]\r\n", respWant{tag: "+", cont: true, noLiteral: true}},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", respWant{tag: "*", kind: "OK", code: "CAPABILITY", hasCode: true,
			args: "IMAP4rev1 STARTTLS", span: "[CAPABILITY IMAP4rev1 STARTTLS] ", capList: okCaps, untagged: true, status: true, noLiteral: true}},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\n", respWant{tag: "*", kind: "OK", code: "CAPABILITY", hasCode: true,
			args: "IMAP4rev1 STARTTLS", span: "[CAPABILITY IMAP4rev1 STARTTLS] ", capList: okCaps, untagged: true, status: true, noLiteral: true}},
		{"* OK [capability IMAP4rev1 STARTTLS]", respWant{tag: "*", kind: "OK", code: "capability", hasCode: true,
			args: "IMAP4rev1 STARTTLS", span: "[capability IMAP4rev1 STARTTLS]", capList: okCaps, untagged: true, status: true, noLiteral: true}},
		{"* PREAUTH [CAPABILITY IMAP4rev2] logged in\r\n", respWant{tag: "*", kind: "PREAUTH", code: "CAPABILITY", hasCode: true,
			args: "IMAP4rev2", span: "[CAPABILITY IMAP4rev2] ", capList: []string{"IMAP4rev2"}, untagged: true, status: true, noLiteral: true}},
		{"* OK [CAPABILITY] hi", respWant{tag: "*", kind: "OK", code: "CAPABILITY", hasCode: true,
			span: "[CAPABILITY] ", capList: []string{}, untagged: true, status: true, noLiteral: true}},
		{"* 5 EXISTS\r\n", respWant{tag: "*", kind: "EXISTS", untagged: true}},
		{"* 12 FETCH (BODY[] {5}\r\n", respWant{tag: "*", kind: "FETCH", untagged: true}},
		{"* 3 RECENT", respWant{tag: "*", kind: "RECENT", untagged: true}},
		{"A1 OK [READ-WRITE] done\r\n", respWant{tag: "A1", kind: "OK", code: "READ-WRITE", hasCode: true,
			span: "[READ-WRITE] ", status: true, noLiteral: true}},
		{"a1 ok [read-write] done\r\n", respWant{tag: "a1", kind: "ok", code: "read-write", hasCode: true,
			span: "[read-write] ", status: true, noLiteral: true}},
		{"A1 NO [AUTHENTICATIONFAILED] bad\r\n", respWant{tag: "A1", kind: "NO", code: "AUTHENTICATIONFAILED", hasCode: true,
			span: "[AUTHENTICATIONFAILED] ", status: true, noLiteral: true}},
		{"* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n", respWant{tag: "*", kind: "OK", code: "PERMANENTFLAGS", hasCode: true,
			args: "(\\Seen \\*)", span: "[PERMANENTFLAGS (\\Seen \\*)] ", untagged: true, status: true, noLiteral: true}},
		{"* OK [ALERT]", respWant{tag: "*", kind: "OK", code: "ALERT", hasCode: true, span: "[ALERT]", untagged: true, status: true, noLiteral: true}},
		{"* OK [ALERT]\r\n", respWant{tag: "*", kind: "OK", code: "ALERT", hasCode: true, span: "[ALERT]", untagged: true, status: true, noLiteral: true}},
		{"* OK [] x", respWant{tag: "*", kind: "OK", code: "", hasCode: true, span: "[] ", untagged: true, status: true, noLiteral: true}},
		{"* BYE [ALERT] going\r\n", respWant{tag: "*", kind: "BYE", code: "ALERT", hasCode: true, span: "[ALERT] ", untagged: true, status: true, noLiteral: true}},
		{"* BAD {5}\r\n", respWant{tag: "*", kind: "BAD", untagged: true, status: true, noLiteral: true}},
		{"* OK\r\n", respWant{tag: "*", kind: "OK", untagged: true, status: true, noLiteral: true}},
		{"* OK \r\n", respWant{tag: "*", kind: "OK", untagged: true, status: true, noLiteral: true}},
		{"* OK text [CAPABILITY STARTTLS]\r\n", respWant{tag: "*", kind: "OK", untagged: true, status: true, noLiteral: true}},
		{"* OK  [CAPABILITY STARTTLS]\r\n", respWant{tag: "*", kind: "OK", untagged: true, status: true, noLiteral: true}},
		{"* FLAGS (\\Seen [x])\r\n", respWant{tag: "*", kind: "FLAGS", untagged: true}},
		{"* LIST () \"/\" {5}\r\n", respWant{tag: "*", kind: "LIST", untagged: true}},
		{"* CAPABILITY IMAP4rev1 STARTTLS\r\n", respWant{tag: "*", kind: "CAPABILITY", caps: " IMAP4rev1 STARTTLS",
			capList: okCaps, untagged: true, noLiteral: true, kindIsCaps: true}},
		{"* capability  IMAP4rev1   STARTTLS ", respWant{tag: "*", kind: "capability", caps: "  IMAP4rev1   STARTTLS ",
			capList: okCaps, untagged: true, noLiteral: true, kindIsCaps: true}},
		{"* CAPABILITY IMAP4rev1 {5}\r\n", respWant{tag: "*", kind: "CAPABILITY", caps: " IMAP4rev1 {5}",
			capList: []string{"IMAP4rev1", "{5}"}, untagged: true, noLiteral: true, kindIsCaps: true}},
		{"* CAPABILITY\r\n", respWant{tag: "*", kind: "CAPABILITY", capList: []string{}, untagged: true, noLiteral: true, kindIsCaps: true}},
		{"* 1 CAPABILITY STARTTLS", respWant{tag: "*", kind: "CAPABILITY", caps: " STARTTLS", capList: []string{"STARTTLS"},
			untagged: true, noLiteral: true, kindIsCaps: true}},
		// A tagged CAPABILITY is no capability response.
		{"A1 CAPABILITY STARTTLS\r\n", respWant{tag: "A1", kind: "CAPABILITY", kindIsCaps: true}},
		// Malformed: what was parsed is returned with the error.
		{"* OK [unterminated\r\n", respWant{tag: "*", kind: "OK", bad: true, untagged: true, status: true, noLiteral: true}},
		{"* OK [CAPABILITY STARTTLS", respWant{tag: "*", kind: "OK", bad: true, untagged: true, status: true, noLiteral: true}},
		{"* OK [", respWant{tag: "*", kind: "OK", bad: true, untagged: true, status: true, noLiteral: true}},
		{"*", respWant{bad: true}},
		{"*\r\n", respWant{bad: true}},
		{"A1", respWant{bad: true}},
		{"A1\r\n", respWant{bad: true}},
		{"", respWant{bad: true}},
		{"\r\n", respWant{bad: true}},
		{" OK", respWant{bad: true}},
		{"+go", respWant{bad: true}},
		{"* ", respWant{tag: "*", bad: true, untagged: true}},
		{"*  OK", respWant{tag: "*", bad: true, untagged: true}},
		{"* 5", respWant{tag: "*", bad: true, untagged: true}},
		{"* 5\r\n", respWant{tag: "*", bad: true, untagged: true}},
		{"* 5 ", respWant{tag: "*", bad: true, untagged: true}},
		// The tag is the first word up to a space, whatever it holds.
		{"A1\tOK done", respWant{tag: "A1\tOK", kind: "done"}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.line), func(t *testing.T) {
			r, err := ParseResponse([]byte(tt.line))
			w := tt.want
			if w.bad != (err != nil) {
				t.Fatalf("error %v, want error %v", err, w.bad)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			var span string
			if r.CodeEnd > 0 {
				span = tt.line[r.CodeStart:r.CodeEnd]
			}
			got := respWant{
				tag: string(r.Tag), kind: string(r.Kind), code: string(r.Code), hasCode: r.Code != nil,
				args: string(r.CodeArgs), span: span, caps: string(r.Caps), capList: r.Capabilities(),
				bad: err != nil, untagged: r.Untagged(), cont: r.Continuation(), status: r.Status(),
				noLiteral: r.NoLiteral(), kindIsCaps: r.IsKind("CAPABILITY"),
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("ParseResponse(%q)\n got %+v\nwant %+v", tt.line, got, w)
			}
			if w.hasCode && (!r.IsCode(w.code) || !r.IsCode(strings.ToUpper(w.code)) || r.IsCode(w.code+"X")) {
				t.Fatalf("IsCode disagrees with Code %q", r.Code)
			}
			if !w.hasCode && r.IsCode("") {
				t.Fatal(`IsCode("") true without a code`)
			}
		})
	}
}

func TestDropTLSCapabilities(t *testing.T) {
	tests := []struct {
		line      string
		want      string // "" means nil
		noLiteral bool
	}{
		// Untagged CAPABILITY.
		{"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n", true},
		{"* CAPABILITY IMAP4rev1 LOGINDISABLED STARTTLS\r\n", "* CAPABILITY IMAP4rev1\r\n", true},
		{"* CAPABILITY STARTTLS IMAP4rev1\r\n", "* CAPABILITY IMAP4rev1\r\n", true},
		{"* capability imap4rev1 StartTLS logindisabled\r\n", "* capability imap4rev1\r\n", true},
		{"* CAPABILITY  IMAP4rev1   STARTTLS  IDLE \r\n", "* CAPABILITY IMAP4rev1 IDLE\r\n", true},
		{"* CAPABILITY STARTTLS\r\n", "* CAPABILITY\r\n", true},
		{"* CAPABILITY STARTTLS", "* CAPABILITY", true},
		{"* CAPABILITY STARTTLS\n", "* CAPABILITY\n", true},
		{"* CAPABILITY STARTTLS STARTTLS starttls\r\n", "* CAPABILITY\r\n", true},
		{"* CAPABILITY IMAP4rev1 STARTTLS {5}\r\n", "* CAPABILITY IMAP4rev1 {5}\r\n", true},
		{"* CAPABILITY IMAP4rev1 XSTARTTLS STARTTLSX LOGINDISABLED2\r\n", "", true},
		{"* CAPABILITY IMAP4rev1 AUTH=STARTTLS\r\n", "", true},
		{"* CAPABILITY IMAP4rev1\r\n", "", true},
		{"* CAPABILITY\r\n", "", true},
		{"* CAPABILITY", "", true},
		// [CAPABILITY ...] response codes.
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n", "* OK [CAPABILITY IMAP4rev1] ready\r\n", true},
		{"* OK [capability STARTTLS imap4rev1] hi", "* OK [capability imap4rev1] hi", true},
		{"* OK [CaPaBiLiTy IMAP4rev1 sTaRtTlS] hi\r\n", "* OK [CaPaBiLiTy IMAP4rev1] hi\r\n", true},
		{"* OK [CAPABILITY STARTTLS] hi\r\n", "* OK [CAPABILITY] hi\r\n", true},
		{"* OK [CAPABILITY STARTTLS]", "* OK [CAPABILITY]", true},
		{"* OK [CAPABILITY  IMAP4rev1  STARTTLS ] hi\r\n", "* OK [CAPABILITY IMAP4rev1] hi\r\n", true},
		{"A1 OK [CAPABILITY IMAP4rev2 STARTTLS] done\r\n", "A1 OK [CAPABILITY IMAP4rev2] done\r\n", true},
		{"* PREAUTH [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n", "* PREAUTH [CAPABILITY IMAP4rev1] hi\r\n", true},
		{"* BYE [CAPABILITY STARTTLS] bye\r\n", "* BYE [CAPABILITY] bye\r\n", true},
		{"* OK [CAPABILITY] hi\r\n", "", true},
		{"* OK [CAPABILITY IMAP4rev1] STARTTLS LOGINDISABLED in the text\r\n", "", true},
		{"* OK [CAPABILITYX STARTTLS] hi\r\n", "", true},
		{"* OK [ALERT] STARTTLS\r\n", "", true},
		// Nothing to drop.
		{"* OK IMAP4rev1 STARTTLS ready\r\n", "", true},
		{"* OK text [CAPABILITY STARTTLS]\r\n", "", true},
		{"+ STARTTLS\r\n", "", true},
		{"+ [CAPABILITY STARTTLS]\r\n", "", true},
		{"A1 OK STARTTLS completed\r\n", "", true},
		{"* 3 EXISTS\r\n", "", false},
		{"* 5 FETCH (BODY[] {5}\r\n", "", false},
		{"* LIST () \"/\" STARTTLS\r\n", "", false},
		{"A1 CAPABILITY STARTTLS\r\n", "", false},
		// Malformed lines: nothing dropped, noLiteral as parsed so far.
		{"* OK [CAPABILITY STARTTLS\r\n", "", true},
		{"*\r\n", "", false},
		{"garbage\r\n", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.line), func(t *testing.T) {
			in := []byte(tt.line)
			edited, noLiteral := DropTLSCapabilities(in)
			if tt.want == "" {
				if edited != nil {
					t.Errorf("DropTLSCapabilities(%q) = %q, want nil", tt.line, edited)
				}
			} else if string(edited) != tt.want {
				t.Errorf("DropTLSCapabilities(%q) = %q, want %q", tt.line, edited, tt.want)
			}
			if noLiteral != tt.noLiteral {
				t.Errorf("DropTLSCapabilities(%q) noLiteral = %v, want %v", tt.line, noLiteral, tt.noLiteral)
			}
			r, _ := ParseResponse(in)
			if r.NoLiteral() != noLiteral {
				t.Errorf("noLiteral %v, but ParseResponse says %v", noLiteral, r.NoLiteral())
			}
			if string(in) != tt.line {
				t.Errorf("DropTLSCapabilities changed its input to %q", in)
			}
			if edited != nil {
				if again, _ := DropTLSCapabilities(edited); again != nil {
					t.Errorf("not idempotent: %q then %q", edited, again)
				}
			}
		})
	}
}

// TestDropTLSCapabilitiesAgreesWithCapabilities: whatever a line's
// separators, DropTLSCapabilities must remove every STARTTLS and
// LOGINDISABLED that Response.Capabilities reports, and keep the rest.
// The two read the same capability list; if they split it differently
// the proxy advertises a STARTTLS it believes it has removed.
func TestDropTLSCapabilitiesAgreesWithCapabilities(t *testing.T) {
	for _, line := range []string{
		"* CAPABILITY IMAP4rev1\tSTARTTLS\r\n",
		"* CAPABILITY IMAP4rev1 STARTTLS\tIDLE\r\n",
		"* CAPABILITY\tSTARTTLS\r\n",
		"* CAPABILITY IMAP4rev1\vLOGINDISABLED\r\n",
		"* CAPABILITY IMAP4rev1\rSTARTTLS\r\n",
		"* CAPABILITY IMAP4rev1 STARTTLS\r\r\n",
		"* CAPABILITY IMAP4rev1\u00a0STARTTLS\r\n",
		"* OK [CAPABILITY IMAP4rev1\tSTARTTLS] hi\r\n",
		"* OK [CAPABILITY IMAP4rev1 STARTTLS\tIDLE] hi\r\n",
	} {
		t.Run(line, func(t *testing.T) { checkDropTLSCapabilities(t, []byte(line)) })
	}
}

// checkDropTLSCapabilities checks the properties of DropTLSCapabilities on
// one line; FuzzDropTLSCapabilities runs it on every input.
func checkDropTLSCapabilities(t *testing.T, line []byte) {
	t.Helper()
	orig := string(line)
	edited, noLiteral := DropTLSCapabilities(line)
	if string(line) != orig {
		t.Fatalf("DropTLSCapabilities changed its input %q to %q", orig, line)
	}
	r, _ := ParseResponse(line)
	if noLiteral != r.NoLiteral() {
		t.Fatalf("DropTLSCapabilities(%q) noLiteral = %v, ParseResponse says %v", line, noLiteral, r.NoLiteral())
	}
	before := r.Capabilities()
	if edited == nil {
		for _, c := range before {
			if isTLSCap(c) {
				t.Fatalf("DropTLSCapabilities(%q) = nil, but Capabilities() has %q: %q", line, c, before)
			}
		}
		return
	}
	if !noLiteral {
		t.Fatalf("DropTLSCapabilities(%q) edited a line with noLiteral false", line)
	}
	r2, err := ParseResponse(edited)
	if err != nil {
		t.Fatalf("DropTLSCapabilities(%q) = %q, which does not parse: %v", line, edited, err)
	}
	if string(r2.Tag) != string(r.Tag) || string(r2.Kind) != string(r.Kind) || string(r2.Code) != string(r.Code) {
		t.Fatalf("DropTLSCapabilities(%q) = %q: tag, kind or code changed", line, edited)
	}
	after := r2.Capabilities()
	if after == nil {
		t.Fatalf("DropTLSCapabilities(%q) = %q has no capability list", line, edited)
	}
	var kept []string
	for _, c := range before {
		if !isTLSCap(c) {
			kept = append(kept, c)
		}
	}
	for _, c := range after {
		if isTLSCap(c) {
			t.Fatalf("DropTLSCapabilities(%q) = %q, which still has %q: %q", line, edited, c, after)
		}
	}
	if len(kept) != len(after) || len(kept) > 0 && !reflect.DeepEqual(kept, after) {
		t.Fatalf("DropTLSCapabilities(%q) = %q: capabilities %q, want %q", line, edited, after, kept)
	}
	if len(before) == len(after) {
		t.Fatalf("DropTLSCapabilities(%q) = %q removed nothing", line, edited)
	}
	if again, nl := DropTLSCapabilities(edited); again != nil || !nl {
		t.Fatalf("DropTLSCapabilities not idempotent: %q, then %q (noLiteral %v)", edited, again, nl)
	}
	// The line ending and whatever follows the capability list stay.
	if eol := func(b []byte) string { return string(b[len(TrimEOL(b)):]) }; eol(edited) != eol(line) {
		t.Fatalf("DropTLSCapabilities(%q) = %q changed the line ending", line, edited)
	}
	if r.CodeEnd > 0 && string(TrimEOL(edited)[r2.CodeEnd:]) != string(TrimEOL(line)[r.CodeEnd:]) {
		t.Fatalf("DropTLSCapabilities(%q) = %q changed the text after the code", line, edited)
	}
}

func isTLSCap(c string) bool {
	return strings.EqualFold(c, "STARTTLS") || strings.EqualFold(c, "LOGINDISABLED")
}
