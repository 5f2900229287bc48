package mailwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

// countReader counts the bytes its reader has handed out, so that with the
// bufio.Reader's Buffered the test knows where in the input ReadLine stands.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

var readLineSeeds = []struct {
	in  string
	max uint16
}{
	{"", 512},
	{"EHLO a\r\nQUIT\r\n", 512},
	{"NOOP\nQUIT\n", 512},
	{"a\rb\r\n", 512},
	{"QUIT", 512},
	{"NOOP\r\nQU", 512},
	{"abcd\n", 6},
	{"abcde\nok\n", 6},
	{"abcd\r\nok\r\n", 6},
	{"abcdef\nghijkl\nok\n", 6},
	{"abcdef", 6},
	{"abcde", 6},
	{"\n\nx\n", 0},
	{"\n\nx\n", 1},
	// Longer than the smallest buffer (16 bytes) and than max; kept short,
	// since the fuzzer's minimiser works in time quadratic in the length.
	{strings.Repeat("x", 70) + "\r\nQUIT\r\n", 41},
	{strings.Repeat("x", 70), 41},
	{strings.Repeat("x", 30) + "\n", 1000},
}

// FuzzReadLine checks ReadLine against a model of the input: every call
// returns exactly the next line of the input if it fits in max bytes (LF
// counted), skips to the next line start after a Resynced error, and never
// invents, drops or reorders a byte of the lines it returns.
func FuzzReadLine(f *testing.F) {
	for _, s := range readLineSeeds {
		f.Add([]byte(s.in), s.max, uint8(0), false)
		f.Add([]byte(s.in), s.max, uint8(3), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, max uint16, bufSize uint8, oneByte bool) {
		m := int(max%1024) - 1 // -1 and 0 mean 1
		limit := m
		if limit < 1 {
			limit = 1
		}
		src := &countReader{r: bytes.NewReader(data)}
		var rd io.Reader = src
		if oneByte {
			rd = iotest.OneByteReader(src)
		}
		br := bufio.NewReaderSize(rd, 16+int(bufSize))
		pos := 0 // where in data the next ReadLine starts
		for calls := 0; calls <= len(data)+1; calls++ {
			line, err := ReadLine(br, m)
			next := src.n - br.Buffered()
			rest := data[pos:]
			lf := bytes.IndexByte(rest, '\n')
			switch {
			case len(rest) == 0:
				if err != io.EOF || line != nil {
					t.Fatalf("at the end of input: %q, %v; want io.EOF", line, err)
				}
				return
			case err == nil:
				if lf < 0 || !bytes.Equal(line, rest[:lf+1]) {
					t.Fatalf("at %d: got line %q, want the input's next line (rest %q)", pos, line, rest)
				}
				if len(line) > limit || line[len(line)-1] != '\n' {
					t.Fatalf("line %q: longer than %d or not ending in LF", line, limit)
				}
				if next != pos+len(line) {
					t.Fatalf("after line %q the reader stands at %d, want %d", line, next, pos+len(line))
				}
				pos = next
				continue
			}
			if line != nil {
				t.Fatalf("error %v with line %q", err, line)
			}
			switch {
			case lf >= 0 && lf+1 <= limit:
				t.Fatalf("at %d: %v for a line of %d bytes (max %d)", pos, err, lf+1, limit)
			case lf < 0 && len(rest) <= limit:
				if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrLineTooLong) {
					t.Fatalf("partial last line %q: %v, want io.ErrUnexpectedEOF", rest, err)
				}
				return
			case !errors.Is(err, ErrLineTooLong):
				t.Fatalf("over-long line at %d: %v, want ErrLineTooLong", pos, err)
			case errors.Is(err, io.EOF):
				t.Fatalf("over-long line at %d: %v passes for a clean end of input", pos, err)
			case Resynced(err):
				if lf < 0 {
					t.Fatalf("resynced, but the input has no further line end (rest %q)", rest)
				}
				if next != pos+lf+1 || (next > 0 && data[next-1] != '\n') {
					t.Fatalf("resynced at %d, want the next line start %d", next, pos+lf+1)
				}
				pos = next
				continue
			default: // out of step: only when no LF comes within the bound
				if lf >= 0 && lf+1 <= maxDiscard {
					t.Fatalf("out of step (%v) although the line ends after %d bytes", err, lf+1)
				}
				return
			}
		}
		t.Fatalf("ReadLine made no progress through %q", data)
	})
}

