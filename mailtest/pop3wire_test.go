package mailtest

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePOP3Command(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    pop3Command
		wantErr bool
	}{
		{name: "bare keyword", line: "stat", want: pop3Command{name: "STAT"}},
		{name: "one argument", line: "RETR 1", want: pop3Command{name: "RETR", args: []string{"1"}}},
		{name: "two arguments", line: "top 2 10", want: pop3Command{name: "TOP", args: []string{"2", "10"}}},
		{name: "PASS keeps spaces", line: "PASS my secret  pw", want: pop3Command{name: "PASS", args: []string{"my secret  pw"}}},
		{name: "PASS empty argument", line: "PASS ", want: pop3Command{name: "PASS", args: []string{""}}},
		{name: "empty line", line: "", wantErr: true},
		{name: "short keyword", line: "XY", wantErr: true},
		{name: "long keyword", line: "RETRX 1", wantErr: true},
		{name: "digit in keyword", line: "RET1", wantErr: true},
		{name: "double space", line: "TOP 1  2", wantErr: true},
		{name: "trailing space", line: "LIST ", wantErr: true},
		{name: "control character", line: "USER a\x00b", wantErr: true},
		{name: "non-ASCII", line: "USER d\xc3\xa9mo", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePOP3Command(tt.line)
			if tt.wantErr {
				assert.Error(t, err, "parse %q = %+v; want an error", tt.line, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{name: "zero", in: "0", want: 0},
		{name: "plain", in: "42", want: 42},
		{name: "leading zeros", in: "007", want: 7},
		{name: "empty", in: "", wantErr: true},
		{name: "sign", in: "+1", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "too long", in: "1234567890", wantErr: true},
		{name: "letters", in: "1a", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNumber(tt.in)
			if tt.wantErr {
				assert.ErrorIs(t, err, errBadNumber)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestReadPOP3Line(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error
	}{
		{name: "CRLF lines", in: "USER a\r\nPASS b\r\n", want: []string{"USER a", "PASS b"}},
		{name: "bare LF accepted", in: "NOOP\n", want: []string{"NOOP"}},
		{name: "longest allowed", in: strings.Repeat("a", pop3MaxLine) + "\r\n", want: []string{strings.Repeat("a", pop3MaxLine)}},
		{name: "too long", in: strings.Repeat("a", pop3MaxLine+1) + "\r\n", wantErr: errLineTooLong},
		{name: "endless", in: strings.Repeat("a", 4096), wantErr: errLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 1024)
			for _, w := range tt.want {
				got, err := readPOP3Line(br)
				require.NoError(t, err)
				assert.Equal(t, w, got)
			}
			if tt.wantErr != nil {
				_, err := readPOP3Line(br)
				assert.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func TestWriteDotStuffed(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "a\r\nb\r\n", want: "a\r\nb\r\n.\r\n"},
		{name: "leading dot", in: ".hidden\r\n", want: "..hidden\r\n.\r\n"},
		{name: "lone dot line", in: "a\r\n.\r\nb\r\n", want: "a\r\n..\r\nb\r\n.\r\n"},
		{name: "dot not at line start", in: "a.b\r\n", want: "a.b\r\n.\r\n"},
		{name: "no final CRLF", in: "a", want: "a\r\n.\r\n"},
		{name: "bare LF", in: "a\n.b\n", want: "a\r\n..b\r\n.\r\n"},
		{name: "empty", in: "", want: ".\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			w := bufio.NewWriter(&b)
			require.NoError(t, writeDotStuffed(w, []byte(tt.in)))
			require.NoError(t, w.Flush())
			assert.Equal(t, tt.want, b.String())
		})
	}
}

func TestTopOf(t *testing.T) {
	msg := []byte("Subject: x\r\nFrom: y\r\n\r\nl1\r\nl2\r\nl3\r\n")
	tests := []struct {
		name string
		msg  []byte
		n    int
		want string
	}{
		{name: "header only", msg: msg, n: 0, want: "Subject: x\r\nFrom: y\r\n\r\n"},
		{name: "two lines", msg: msg, n: 2, want: "Subject: x\r\nFrom: y\r\n\r\nl1\r\nl2\r\n"},
		{name: "more than body", msg: msg, n: 10, want: string(msg)},
		{name: "no body separator", msg: []byte("Subject: x\r\n"), n: 1, want: "Subject: x\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(topOf(tt.msg, tt.n)))
		})
	}
}

func TestNormaliseCRLF(t *testing.T) {
	assert.Equal(t, "a\r\nb\r\nc\r\n\r\n", string(normaliseCRLF([]byte("a\nb\rc\r\n\n"))))
}

// FuzzParsePOP3Command checks that the parser never panics and that a
// parsed command formats back to a line that parses to the same command.
func FuzzParsePOP3Command(f *testing.F) {
	for _, s := range []string{"USER demo@example.com", "PASS a b", "TOP 1 5", "LIST", "capa", "RETR  1", "\x00", "PASS "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parsePOP3Command(line)
		if err != nil {
			return
		}
		again, err := parsePOP3Command(cmd.String())
		if err != nil {
			t.Fatalf("reparse of %q (from %q): %v", cmd.String(), line, err)
		}
		if cmd.String() != again.String() || len(cmd.args) != len(again.args) {
			t.Fatalf("round trip %q: got %+v; want %+v", line, again, cmd)
		}
	})
}

// FuzzDotStuff checks that undoing the dot-stuffing of any message gives
// the message back in CRLF form, and that the terminator appears only at
// the end.
func FuzzDotStuff(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\nb", ".", "..\n.", "\r\r\n\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeDotStuffed(w, msg); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		out := b.Bytes()
		if !bytes.HasSuffix(out, []byte(".\r\n")) {
			t.Fatalf("no terminator: %q", out)
		}
		var back []byte
		lines := bytes.SplitAfter(out[:len(out)-3], []byte("\r\n"))
		for _, l := range lines {
			if bytes.Equal(l, []byte(".\r\n")) {
				t.Fatalf("terminator inside body: %q", out)
			}
			back = append(back, bytes.TrimPrefix(l, []byte("."))...)
		}
		want := normaliseCRLF(msg)
		if len(want) > 0 && !bytes.HasSuffix(want, []byte("\r\n")) {
			want = append(want, '\r', '\n')
		}
		if !bytes.Equal(back, want) {
			t.Fatalf("unstuffed %q; want %q", back, want)
		}
	})
}
