package starttls

import (
	"bufio"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// linesOf returns a next function over s for the reply readers.
func linesOf(s string) func() ([]byte, error) {
	br := bufio.NewReader(strings.NewReader(s))
	return func() ([]byte, error) { return mailwire.ReadLine(br, 512) }
}

func TestReadSMTPReply(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  int
		lines []string
		err   error
	}{
		{"single", "220 hi there\r\n", 220, []string{"hi there"}, nil},
		{"bare code", "250\r\n", 250, []string{""}, nil},
		{"multi", "250-a\r\n250-b c\r\n250 d\r\n", 250, []string{"a", "b c", "d"}, nil},
		{"bare LF", "220 hi\n", 220, []string{"hi"}, nil},
		{"code changes", "250-a\r\n251 b\r\n", 0, nil, ErrBadResponse},
		{"no code", "hello\r\n", 0, nil, ErrBadResponse},
		{"out of range", "999 x\r\n", 0, nil, ErrBadResponse},
		{"bad separator", "250_x\r\n", 0, nil, ErrBadResponse},
		{"short", "25\r\n", 0, nil, ErrBadResponse},
		{"cut off", "250-a\r\n", 0, nil, nil},
		{"too many lines", strings.Repeat("250-x\r\n", maxReplyLines+1), 0, nil, ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readSMTPReply(linesOf(tt.in))
			if tt.code == 0 {
				assert.Error(t, err)
				if tt.err != nil {
					assert.ErrorIs(t, err, tt.err)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.code, r.Code)
			assert.Equal(t, tt.lines, r.Lines)
			assert.Equal(t, tt.in, string(r.Raw))
		})
	}
}

func TestFilterEHLO(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"middle", "250-h\r\n250-STARTTLS\r\n250 SIZE\r\n", "250-h\r\n250 SIZE\r\n"},
		{"last", "250-h\r\n250-SIZE\r\n250 starttls\r\n", "250-h\r\n250 SIZE\r\n"},
		{"only", "250-h\r\n250 STARTTLS\r\n", "250 h\r\n"},
		{"none kept as sent", "250-h\n250 SIZE\n", "250-h\n250 SIZE\n"},
		{"name line is never dropped", "250 STARTTLS\r\n", "250 STARTTLS\r\n"},
		{"error reply untouched", "550-STARTTLS\r\n550 STARTTLS\r\n", "550-STARTTLS\r\n550 STARTTLS\r\n"},
		{"prefix is not the keyword", "250-h\r\n250 STARTTLSX\r\n", "250-h\r\n250 STARTTLSX\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readSMTPReply(linesOf(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(r.DropExtension("STARTTLS")))
		})
	}
}

func TestParseIMAPLine(t *testing.T) {
	tests := []struct {
		name, in   string
		tag, kind  string
		code, args string
		wantErr    bool
	}{
		{name: "greeting code", in: "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi", tag: "*", kind: "OK", code: "CAPABILITY", args: "IMAP4rev1 STARTTLS"},
		{name: "tagged", in: "a1 ok done", tag: "a1", kind: "OK"},
		{name: "capability", in: "* CAPABILITY IMAP4rev1 IDLE", tag: "*", kind: "CAPABILITY", args: "IMAP4rev1 IDLE"},
		{name: "exists", in: "* 3 EXISTS", tag: "*", kind: "EXISTS"},
		{name: "continuation", in: "+ go on", tag: "+"},
		{name: "bare continuation", in: "+", tag: "+"},
		{name: "alert", in: "* NO [ALERT] x", tag: "*", kind: "NO", code: "ALERT"},
		{name: "unterminated code", in: "* OK [ALERT x", wantErr: true},
		{name: "no keyword", in: "*", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "control", in: "* OK a\x00b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseIMAPLine([]byte(tt.in))
			if tt.wantErr {
				assert.ErrorIs(t, err, ErrBadResponse)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.tag, r.tag)
			assert.Equal(t, tt.kind, r.kind)
			assert.Equal(t, tt.code, r.code)
			assert.Equal(t, tt.args, r.args)
		})
	}
}

