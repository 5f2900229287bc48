package mailwire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readOutcome describes one ReadLine call for the table tests: the line it
// returned, or which error it gave.
func readOutcome(line []byte, err error) string {
	switch {
	case err == nil:
		return "line " + string(line)
	case Resynced(err):
		return "too long, resynced"
	case errors.Is(err, ErrLineTooLong):
		return "too long, out of step"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	return "error " + err.Error()
}

// TestReadLineCases reads every case to the end (or to the first error
// after which the stream cannot go on) with several buffer sizes and with
// a reader that yields one byte per Read.
func TestReadLineCases(t *testing.T) {
	long := strings.Repeat("x", 700)
	tests := []struct {
		name string
		in   string
		max  int
		want []string // outcome of each ReadLine call, in order
	}{
		{"empty input", "", 512, []string{"EOF"}},
		{"crlf lines", "EHLO a\r\nQUIT\r\n", 512, []string{"line EHLO a\r\n", "line QUIT\r\n", "EOF"}},
		{"bare lf", "NOOP\nQUIT\n", 512, []string{"line NOOP\n", "line QUIT\n", "EOF"}},
		{"mixed endings", "a\r\nb\nc\r\n", 512, []string{"line a\r\n", "line b\n", "line c\r\n", "EOF"}},
		{"bare cr is data", "a\rb\r\n", 512, []string{"line a\rb\r\n", "EOF"}},
		{"cr before crlf", "a\r\r\n", 512, []string{"line a\r\r\n", "EOF"}},
		{"empty lines", "\r\n\n", 512, []string{"line \r\n", "line \n", "EOF"}},
		{"nul bytes", "a\x00b\n", 512, []string{"line a\x00b\n", "EOF"}},
		{"eof mid-line", "QUIT", 512, []string{"unexpected EOF"}},
		{"eof mid second line", "NOOP\r\nQU", 512, []string{"line NOOP\r\n", "unexpected EOF"}},
		{"eof after cr", "NOOP\r", 512, []string{"unexpected EOF"}},
		{"exactly max with lf", "abcd\n", 5, []string{"line abcd\n", "EOF"}},
		{"exactly max with crlf", "abc\r\n", 5, []string{"line abc\r\n", "EOF"}},
		{"one over max", "abcde\nok\n", 5, []string{"too long, resynced", "line ok\n", "EOF"}},
		{"crlf pushes over max", "abcd\r\nok\r\n", 5, []string{"too long, resynced", "line ok\r\n", "EOF"}},
		{"over max then partial", "abcdef\nQU", 5, []string{"too long, resynced", "unexpected EOF"}},
		{"two long lines", "abcdef\nghijkl\nok\n", 5, []string{"too long, resynced", "too long, resynced", "line ok\n", "EOF"}},
		{"long line resyncs", long + "\r\nQUIT\r\n", 512, []string{"too long, resynced", "line QUIT\r\n", "EOF"}},
		{"long line at eof", long, 512, []string{"too long, out of step"}},
		{"partial line of exactly max", "abcde", 5, []string{"unexpected EOF"}},
		{"partial line over max", "abcdef", 5, []string{"too long, out of step"}},
		{"line longer than buffer within max", long + "\n", 1024, []string{"line " + long + "\n", "EOF"}},
		{"max zero means one", "\n\nx\n", 0, []string{"line \n", "line \n", "too long, resynced", "EOF"}},
		{"negative max means one", "\na\n", -7, []string{"line \n", "too long, resynced", "EOF"}},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) *bufio.Reader
	}{
		{"buf16", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 16) }},
		{"buf4096", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 4096) }},
		{"onebyte", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(iotest.OneByteReader(r), 16) }},
		{"dataerr", func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(iotest.DataErrReader(r), 32) }},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				r := rd.wrap(strings.NewReader(tt.in))
				for i, want := range tt.want {
					line, err := ReadLine(r, tt.max)
					if got := readOutcome(line, err); got != want {
						t.Fatalf("read %d: got %q, want %q", i, got, want)
					}
					if err != nil && line != nil {
						t.Fatalf("read %d: error %v with line %q", i, err, line)
					}
				}
			})
		}
	}
}

// TestReadLineOutOfStep: an over-long line whose line feed comes only after
// more than 64 KiB cannot be resynchronised; one whose line feed comes
// within it can.
func TestReadLineOutOfStep(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want string
	}{
		{"within the discard bound", 60 << 10, "too long, resynced"},
		{"beyond the discard bound", 200 << 10, "too long, out of step"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Repeat("y", tt.n) + "\nNEXT\n"
			r := bufio.NewReaderSize(strings.NewReader(in), 4096)
			line, err := ReadLine(r, 512)
			if got := readOutcome(line, err); got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
			if !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("error %v does not wrap ErrLineTooLong", err)
			}
			if Resynced(err) {
				line, err = ReadLine(r, 512)
				if err != nil || string(line) != "NEXT\n" {
					t.Fatalf("after resync: %q, %v; want NEXT", line, err)
				}
			}
		})
	}
}

