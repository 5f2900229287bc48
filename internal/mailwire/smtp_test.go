package mailwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestReplyHead(t *testing.T) {
	tests := []struct {
		head string
		code int
		more bool
	}{
		{"", -1, false},
		{"2", -1, false},
		{"25", -1, false},
		{"250", 250, false},
		{"250 ", 250, false},
		{"250-", 250, true},
		{"250\r", 250, false},
		{"250\n", 250, false},
		{"220-", 220, true},
		{"199-", 199, true}, // ReplyHead does not judge the range
		{"600 ", 600, false},
		{"000-", 0, true},
		{"25a-", -1, false},
		{"a50-", -1, false},
		{" 250", -1, false},
		{"-250", -1, false},
		{"2500", 2500 / 10, false},
		{"250-PIPELINING", 250, true},
	}
	for _, tt := range tests {
		code, more := ReplyHead([]byte(tt.head))
		if code != tt.code || more != tt.more {
			t.Errorf("ReplyHead(%q) = %d, %v; want %d, %v", tt.head, code, more, tt.code, tt.more)
		}
	}
}

func TestParseReplyLine(t *testing.T) {
	tests := []struct {
		line string
		code int
		more bool
		text string
		bad  bool
	}{
		{line: "250 OK\r\n", code: 250, text: "OK"},
		{line: "250 OK", code: 250, text: "OK"},
		{line: "250 OK\n", code: 250, text: "OK"},
		{line: "250-PIPELINING\r\n", code: 250, more: true, text: "PIPELINING"},
		{line: "220 mail.example.org ESMTP ready\r\n", code: 220, text: "mail.example.org ESMTP ready"},
		{line: "250\r\n", code: 250, text: ""},
		{line: "250", code: 250, text: ""},
		{line: "250\n", code: 250, text: ""},
		{line: "250-\r\n", code: 250, more: true, text: ""},
		{line: "250 \r\n", code: 250, text: ""},
		{line: "250  two spaces\r\n", code: 250, text: " two spaces"},
		{line: "250 a\rb\r\n", code: 250, text: "a\rb"},
		{line: "250 a\r\r\n", code: 250, text: "a\r"},
		{line: "200 lowest\r\n", code: 200, text: "lowest"},
		{line: "599 highest\r\n", code: 599, text: "highest"},
		{line: "554 5.7.1 rejected\r\n", code: 554, text: "5.7.1 rejected"},
		{line: "421-going away\r\n", code: 421, more: true, text: "going away"},
		// Out of range: SMTP has no 1yz or 6yz replies.
		{line: "199 x\r\n", bad: true},
		{line: "100-x\r\n", bad: true},
		{line: "600 x\r\n", bad: true},
		{line: "999\r\n", bad: true},
		{line: "099 x\r\n", bad: true},
		{line: "000\r\n", bad: true},
		// No code.
		{line: "", bad: true},
		{line: "\r\n", bad: true},
		{line: "25\r\n", bad: true},
		{line: "2", bad: true},
		{line: "abc def\r\n", bad: true},
		{line: " 250 x\r\n", bad: true},
		{line: "25O OK\r\n", bad: true},
		// Bad separator.
		{line: "2500 x\r\n", bad: true},
		{line: "250x\r\n", bad: true},
		{line: "250\tx\r\n", bad: true},
		{line: "250\r", bad: true}, // a lone CR is no line ending
		{line: "250+more\r\n", bad: true},
	}
	for _, tt := range tests {
		code, more, text, err := ParseReplyLine([]byte(tt.line))
		if tt.bad {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseReplyLine(%q) = %d, %v, %q, %v; want ErrMalformed", tt.line, code, more, text, err)
			}
			continue
		}
		if err != nil || code != tt.code || more != tt.more || string(text) != tt.text {
			t.Errorf("ParseReplyLine(%q) = %d, %v, %q, %v; want %d, %v, %q", tt.line, code, more, text, err, tt.code, tt.more, tt.text)
		}
		// The streaming reader's view of the same line.
		head := []byte(tt.line)
		if len(head) > 4 {
			head = head[:4]
		}
		if hc, hm := ReplyHead(head); hc != code || hm != more {
			t.Errorf("ReplyHead(%q) = %d, %v; ParseReplyLine says %d, %v", head, hc, hm, code, more)
		}
	}
}

// lines returns a next function for ReadReply that yields ls and then err
// (io.EOF if nil).
func lines(err error, ls ...string) func() ([]byte, error) {
	if err == nil {
		err = io.EOF
	}
	return func() ([]byte, error) {
		if len(ls) == 0 {
			return nil, err
		}
		l := ls[0]
		ls = ls[1:]
		return []byte(l), nil
	}
}