var replySeeds = []string{
	"250 OK\r\n",
	"250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
	"250-mx\r\n250 STARTTLS\r\n",
	"250-STARTTLS\r\n250 STARTTLS\r\n",
	"250-mx\r\n250-starttls\r\n250 SIZE\r\n",
	"250-mx\r\n250-STARTTLS now\r\n250-STARTTLS\tx\r\n250 XSTARTTLS\r\n",
	"250-mx\n250-STARTTLS\n250 SIZE",
	"250-mx\r\n250-STARTTLS\rX\r\n250 SIZE\r\n",
	"250",
	"250\r\n",
	"250-\r\n250 \r\n",
	"250-a\r\n250\r\n",
	"250-a\r\n",
	"250-a\r\n251 b\r\n",
	"550-mx\r\n550 STARTTLS\r\n",
	"150 x\r\n",
	"650 x\r\n",
	"2500 x\r\n",
	"250 a\r\r\n",
	"250 a\r\n250 b\r\n",
	"",
}

// FuzzReply checks that a parsed reply renders back to the same reply,
// that the streaming ReplyHead agrees with ParseReplyLine, that ReadReply
// over ReadLine reads what ParseReply parses, and that DropExtension leaves
// no STARTTLS extension and keeps the server's name.
func FuzzReply(f *testing.F) {
	for _, s := range replySeeds {
		f.Add([]byte(s), uint8(10))
	}
	f.Add([]byte("250-a\r\n250-b\r\n250 c\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, raw []byte, maxLines uint8) {
		ml := int(maxLines % 64)
		for _, l := range bytes.SplitAfter(raw, []byte("\n")) {
			code, more, _, err := ParseReplyLine(l)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseReplyLine(%q): %v does not wrap ErrMalformed", l, err)
				}
				continue
			}
			if code < 200 || code > 599 {
				t.Fatalf("ParseReplyLine(%q) accepted code %d", l, code)
			}
			for _, line := range [][]byte{l, TrimEOL(l)} {
				head := line[:min(4, len(line))]
				if hc, hm := ReplyHead(head); hc != code || hm != more {
					t.Fatalf("ReplyHead(%q) = %d, %v; ParseReplyLine(%q) = %d, %v", head, hc, hm, l, code, more)
				}
			}
		}

		r, err := ParseReply(raw, ml)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Raw, raw) || len(r.Lines) == 0 || len(r.Lines) > ml {
			t.Fatalf("ParseReply(%q) = %+v: Raw differs or %d lines (max %d)", raw, r, len(r.Lines), ml)
		}

		rendered := r.Render()
		r2, err := ParseReply(rendered, ml)
		if err != nil {
			t.Fatalf("Render of %q = %q, which does not parse: %v", raw, rendered, err)
		}
		if r2.Code != r.Code || !reflect.DeepEqual(r2.Lines, r.Lines) {
			t.Fatalf("round trip of %q through %q: %d %q, want %d %q", raw, rendered, r2.Code, r2.Lines, r.Code, r.Lines)
		}

		if raw[len(raw)-1] == '\n' {
			br := bufio.NewReaderSize(bytes.NewReader(raw), 16)
			next := func() ([]byte, error) { return ReadLine(br, len(raw)) }
			r3, err := ReadReply(next, ml)
			if err != nil || r3.Code != r.Code || !reflect.DeepEqual(r3.Lines, r.Lines) || !bytes.Equal(r3.Raw, raw) {
				t.Fatalf("ReadReply over ReadLine of %q = %+v, %v; ParseReply gave %+v", raw, r3, err, r)
			}
			if l, err := ReadLine(br, len(raw)); err != io.EOF {
				t.Fatalf("ReadReply left %q, %v", l, err)
			}
		}

		out := r.DropExtension("STARTTLS")
		if r.Code != 250 && !bytes.Equal(out, raw) {
			t.Fatalf("DropExtension changed a %d reply: %q", r.Code, out)
		}
		d, err := ParseReply(out, ml)
		if err != nil {
			t.Fatalf("DropExtension(%q) = %q, which does not parse: %v", raw, out, err)
		}
		if d.Code != r.Code || d.Lines[0] != r.Lines[0] {
			t.Fatalf("DropExtension(%q) = %q lost the first line or the code", raw, out)
		}
		if r.Code == 250 {
			for _, l := range d.Lines[1:] {
				if refKeyword(l) == "STARTTLS" {
					t.Fatalf("DropExtension(%q) = %q still offers %q", raw, out, l)
				}
			}
			var kept []string
			for _, l := range r.Lines[1:] {
				if refKeyword(l) != "STARTTLS" {
					kept = append(kept, l)
				}
			}
			if !reflect.DeepEqual(kept, d.Lines[1:]) && len(kept)+len(d.Lines[1:]) > 0 {
				t.Fatalf("DropExtension(%q) = %q: extensions %q, want %q", raw, out, d.Lines[1:], kept)
			}
		}
	})
}