// TestReadLineOverlongAtEOF: input that ends inside an over-long line has
// been read, so the error must not pass for a clean end of input
// (errors.Is io.EOF), which ReadLine reserves for "nothing was read";
// callers such as ReadReply and the monitor's greeting check classify by
// errors.Is(err, io.EOF) and would report "closed" instead of "too long".
func TestReadLineOverlongAtEOF(t *testing.T) {
	for _, in := range []string{"abcdef", strings.Repeat("z", 5000)} {
		r := bufio.NewReaderSize(strings.NewReader(in), 16)
		_, err := ReadLine(r, 5)
		if !errors.Is(err, ErrLineTooLong) || Resynced(err) {
			t.Fatalf("%d bytes without LF: %v, want an out-of-step ErrLineTooLong", len(in), err)
		}
		if errors.Is(err, io.EOF) {
			t.Errorf("%d bytes without LF, max 5: error %q satisfies errors.Is(err, io.EOF)", len(in), err)
		}
		// ReadReply turns a mid-reply io.EOF into a bare io.ErrUnexpectedEOF,
		// so the over-long line is lost there too.
		r = bufio.NewReaderSize(strings.NewReader("250-a\r\n250 "+in), 16)
		_, err = ReadReply(func() ([]byte, error) { return ReadLine(r, 8) }, 10)
		if !errors.Is(err, ErrLineTooLong) {
			t.Errorf("ReadReply over an over-long last line at EOF: %v, want ErrLineTooLong", err)
		}
	}
}

func TestResynced(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"eof", io.EOF, false},
		{"bare ErrLineTooLong", ErrLineTooLong, true},
		{"out of step", errors.Join(ErrLineTooLong, errNoLineEnd), false},
		{"other", errors.New("line too long"), false},
	}
	for _, tt := range tests {
		if got := Resynced(tt.err); got != tt.want {
			t.Errorf("%s: Resynced(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestTrimEOL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{"a\r\n", "a"},
		{"a\n", "a"},
		{"a\r", "a\r"},
		{"a\n\n", "a\n"},
		{"a\r\r\n", "a\r"},
		{"\r\n", ""},
		{"\n", ""},
		{"\r", "\r"},
		{"a\n\r", "a\n\r"},
	}
	for _, tt := range tests {
		if got := string(TrimEOL([]byte(tt.in))); got != tt.want {
			t.Errorf("TrimEOL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWord(t *testing.T) {
	tests := []struct {
		in   string
		i    int
		want string
		end  int
	}{
		{"", 0, "", 0},
		{"A1 NOOP\r\n", 0, "A1", 2},
		{"A1 NOOP\r\n", 3, "NOOP", 7},
		{"A1 NOOP\r\n", 2, "", 2},
		{"A1\tNOOP", 0, "A1\tNOOP", 7},
		{"word", 0, "word", 4},
		{"a\rb", 0, "a", 1},
		{"a\nb", 0, "a", 1},
		{"abc", 3, "", 3},
	}
	for _, tt := range tests {
		w, end := Word([]byte(tt.in), tt.i)
		if string(w) != tt.want || end != tt.end {
			t.Errorf("Word(%q, %d) = %q, %d; want %q, %d", tt.in, tt.i, w, end, tt.want, tt.end)
		}
	}
}

func TestReplaceSpan(t *testing.T) {
	tests := []struct {
		in     string
		i, j   int
		repl   string
		want   string
		reason string
	}{
		{"* OK [X] hi", 5, 9, "", "* OK hi", "remove"},
		{"abc", 0, 0, "x", "xabc", "insert at start"},
		{"abc", 3, 3, "x", "abcx", "insert at end"},
		{"abc", 1, 2, "XYZ", "aXYZc", "grow"},
		{"abc", 0, 3, "", "", "remove all"},
	}
	for _, tt := range tests {
		in := []byte(tt.in)
		got := ReplaceSpan(in, tt.i, tt.j, tt.repl)
		if string(got) != tt.want {
			t.Errorf("%s: ReplaceSpan(%q, %d, %d, %q) = %q, want %q", tt.reason, tt.in, tt.i, tt.j, tt.repl, got, tt.want)
		}
		if string(in) != tt.in {
			t.Errorf("%s: ReplaceSpan changed its input to %q", tt.reason, in)
		}
	}
}

func TestKeyword(t *testing.T) {
	tests := []struct {
		text string
		want string
	}{
		{"", ""},
		{"STARTTLS", "STARTTLS"},
		{"starttls", "STARTTLS"},
		{"StartTLS\r\n", "STARTTLS"},
		{"SIZE 10240000", "SIZE"},
		{"AUTH\tPLAIN", "AUTH"},
		{" STARTTLS", ""},
		{"8BITMIME\n", "8BITMIME"},
		{"X-STARTTLS", "X-STARTTLS"},
		{"STARTTLS\rX", "STARTTLS"},
	}
	for _, tt := range tests {
		if got := Keyword([]byte(tt.text)); got != tt.want {
			t.Errorf("Keyword(%q) = %q, want %q", tt.text, got, tt.want)
		}
		for _, kw := range []string{tt.want, "STARTTLS", "SIZE"} {
			if got, want := KeywordIs([]byte(tt.text), kw), kw == tt.want; got != want {
				t.Errorf("KeywordIs(%q, %q) = %v, want %v", tt.text, kw, got, want)
			}
		}
	}
}

func TestHasKeyword(t *testing.T) {
	lines := []string{"mail.example.org", "PIPELINING", "SIZE 1000", "starttls", "XSTLS"}
	for kw, want := range map[string]bool{
		"STARTTLS": true, "size": true, "PIPELINING": true, "STLS": false,
		"MAIL.EXAMPLE.ORG": true, "8BITMIME": false, "": false,
	} {
		if got := HasKeyword(lines, kw); got != want {
			t.Errorf("HasKeyword(%q) = %v, want %v", kw, got, want)
		}
	}
	if HasKeyword(nil, "STARTTLS") {
		t.Error("HasKeyword(nil) = true")
	}
	if !HasKeyword([]string{""}, "") {
		t.Error(`HasKeyword([""], "") = false: the empty line's keyword is ""`)
	}
}