func TestReadReply(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		lines    []string
		end      error // after the lines; io.EOF if nil
		maxLines int
		code     int
		texts    []string
		err      error
	}{
		{name: "greeting", lines: []string{"220 mx ESMTP\r\n"}, maxLines: 10, code: 220, texts: []string{"mx ESMTP"}},
		{name: "ehlo", lines: []string{"250-mx\r\n", "250-PIPELINING\r\n", "250-STARTTLS\r\n", "250 8BITMIME\r\n"},
			maxLines: 10, code: 250, texts: []string{"mx", "PIPELINING", "STARTTLS", "8BITMIME"}},
		{name: "bare code", lines: []string{"250\r\n"}, maxLines: 10, code: 250, texts: []string{""}},
		{name: "bare code ends a continuation", lines: []string{"250-mx\r\n", "250\r\n"}, maxLines: 10, code: 250, texts: []string{"mx", ""}},
		{name: "empty continuation text", lines: []string{"250-\r\n", "250 \r\n"}, maxLines: 10, code: 250, texts: []string{"", ""}},
		{name: "bare lf", lines: []string{"250-a\n", "250 b\n"}, maxLines: 10, code: 250, texts: []string{"a", "b"}},
		{name: "stops at the last line", lines: []string{"250 a\r\n", "250 b\r\n"}, maxLines: 10, code: 250, texts: []string{"a"}},
		{name: "exactly maxLines", lines: []string{"250-a\r\n", "250 b\r\n"}, maxLines: 2, code: 250, texts: []string{"a", "b"}},
		{name: "more than maxLines", lines: []string{"250-a\r\n", "250-b\r\n", "250 c\r\n"}, maxLines: 2, err: ErrMalformed},
		{name: "mixed codes", lines: []string{"250-a\r\n", "251 b\r\n"}, maxLines: 10, err: ErrMalformed},
		{name: "mixed codes in a 5yz reply", lines: []string{"550-a\r\n", "250 b\r\n"}, maxLines: 10, err: ErrMalformed},
		{name: "1yz", lines: []string{"150 x\r\n"}, maxLines: 10, err: ErrMalformed},
		{name: "6yz", lines: []string{"650 x\r\n"}, maxLines: 10, err: ErrMalformed},
		{name: "1yz after a good line", lines: []string{"250-a\r\n", "150 x\r\n"}, maxLines: 10, err: ErrMalformed},
		{name: "garbage", lines: []string{"hello\r\n"}, maxLines: 10, err: ErrMalformed},
		{name: "continuation then eof", lines: []string{"250-a\r\n"}, maxLines: 10, err: io.ErrUnexpectedEOF},
		{name: "eof before anything", maxLines: 10, err: io.EOF},
		{name: "reader error first", end: errBoom, maxLines: 10, err: errBoom},
		{name: "reader error mid-reply", lines: []string{"250-a\r\n"}, end: errBoom, maxLines: 10, err: errBoom},
		{name: "line too long mid-reply", lines: []string{"250-a\r\n"}, end: ErrLineTooLong, maxLines: 10, err: ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadReply(lines(tt.end, tt.lines...), tt.maxLines)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %+v, %v; want error %v", r, err, tt.err)
				}
				if tt.err == io.ErrUnexpectedEOF && errors.Is(err, io.EOF) {
					t.Fatalf("mid-reply end of input is %v, which a caller would take for a clean EOF", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadReply: %v", err)
			}
			if r.Code != tt.code || !reflect.DeepEqual(r.Lines, tt.texts) {
				t.Fatalf("got %d %q, want %d %q", r.Code, r.Lines, tt.code, tt.texts)
			}
			var raw string
			for _, l := range tt.lines[:len(tt.texts)] {
				raw += l
			}
			if string(r.Raw) != raw {
				t.Fatalf("Raw = %q, want %q", r.Raw, raw)
			}
		})
	}
}