// refKeyword is the extension keyword of an EHLO or CAPA line as the
// package documents it, written independently: the first word up to a
// space, a tab or a line ending, upper-cased.
func refKeyword(text string) string {
	if i := strings.IndexAny(text, " \t\r\n"); i >= 0 {
		text = text[:i]
	}
	return strings.ToUpper(text)
}

var literalSeeds = []string{
	"{0}", "{5}", "{5}\r\n", "{5}\n", "{5+}", "~{5}", "~{5+}\r\n", "{+}", "{}", "{-1}",
	"{9223372036854775807}", "{9223372036854775808}", "{12345678901234567890}",
	"{00000000000000000005}", "x{5}", "x{5}\r\n", "A1 LOGIN {4}\r\n", "{5}\r", "{5} ",
	"~~{5}", "{{5}", "{1}{2}", "{5}}", "5}", "}", "",
}

var literalRE = regexp.MustCompile(`(~?)\{([0-9]+)(\+?)\}$`)

// FuzzLiteral checks ParseLiteral against a regular expression and
// math/big.
func FuzzLiteral(f *testing.F) {
	for _, s := range literalSeeds {
		f.Add(s)
	}
	maxSize := big.NewInt(math.MaxInt64)
	f.Fuzz(func(t *testing.T, line string) {
		lit, ok := ParseLiteral([]byte(line))
		s := line
		if strings.HasSuffix(s, "\n") {
			s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
		}
		var want Literal
		wantOK := false
		if m := literalRE.FindStringSubmatch(s); m != nil {
			n, _ := new(big.Int).SetString(m[2], 10)
			if n.Cmp(maxSize) <= 0 {
				wantOK = true
				want = Literal{Size: n.Int64(), NonSync: m[3] == "+", Binary: m[1] == "~"}
			}
		}
		if ok != wantOK || lit != want {
			t.Fatalf("ParseLiteral(%q) = %+v, %v; want %+v, %v", line, lit, ok, want, wantOK)
		}
	})
}

var capabilitySeeds = []string{
	"* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n",
	"* capability imap4rev1 StartTLS logindisabled\r\n",
	"* CAPABILITY  IMAP4rev1   STARTTLS  IDLE \r\n",
	"* CAPABILITY STARTTLS",
	"* CAPABILITY\r\n",
	"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n",
	"* OK [CAPABILITY STARTTLS] hi\r\n",
	"* OK [CAPABILITY] hi\r\n",
	"* OK [CAPABILITY  IMAP4rev1  STARTTLS ] hi\r\n",
	"A1 OK [CAPABILITY IMAP4rev2 STARTTLS] done\r\n",
	"* PREAUTH [CAPABILITY IMAP4rev1 LOGINDISABLED] hi\r\n",
	"* OK [CAPABILITY STARTTLS\r\n",
	"* OK [unterminated",
	"* OK text [CAPABILITY STARTTLS]\r\n",
	"+ STARTTLS\r\n",
	"+", "+ go", "*", "A1", "* 5", "* 5 EXISTS",
	"* 5 FETCH (BODY[] {5}\r\n",
	"A1 OK [READ-WRITE] done",
	"* CAPABILITY IMAP4rev1\tSTARTTLS\r\n",
	"* CAPABILITY IMAP4rev1 STARTTLS\r\r\n",
	"* OK [CAPABILITY IMAP4rev1\tSTARTTLS] hi\r\n",
}

