package mailwire

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestPOP3Status(t *testing.T) {
	tests := []struct {
		line string
		want int
	}{
		{"+OK\r\n", 1},
		{"+OK", 1},
		{"+OK\n", 1},
		{"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n", 1},
		{"+ok ready\r\n", 1},
		{"+Ok\r\n", 1},
		{"+OK \r\n", 1},
		{"-ERR\r\n", -1},
		{"-ERR no such message\r\n", -1},
		{"-err\r\n", -1},
		{"-ERR", -1},
		{"+OKAY\r\n", 0},
		{"+OK\tx\r\n", 0},
		{"+OK\r", 0}, // a lone CR is no line ending
		{"-ERROR\r\n", 0},
		{"+ OK\r\n", 0},
		{" +OK\r\n", 0},
		{"+O\r\n", 0},
		{"+\r\n", 0},
		{"+ \r\n", 0}, // an RFC 1734 continuation is neither
		{"OK\r\n", 0},
		{"ERR\r\n", 0},
		{"", 0},
		{"\r\n", 0},
	}
	for _, tt := range tests {
		if got := POP3Status([]byte(tt.line)); got != tt.want {
			t.Errorf("POP3Status(%q) = %d, want %d", tt.line, got, tt.want)
		}
	}
}

func TestMultiEndAndUnstuff(t *testing.T) {
	tests := []struct {
		line    string
		end     bool
		unstuff string // for lines that are not the end
	}{
		{".\r\n", true, ""},
		{".\n", true, ""},
		{".", true, ""},
		{"..\r\n", false, "."},
		{"...\r\n", false, ".."},
		{". \r\n", false, " "},
		{".\r", false, "\r"},
		{".\r\r\n", false, "\r"},
		{".STLS\r\n", false, "STLS"},
		{"..STLS\r\n", false, ".STLS"},
		{"STLS\r\n", false, "STLS"},
		{"TOP\n", false, "TOP"},
		{"a.b\r\n", false, "a.b"},
		{"\r\n", false, ""},
		{"", false, ""},
		{" .\r\n", false, " ."},
	}
	for _, tt := range tests {
		if got := MultiEnd([]byte(tt.line)); got != tt.end {
			t.Errorf("MultiEnd(%q) = %v, want %v", tt.line, got, tt.end)
		}
		if tt.end {
			continue
		}
		if got := string(Unstuff([]byte(tt.line))); got != tt.unstuff {
			t.Errorf("Unstuff(%q) = %q, want %q", tt.line, got, tt.unstuff)
		}
	}
}