// TestReadReplyOverReadLine runs ReadReply the way its callers do, over
// ReadLine, including an over-long line.
func TestReadReplyOverReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("250-mx\r\n250 "+strings.Repeat("x", 600)+"\r\n221 bye\r\n"), 16)
	next := func() ([]byte, error) { return ReadLine(br, 512) }
	if _, err := ReadReply(next, 10); !Resynced(err) {
		t.Fatalf("over-long reply line: %v, want a resynced ErrLineTooLong", err)
	}
	r, err := ReadReply(next, 10)
	if err != nil || r.Code != 221 || r.String() != "221 bye" {
		t.Fatalf("next reply: %v, %v", r, err)
	}
	if _, err := ReadReply(next, 10); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		name  string
		raw   string
		code  int
		texts []string
		err   error
	}{
		{name: "one line", raw: "250 OK\r\n", code: 250, texts: []string{"OK"}},
		{name: "no final line ending", raw: "250-a\r\n250 b", code: 250, texts: []string{"a", "b"}},
		{name: "bare lf", raw: "250-a\n250 b\n", code: 250, texts: []string{"a", "b"}},
		{name: "bare 250", raw: "250", code: 250, texts: []string{""}},
		{name: "empty", raw: "", err: io.EOF},
		{name: "continuation then eof", raw: "250-a\r\n", err: io.ErrUnexpectedEOF},
		{name: "continuation without line ending", raw: "250-a", err: io.ErrUnexpectedEOF},
		{name: "data after the reply", raw: "250 a\r\n250 b\r\n", err: ErrMalformed},
		{name: "blank line after the reply", raw: "250 a\r\n\r\n", err: ErrMalformed},
		{name: "mixed codes", raw: "250-a\r\n550 b\r\n", err: ErrMalformed},
		{name: "too many lines", raw: "250-a\r\n250-b\r\n250-c\r\n250 d\r\n", err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReply([]byte(tt.raw), 3)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %+v, %v; want error %v", r, err, tt.err)
				}
				return
			}
			if err != nil || r.Code != tt.code || !reflect.DeepEqual(r.Lines, tt.texts) || string(r.Raw) != tt.raw {
				t.Fatalf("got %+v, %v; want %d %q", r, err, tt.code, tt.texts)
			}
		})
	}
}

