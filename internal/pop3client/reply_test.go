package pop3client

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		text    string
		errText string // -ERR text when the reply is negative
		bad     bool
	}{
		{name: "ok with text", line: "+OK POP3 ready", text: "POP3 ready"},
		{name: "ok bare", line: "+OK", text: ""},
		{name: "ok lower case", line: "+ok fine", text: "fine"},
		{name: "err with text", line: "-ERR no such user", errText: "no such user"},
		{name: "err bare", line: "-ERR", errText: ""},
		{name: "garbage", line: "hello there", bad: true},
		{name: "okay is not ok", line: "+OKAY", bad: true},
		{name: "empty", line: "", bad: true},
		{name: "smtp banner", line: "220 mail.example.com ESMTP", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, err := ParseStatus(tt.line)
			var perr *Error
			switch {
			case tt.bad:
				assert.ErrorIs(t, err, ErrMalformed)
			case errors.As(err, &perr):
				assert.Equal(t, tt.errText, perr.Text)
			default:
				require.NoError(t, err)
				assert.Equal(t, tt.text, text)
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name  string
		input string
		max   int
		want  []string
		err   error
	}{
		{name: "crlf", input: "+OK a\r\n+OK b\r\n", want: []string{"+OK a", "+OK b"}, err: io.EOF},
		{name: "bare lf", input: "+OK a\n", want: []string{"+OK a"}, err: io.EOF},
		{name: "cut short", input: "+OK a", err: io.ErrUnexpectedEOF},
		{name: "too long", input: strings.Repeat("x", 40) + "\r\n", max: 32, err: ErrLineTooLong},
		{name: "exactly max", input: strings.Repeat("x", 30) + "\r\n", max: 32, want: []string{strings.Repeat("x", 30)}, err: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.input), tt.max)
			var got []string
			var err error
			for {
				var line string
				if line, err = r.ReadLine(); err != nil {
					break
				}
				got = append(got, line)
			}
			assert.Equal(t, tt.want, got)
			assert.ErrorIs(t, err, tt.err)
		})
	}
}

func TestReadLines(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
		err   error
	}{
		{name: "capa", input: "TOP\r\nUSER\r\nSTLS\r\n.\r\n", want: []string{"TOP", "USER", "STLS"}},
		{name: "empty body", input: ".\r\n", want: nil},
		{name: "dot stuffed", input: "..hidden\r\n...\r\n..\r\n.\r\n", want: []string{".hidden", "..", "."}},
		{name: "no terminator", input: "TOP\r\n", err: io.ErrUnexpectedEOF}, // cut short inside the body
		{name: "terminator with space is data", input: ". \r\n.\r\n", want: []string{" "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewReader(strings.NewReader(tt.input), 0).ReadLines()
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestReadLinesBounded(t *testing.T) {
	input := strings.Repeat("x\r\n", MaxLines+1) + ".\r\n"
	_, err := NewReader(strings.NewReader(input), 0).ReadLines()
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		count int
		size  int64
		bad   bool
	}{
		{name: "plain", text: "2 320", count: 2, size: 320},
		{name: "trailing text", text: "0 0 empty maildrop", count: 0, size: 0},
		{name: "one field", text: "2", bad: true},
		{name: "negative", text: "-1 5", bad: true},
		{name: "words", text: "two hundred", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, size, err := parseStat(tt.text)
			if tt.bad {
				assert.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.count, n)
			assert.Equal(t, tt.size, size)
		})
	}
}