func TestFilterIMAPLine(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"untagged", "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED IDLE\r\n", "* CAPABILITY IMAP4rev1 IDLE\r\n"},
		{"greeting code", "* OK [CAPABILITY IMAP4rev1 starttls] ready\r\n", "* OK [CAPABILITY IMAP4rev1] ready\r\n"},
		{"code without text", "* OK [CAPABILITY IMAP4rev1 STARTTLS]\r\n", "* OK [CAPABILITY IMAP4rev1]\r\n"},
		{"tagged code", "a1 OK [CAPABILITY IMAP4rev1 LOGINDISABLED] done\n", "a1 OK [CAPABILITY IMAP4rev1] done\n"},
		{"other code", "* OK [ALERT] STARTTLS\r\n", "* OK [ALERT] STARTTLS\r\n"},
		{"other line", "* 1 EXISTS\r\n", "* 1 EXISTS\r\n"},
		{"garbage", "\x00\r\n", "\x00\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(filterIMAPLine([]byte(tt.in))))
		})
	}
}

func TestStripIMAPCode(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"capability", "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n", "* OK Dovecot ready.\r\n"},
		{"alert", "* OK [ALERT] read me\r\n", "* OK read me\r\n"},
		{"no text left", "* OK [CAPABILITY IMAP4rev1]\r\n", "* OK ready\r\n"},
		{"no code", "* OK hi\r\n", "* OK hi\r\n"},
		{"code hidden behind a code", "* OK [CAPABILITY X] [ALERT] evil\r\n", "* OK evil\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(stripIMAPCode([]byte(tt.in))))
		})
	}
}

func TestPOP3Multi(t *testing.T) {
	raw, texts, err := readPOP3Multi(linesOf("USER\r\nSTLS\r\n..x\r\nSASL PLAIN\r\n.\r\nafter\r\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"USER", "STLS", ".x", "SASL PLAIN"}, texts)
	assert.Equal(t, "USER\r\n..x\r\nSASL PLAIN\r\n.\r\n", string(mailwire.DropSTLS(raw)))
	_, _, err = readPOP3Multi(linesOf("USER\r\n"))
	assert.Error(t, err, "a list without its end")
	assert.Equal(t, 1, mailwire.POP3Status([]byte("+ok fine")))
	assert.Equal(t, -1, mailwire.POP3Status([]byte("-ERR")))
	assert.Equal(t, 0, mailwire.POP3Status([]byte("+OKAY")))
}

func TestLiteralAnnounced(t *testing.T) {
	tests := []struct {
		in   string
		n    int64
		want bool
	}{
		{"* 1 FETCH (BODY[] {12}", 12, true},
		{"* 1 FETCH (BODY[] {12+}", 12, true},
		{"{0}", 0, true},
		{"* OK {x}", 0, false},
		{"* OK {}", 0, false},
		{"* OK {+}", 0, false},
		{"* OK {-1}", 0, false},
		{"* OK 12}", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			lit, ok := mailwire.ParseLiteral([]byte(tt.in))
			n := lit.Size
			assert.Equal(t, tt.want, ok)
			assert.Equal(t, tt.n, n)
		})
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name       string
		p          Protocol
		host, text string
		want       string
	}{
		{"smtp", SMTP, "mx.test", "", "421 4.3.2 mx.test Service not available\r\n"},
		{"smtp default host", SMTP, "", "busy", "421 4.3.2 localhost busy\r\n"},
		{"imap", IMAP, "mx.test", "later", "* BYE [UNAVAILABLE] later\r\n"},
		{"pop3", POP3, "", "", "-ERR [SYS/TEMP] Service not available\r\n"},
		{"injection in text", SMTP, "h\r\n250 x", "a\r\nRSET", "421 4.3.2 h  250 x a  RSET\r\n"},
		{"unknown", Protocol(7), "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(Unavailable(tt.p, tt.host, tt.text)))
		})
	}
}