func TestReplyRender(t *testing.T) {
	tests := []struct {
		r    Reply
		want string
	}{
		{Reply{Code: 250, Lines: []string{"OK"}}, "250 OK\r\n"},
		{Reply{Code: 250, Lines: []string{"mx", "PIPELINING", "8BITMIME"}}, "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"},
		{Reply{Code: 250, Lines: []string{""}}, "250 \r\n"},
		{Reply{Code: 554, Lines: []string{"a", ""}}, "554-a\r\n554 \r\n"},
		{Reply{Code: 250}, ""},
		{Reply{Code: 7, Lines: []string{"x"}}, "007 x\r\n"},
	}
	for _, tt := range tests {
		if got := string(tt.r.Render()); got != tt.want {
			t.Errorf("Render(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
	// Render does not copy Raw: it writes the reply anew, CRLF everywhere.
	r, err := ParseReply([]byte("250-a\n250 b"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.Render()); got != "250-a\r\n250 b\r\n" {
		t.Errorf("Render of a bare-LF reply = %q", got)
	}
}

func TestReplyKeywordsAndString(t *testing.T) {
	tests := []struct {
		r        Reply
		keywords []string
		str      string
	}{
		{Reply{Code: 250, Lines: []string{"mx", "PIPELINING", "SIZE 100"}}, []string{"PIPELINING", "SIZE 100"}, "250 mx / PIPELINING / SIZE 100"},
		{Reply{Code: 250, Lines: []string{"mx"}}, nil, "250 mx"},
		{Reply{Code: 250, Lines: []string{""}}, nil, "250 "},
		{Reply{Code: 221}, nil, "221"},
		{Reply{Code: 550, Lines: []string{"no", "really"}}, []string{"really"}, "550 no / really"},
	}
	for _, tt := range tests {
		kw := tt.r.Keywords()
		if !reflect.DeepEqual(kw, tt.keywords) {
			t.Errorf("Keywords(%+v) = %q, want %q", tt.r, kw, tt.keywords)
		}
		if len(kw) > 0 {
			kw[0] = "CHANGED"
			if tt.r.Lines[1] == "CHANGED" {
				t.Errorf("Keywords shares its slice with Lines")
			}
		}
		if got := tt.r.String(); got != tt.str {
			t.Errorf("String(%+v) = %q, want %q", tt.r, got, tt.str)
		}
	}
}

func TestReplyDropExtension(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		kw   string
		want string // "" means Raw unchanged
	}{
		{name: "middle", raw: "250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n", kw: "STARTTLS",
			want: "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"},
		{name: "last", raw: "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", kw: "STARTTLS",
			want: "250-mx\r\n250 PIPELINING\r\n"},
		{name: "only extension", raw: "250-mx\r\n250 STARTTLS\r\n", kw: "STARTTLS", want: "250 mx\r\n"},
		{name: "lower case", raw: "250-mx\r\n250-starttls\r\n250 SIZE\r\n", kw: "STARTTLS", want: "250-mx\r\n250 SIZE\r\n"},
		{name: "mixed case keyword asked", raw: "250-mx\r\n250-STARTTLS\r\n250 SIZE\r\n", kw: "StartTLS", want: "250-mx\r\n250 SIZE\r\n"},
		{name: "with parameters", raw: "250-mx\r\n250-STARTTLS now\r\n250 SIZE\r\n", kw: "STARTTLS", want: "250-mx\r\n250 SIZE\r\n"},
		{name: "tab after keyword", raw: "250-mx\r\n250-STARTTLS\tx\r\n250 SIZE\r\n", kw: "STARTTLS", want: "250-mx\r\n250 SIZE\r\n"},
		{name: "twice", raw: "250-mx\r\n250-STARTTLS\r\n250-SIZE\r\n250 STARTTLS\r\n", kw: "STARTTLS", want: "250-mx\r\n250 SIZE\r\n"},
		{name: "bare lf rendered as crlf", raw: "250-mx\n250-STARTTLS\n250 SIZE\n", kw: "STARTTLS", want: "250-mx\r\n250 SIZE\r\n"},
		{name: "first line is kept", raw: "250-STARTTLS\r\n250 STARTTLS\r\n", kw: "STARTTLS", want: "250 STARTTLS\r\n"},
		{name: "similar keyword kept", raw: "250-mx\r\n250-XSTARTTLS\r\n250 STARTTLSX\r\n", kw: "STARTTLS"},
		{name: "keyword inside the text kept", raw: "250-mx\r\n250 AUTH STARTTLS\r\n", kw: "STARTTLS"},
		{name: "leading space is no keyword", raw: "250-mx\r\n250  STARTTLS\r\n", kw: "STARTTLS"},
		{name: "not offered", raw: "250-mx\r\n250 SIZE\r\n", kw: "STARTTLS"},
		{name: "one line", raw: "250 STARTTLS\r\n", kw: "STARTTLS"},
		{name: "not 250", raw: "550-mx\r\n550 STARTTLS\r\n", kw: "STARTTLS"},
		{name: "HELO-style 250 with the name only", raw: "250 mx\r\n", kw: "STARTTLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReply([]byte(tt.raw), 100)
			if err != nil {
				t.Fatal(err)
			}
			lines := append([]string(nil), r.Lines...)
			got := r.DropExtension(tt.kw)
			want := tt.want
			if want == "" {
				want = tt.raw
				if &got[0] != &r.Raw[0] {
					t.Errorf("DropExtension copied Raw although it had nothing to drop")
				}
			}
			if string(got) != want {
				t.Errorf("DropExtension(%q) = %q, want %q", tt.kw, got, want)
			}
			if !reflect.DeepEqual(r.Lines, lines) || string(r.Raw) != tt.raw {
				t.Errorf("DropExtension changed its reply: %+v", r)
			}
		})
	}
}

func TestSplitVerb(t *testing.T) {
	tests := []struct {
		line      string
		verb, arg string
	}{
		{"MAIL FROM:<a@b>\r\n", "MAIL", "FROM:<a@b>"},
		{"MAIL FROM:<a@b>", "MAIL", "FROM:<a@b>"},
		{"MAIL FROM:<a@b>\n", "MAIL", "FROM:<a@b>"},
		{"RCPT TO:<a@b> NOTIFY=NEVER\r\n", "RCPT", "TO:<a@b> NOTIFY=NEVER"},
		{"DATA\r\n", "DATA", ""},
		{"DATA", "DATA", ""},
		{"data\r\n", "data", ""},
		{"DATA \r\n", "DATA", ""},
		{"EHLO  client.example \t\r\n", "EHLO", "client.example"},
		{"EHLO \tclient.example\r\n", "EHLO", "client.example"},
		{"BDAT 100 LAST\r\n", "BDAT", "100 LAST"},
		{" DATA\r\n", "", "DATA"},
		{"\r\n", "", ""},
		{"", "", ""},
		// A server that drops every CR before the LF (Postfix's smtp_get
		// does) reads DATA here; so must the bridge's inspector, or it
		// stays in command mode while the server reads the message.
		{"DATA\r\r\n", "DATA", ""},
		{"STARTTLS\r\r\n", "STARTTLS", ""},
		{"MAIL FROM:<a@b>\r\r\n", "MAIL", "FROM:<a@b>"},
	}
	for _, tt := range tests {
		// SplitVerb takes a line without its ending; the bridge's
		// inspector trims every CR before the LF first, as above.
		verb, arg := SplitVerb(bytes.TrimRight([]byte(tt.line), "\r\n"))
		if string(verb) != tt.verb || string(arg) != tt.arg {
			t.Errorf("SplitVerb(%q) = %q, %q; want %q, %q", tt.line, verb, arg, tt.verb, tt.arg)
		}
	}
}
