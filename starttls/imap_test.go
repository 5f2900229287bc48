package starttls

import (
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	imapCapsRequire = "IMAP4rev1 STARTTLS LOGINDISABLED IDLE NAMESPACE UIDPLUS UNSELECT"
	imapGreeting    = "* OK [CAPABILITY " + imapCapsRequire + "] imap.test ready"
	imapBye         = "* BYE imap.test logging out"
)

func TestIMAPDialogue(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	tests := []dialogueCase{
		{
			name:    "capability noop logout with tags echoed",
			input:   crlf("a1 CAPABILITY", "x.Y] noop", "Z9 LOGOUT"),
			want:    crlf(imapGreeting, "* CAPABILITY "+imapCapsRequire, "a1 OK CAPABILITY completed", "x.Y] OK NOOP completed", imapBye, "Z9 OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:  "require refuses login and other commands",
			srv:   func(s *Server) { s.MaxErrors = -1 },
			input: crlf("a LOGIN alice secret", "b AUTHENTICATE PLAIN", "c SELECT INBOX", "d ID NIL", "e LOGOUT"),
			want: crlf(imapGreeting,
				"a NO [PRIVACYREQUIRED] TLS required: issue STARTTLS first",
				"b NO [PRIVACYREQUIRED] TLS required: issue STARTTLS first",
				"c BAD Command not allowed before STARTTLS",
				"* ID NIL", "d OK ID completed",
				imapBye, "e OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "allow answers ID itself, so a client can still upgrade",
			mode:    Allow,
			input:   crlf(`i ID ("name" "Thunderbird")`, "z LOGOUT"),
			want:    crlf("* OK [CAPABILITY IMAP4rev1 STARTTLS IDLE NAMESPACE UIDPLUS UNSELECT] imap.test ready", "* ID NIL", "i OK ID completed", imapBye, "z OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "garbage",
			srv:     func(s *Server) { s.MaxErrors = -1 },
			input:   crlf("", "+tag NOOP", "a*b NOOP", "lonely", "t (x)", "t NOOP now", "t STARTTLS x", "t LOGOUT"),
			want:    crlf(imapGreeting, "* BAD Invalid tag", "* BAD Invalid tag", "* BAD Invalid tag", "lonely BAD Invalid command", "t BAD Invalid command", "t BAD NOOP takes no arguments", "t BAD STARTTLS takes no arguments", imapBye, "t OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "synchronising literal refused at once",
			input:   crlf("a LOGIN {5}", "b LOGOUT"),
			want:    crlf(imapGreeting, "a NO [PRIVACYREQUIRED] TLS required: issue STARTTLS first", imapBye, "b OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "small non-synchronising literals discarded",
			input:   "a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n" + crlf("b NOOP {3+}") + "xyz\r\n" + crlf("c LOGOUT"),
			want:    crlf(imapGreeting, "a NO [PRIVACYREQUIRED] TLS required: issue STARTTLS first", "b BAD NOOP takes no arguments", imapBye, "c OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "large non-synchronising literal closes",
			input:   crlf("a LOGIN {100000+}") + strings.Repeat("x", 100),
			want:    crlf(imapGreeting, "* BYE Command too long"),
			wantErr: ErrLineTooLong,
		},
		{
			name:    "literals adding up over the limit close",
			srv:     func(s *Server) { s.MaxLineLength = 64 },
			input:   "a LOGIN {20+}\r\n" + strings.Repeat("u", 20) + " {30+}\r\n" + strings.Repeat("p", 30) + "\r\n",
			want:    crlf(imapGreeting, "* BYE Command too long"),
			wantErr: ErrLineTooLong,
		},
		{
			name:    "line too long",
			input:   "a NOOP " + strings.Repeat("x", 9000) + "\r\n" + crlf("b LOGOUT"),
			want:    crlf(imapGreeting, "* BAD Line too long", imapBye, "b OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "max errors in one write",
			input:   crlf("a FOO", "b BAR", "c LOGIN x y", "d", "e BAZ", "f NOOP"),
			want:    crlf(imapGreeting, "a BAD Command not allowed before STARTTLS", "b BAD Command not allowed before STARTTLS", "c NO [PRIVACYREQUIRED] TLS required: issue STARTTLS first", "d BAD Invalid command", "* BYE Too many errors"),
			wantErr: ErrTooManyErrors,
		},
		{
			name:    "injection after STARTTLS",
			input:   crlf("a STARTTLS", "b LOGIN alice secret"),
			want:    crlf(imapGreeting),
			wantErr: ErrInjection,
		},
		{
			name:    "allow mode advertises no LOGINDISABLED",
			mode:    Allow,
			input:   crlf("a CAPABILITY", "b LOGOUT"),
			want:    crlf("* OK [CAPABILITY IMAP4rev1 STARTTLS IDLE NAMESPACE UIDPLUS UNSELECT] imap.test ready", "* CAPABILITY IMAP4rev1 STARTTLS IDLE NAMESPACE UIDPLUS UNSELECT", "a OK CAPABILITY completed", imapBye, "b OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "disallow hides and refuses STARTTLS",
			mode:    Disallow,
			srv:     func(s *Server) { s.IMAPCapabilities = []string{}; s.Greeting = "hi" },
			input:   crlf("a STARTTLS", "b LOGOUT"),
			want:    crlf("* OK [CAPABILITY IMAP4rev1] hi", "a BAD STARTTLS not available", imapBye, "b OK LOGOUT completed"),
			wantErr: ErrClientQuit,
		},
	}
	runDialogues(t, IMAP, "imap.test", tests)
}

func TestIMAPAllowHandover(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	tests := []struct {
		name, input, pending string
	}{
		{name: "login", input: crlf("a CAPABILITY", "b LOGIN alice secret", "c SELECT INBOX"), pending: crlf("b LOGIN alice secret", "c SELECT INBOX")},
		{name: "login with literal", input: crlf("b LOGIN {5}"), pending: crlf("b LOGIN {5}")},
		{name: "id is answered, login hands over", input: crlf("x ID NIL", "b LOGIN alice secret"), pending: crlf("b LOGIN alice secret")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Protocol: IMAP, Mode: Allow, TLSConfig: newSrvPKI(t).server}
			res := runPipe(t, s, tt.input)
			require.NoError(t, res.err)
			require.NotNil(t, res.sess)
			assert.Equal(t, tt.pending, string(res.sess.Pending))
			assert.False(t, res.sess.TLS)
			assert.Equal(t, IMAP, res.sess.Protocol)
		})
	}
}

func TestIMAPParse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		tag     string
		cmd     string
		args    string
		lit     int64
		nonSync bool
		err     error
	}{
		{name: "simple", line: "a1 noop", tag: "a1", cmd: "NOOP", lit: -1},
		{name: "args", line: "A LOGIN alice \"pw\"", tag: "A", cmd: "LOGIN", args: "alice \"pw\"", lit: -1},
		{name: "sync literal", line: "A LOGIN {5}", tag: "A", cmd: "LOGIN", args: "{5}", lit: 5},
		{name: "non-sync literal", line: "A LOGIN {12+}", tag: "A", cmd: "LOGIN", args: "{12+}", lit: 12, nonSync: true},
		{name: "literal8", line: "A APPEND x ~{3}", tag: "A", cmd: "APPEND", args: "x ~{3}", lit: 3},
		{name: "bad literal", line: "A X {1a}", tag: "A", cmd: "X", args: "{1a}", lit: -1},
		{name: "large literal", line: "A X {99999999999}", tag: "A", cmd: "X", args: "{99999999999}", lit: 99999999999},
		{name: "literal past number64", line: "A X {9223372036854775808}", tag: "A", cmd: "X", args: "{9223372036854775808}", lit: -1},
		{name: "plus tag", line: "+ NOOP", lit: -1, err: errIMAPTag},
		{name: "empty", line: "", lit: -1, err: errIMAPTag},
		{name: "no command", line: "a", tag: "a", lit: -1, err: errIMAPCommand},
		{name: "garbage with literal", line: "* x {3+}", lit: 3, nonSync: true, err: errIMAPTag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := parseIMAPCommand([]byte(tt.line))
			assert.ErrorIs(t, err, tt.err)
			assert.Equal(t, tt.tag, cmd.tag)
			assert.Equal(t, tt.cmd, cmd.name)
			if tt.err == nil {
				assert.Equal(t, tt.args, cmd.args)
			}
			size := int64(-1)
			if cmd.hasLit {
				size = cmd.lit.Size
			}
			assert.Equal(t, tt.lit, size)
			assert.Equal(t, tt.nonSync, cmd.lit.NonSync)
		})
	}
}