func TestIsSTLSLine(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		{"STLS\r\n", true},
		{"STLS\n", true},
		{"STLS", true},
		{"stls\r\n", true},
		{"StLs\r\n", true},
		{".STLS\r\n", true}, // dot-stuffed: a client unstuffs it to STLS
		{".STLS\n", true},
		{".stls", true},
		{"STLS extra\r\n", true}, // the keyword decides, not the whole line
		{"STLS\textra\r\n", true},
		{"STLS\r\r\n", true},
		{"..STLS\r\n", false}, // unstuffs to ".STLS"
		{"XSTLS\r\n", false},
		{"STLSX\r\n", false},
		{" STLS\r\n", false},
		{"X-STLS\r\n", false},
		{"SASL STLS\r\n", false},
		{"USER\r\n", false},
		{".\r\n", false},
		{".", false},
		{"", false},
		{"\r\n", false},
	}
	for _, tt := range tests {
		if got := IsSTLSLine([]byte(tt.line)); got != tt.want {
			t.Errorf("IsSTLSLine(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestReadPOP3Multi(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		lines    []string
		end      error
		maxLines int
		raw      []string
		texts    []string
		err      error
	}{
		{name: "capa", lines: []string{"TOP\r\n", "USER\r\n", "STLS\r\n", ".\r\n"}, maxLines: 10,
			raw: []string{"TOP\r\n", "USER\r\n", "STLS\r\n", ".\r\n"}, texts: []string{"TOP", "USER", "STLS"}},
		{name: "empty body", lines: []string{".\r\n"}, maxLines: 10, raw: []string{".\r\n"}},
		{name: "stuffed", lines: []string{"..\r\n", ".STLS\n", "...x\r\n", ".\n"}, maxLines: 10,
			raw: []string{"..\r\n", ".STLS\n", "...x\r\n", ".\n"}, texts: []string{".", "STLS", "..x"}},
		{name: "empty line", lines: []string{"\r\n", ".\r\n"}, maxLines: 10, raw: []string{"\r\n", ".\r\n"}, texts: []string{""}},
		{name: "stops at the end", lines: []string{"A\r\n", ".\r\n", "B\r\n"}, maxLines: 10,
			raw: []string{"A\r\n", ".\r\n"}, texts: []string{"A"}},
		{name: "exactly maxLines", lines: []string{"A\r\n", ".\r\n"}, maxLines: 2, raw: []string{"A\r\n", ".\r\n"}, texts: []string{"A"}},
		{name: "more than maxLines", lines: []string{"A\r\n", "B\r\n", ".\r\n"}, maxLines: 2, err: ErrMalformed},
		{name: "eof at once", maxLines: 10, err: io.ErrUnexpectedEOF},
		{name: "eof mid body", lines: []string{"TOP\r\n"}, maxLines: 10, err: io.ErrUnexpectedEOF},
		{name: "reader error", lines: []string{"TOP\r\n"}, end: errBoom, maxLines: 10, err: errBoom},
		{name: "line too long", lines: []string{"TOP\r\n"}, end: ErrLineTooLong, maxLines: 10, err: ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, texts, err := ReadPOP3Multi(lines(tt.end, tt.lines...), tt.maxLines)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %v, want %v", err, tt.err)
				}
				if tt.err == io.ErrUnexpectedEOF && errors.Is(err, io.EOF) {
					t.Fatalf("a body cut short is %v, which passes for a clean EOF", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotRaw []string
			for _, l := range raw {
				gotRaw = append(gotRaw, string(l))
			}
			if !reflect.DeepEqual(gotRaw, tt.raw) || !reflect.DeepEqual(texts, tt.texts) {
				t.Fatalf("got %q, %q; want %q, %q", gotRaw, texts, tt.raw, tt.texts)
			}
		})
	}
}

func TestDropSTLS(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"middle", "TOP\r\nSTLS\r\nUSER\r\n.\r\n", "TOP\r\nUSER\r\n.\r\n"},
		{"only", "STLS\r\n.\r\n", ".\r\n"},
		{"dot-stuffed", ".STLS\n.\n", ".\n"},
		{"dot-stuffed lower case crlf", ".stls\r\n.\r\n", ".\r\n"},
		{"with parameters", "STLS extra\r\nTOP\r\n.\r\n", "TOP\r\n.\r\n"},
		{"mixed case and twice", "stls\r\nTOP\r\nStLs\r\n.\r\n", "TOP\r\n.\r\n"},
		{"similar kept", "XSTLS\r\nSTLSX\r\n..STLS\r\nSASL STLS\r\n.\r\n", "XSTLS\r\nSTLSX\r\n..STLS\r\nSASL STLS\r\n.\r\n"},
		{"nothing to drop", "TOP\r\nUSER\r\n.\r\n", "TOP\r\nUSER\r\n.\r\n"},
		{"end only", ".\r\n", ".\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.body))
			raw, _, err := ReadPOP3Multi(func() ([]byte, error) { return ReadLine(br, 512) }, 100)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(DropSTLS(raw)); got != tt.want {
				t.Fatalf("DropSTLS = %q, want %q", got, tt.want)
			}
		})
	}
	if got := DropSTLS(nil); len(got) != 0 {
		t.Errorf("DropSTLS(nil) = %q", got)
	}
}