// FuzzDropTLSCapabilities checks DropTLSCapabilities against
// ParseResponse and Response.Capabilities: see checkDropTLSCapabilities.
func FuzzDropTLSCapabilities(f *testing.F) {
	for _, s := range capabilitySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkDropTLSCapabilities(t, line)
	})
}

var capaSeeds = []string{
	".STLS\n.\n",
	"STLS\r\n.\r\n",
	"TOP\r\nUSER\r\nSTLS\r\nSASL PLAIN\r\n.\r\n",
	"stls\r\n..STLS\r\nSTLS extra\r\nXSTLS\r\n.\r\n",
	".stls\r\n.\r\n",
	"STLS\r\r\n.\r\n",
	".\r\n",
	"..\r\n.\n",
	"STLS\r\n",
}

// FuzzPOP3Capa checks that a CAPA body with its STLS lines dropped, read
// again as a client reads it (ReadPOP3Multi unstuffs), offers no STLS and
// keeps every other line in order. The seed .STLS\n.\n is the input that
// once slipped through when the filter did not unstuff but the client did.
func FuzzPOP3Capa(f *testing.F) {
	for _, s := range capaSeeds {
		f.Add([]byte(s), uint16(512))
	}
	f.Add([]byte("STLS\r\nTOOLONGLINE\r\nSTLS\r\n.\r\n"), uint16(8))
	f.Fuzz(func(t *testing.T, body []byte, max uint16) {
		m := int(max%1024) + 1
		br := bufio.NewReaderSize(bytes.NewReader(body), 16)
		raw, texts, err := ReadPOP3Multi(func() ([]byte, error) { return ReadLine(br, m) }, 200)
		if err != nil {
			return
		}
		if len(raw) != len(texts)+1 || !MultiEnd(raw[len(raw)-1]) {
			t.Fatalf("ReadPOP3Multi(%q) = %q, %q: want the texts and then the end line", body, raw, texts)
		}
		out := DropSTLS(raw)
		br2 := bufio.NewReaderSize(bytes.NewReader(out), 16)
		raw2, texts2, err := ReadPOP3Multi(func() ([]byte, error) { return ReadLine(br2, m) }, 200)
		if err != nil {
			t.Fatalf("DropSTLS of %q = %q, which does not read back: %v", body, out, err)
		}
		if l, err := ReadLine(br2, m); err != io.EOF {
			t.Fatalf("DropSTLS of %q = %q left %q, %v after the end line", body, out, l, err)
		}
		var kept []string
		for i, text := range texts {
			if refKeyword(text) == "STLS" {
				if !IsSTLSLine(raw[i]) {
					t.Fatalf("IsSTLSLine(%q) = false, but its text %q offers STLS", raw[i], text)
				}
				continue
			}
			kept = append(kept, text)
		}
		for _, text := range texts2 {
			if refKeyword(text) == "STLS" {
				t.Fatalf("DropSTLS of %q = %q still offers STLS as %q", body, out, text)
			}
		}
		if !reflect.DeepEqual(kept, texts2) && len(kept)+len(texts2) > 0 {
			t.Fatalf("DropSTLS of %q = %q: lines %q, want %q", body, out, texts2, kept)
		}
		if !bytes.Equal(raw2[len(raw2)-1], raw[len(raw)-1]) {
			t.Fatalf("DropSTLS changed the end line %q to %q", raw[len(raw)-1], raw2[len(raw2)-1])
		}
	})
}
