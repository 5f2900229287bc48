package starttls

import (
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const smtpGreeting = "220 mx.test ESMTP ready"

var smtpEHLORequire = []string{
	"250-mx.test", "250-STARTTLS", "250-PIPELINING", "250-SIZE", "250-8BITMIME", "250 ENHANCEDSTATUSCODES",
}

func TestSMTPDialogue(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	ehlo := strings.Join(smtpEHLORequire, "\r\n")
	tests := []dialogueCase{
		{
			name:    "ehlo then quit",
			input:   crlf("EHLO client.test", "QUIT"),
			want:    crlf(smtpGreeting, ehlo, "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "helo noop rset help",
			input:   crlf("HELO client.test", "NOOP", "noop hello", "RSET", "HELP", "quit"),
			want:    crlf(smtpGreeting, "250 mx.test", "250 2.0.0 OK", "250 2.0.0 OK", "250 2.0.0 OK", "214 2.0.0 Commands: EHLO HELO STARTTLS NOOP RSET HELP QUIT", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:  "require refuses mail transaction and auth",
			srv:   func(s *Server) { s.MaxErrors = -1 },
			input: crlf("EHLO c", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA", "AUTH PLAIN AGFAAGI=", "VRFY x", "EXPN x", "BDAT 10 LAST", "QUIT"),
			want: crlf(smtpGreeting, ehlo,
				"530 5.7.0 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS command first",
				"530 5.7.0 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS command first",
				"530 5.7.0 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS command first",
				"530 5.7.0 Must issue a STARTTLS command first", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "syntax errors",
			srv:     func(s *Server) { s.MaxErrors = -1 },
			input:   crlf("EHLO", "HELO a b", "STARTTLS now", "RSET x", "FOO", "", "GET /", "QUIT"),
			want:    crlf(smtpGreeting, "501 5.5.4 Syntax: EHLO hostname", "501 5.5.4 Syntax: HELO hostname", "501 5.5.4 Syntax: STARTTLS takes no parameters", "501 5.5.4 Syntax: RSET", "502 5.5.2 Command not recognized", "500 5.5.2 Syntax error, command unrecognized", "502 5.5.2 Command not recognized", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "max errors in one write closes with 421",
			input:   crlf("FOO", "BAR", "MAIL FROM:<>", "EHLO", "BAZ", "NOOP"),
			want:    crlf(smtpGreeting, "502 5.5.2 Command not recognized", "502 5.5.2 Command not recognized", "530 5.7.0 Must issue a STARTTLS command first", "501 5.5.4 Syntax: EHLO hostname", "421 4.7.0 mx.test Too many errors, closing connection"),
			wantErr: ErrTooManyErrors,
		},
		{
			name:    "max commands",
			srv:     func(s *Server) { s.MaxCommands = 3 },
			input:   crlf("NOOP", "NOOP", "NOOP", "NOOP", "NOOP"),
			want:    crlf(smtpGreeting, "250 2.0.0 OK", "250 2.0.0 OK", "250 2.0.0 OK", "421 4.7.0 mx.test Too many commands, closing connection"),
			wantErr: ErrTooManyErrors,
		},
		{
			name:    "line too long resynchronises",
			input:   strings.Repeat("x", 600) + "\r\n" + crlf("NOOP", "QUIT"),
			want:    crlf(smtpGreeting, "500 5.5.2 Line too long", "250 2.0.0 OK", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "exactly 512 octets is accepted",
			input:   "NOOP " + strings.Repeat("x", 512-7) + "\r\n" + crlf("QUIT"),
			want:    crlf(smtpGreeting, "250 2.0.0 OK", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "injection after STARTTLS is never answered",
			input:   crlf("EHLO c", "STARTTLS", "RSET"),
			want:    crlf(smtpGreeting),
			wantErr: ErrInjection,
		},
		{
			name:    "disallow hides and refuses STARTTLS",
			mode:    Disallow,
			input:   crlf("EHLO c", "STARTTLS", "QUIT"),
			want:    crlf(smtpGreeting, "250-mx.test", "250-PIPELINING", "250-SIZE", "250-8BITMIME", "250 ENHANCEDSTATUSCODES", "502 5.5.1 STARTTLS not available", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "allow wants a name before the transaction",
			mode:    Allow,
			input:   crlf("MAIL FROM:<a@b>", "QUIT"),
			want:    crlf(smtpGreeting, "503 5.5.1 Send EHLO or HELO first", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "custom greeting and extensions, Require hides AUTH",
			srv:     func(s *Server) { s.Greeting = "Service ready"; s.SMTPExtensions = []string{"SIZE 1000", "AUTH PLAIN"} },
			input:   crlf("EHLO c", "QUIT"),
			want:    crlf("220 mx.test Service ready", "250-mx.test", "250-STARTTLS", "250 SIZE 1000", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "custom extensions, Allow keeps AUTH",
			mode:    Allow,
			srv:     func(s *Server) { s.SMTPExtensions = []string{"SIZE 1000", "AUTH PLAIN"} },
			input:   crlf("EHLO c", "QUIT"),
			want:    crlf("220 mx.test ESMTP ready", "250-mx.test", "250-STARTTLS", "250-SIZE 1000", "250 AUTH PLAIN", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "disallow help does not offer STARTTLS",
			mode:    Disallow,
			input:   crlf("HELP", "QUIT"),
			want:    crlf(smtpGreeting, "214 2.0.0 Commands: EHLO HELO NOOP RSET HELP QUIT", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
		{
			name:    "an over-long line counts as a command",
			srv:     func(s *Server) { s.MaxCommands = 1 },
			input:   crlf("NOOP", strings.Repeat("x", 600), "QUIT"),
			want:    crlf(smtpGreeting, "250 2.0.0 OK", "421 4.7.0 mx.test Too many commands, closing connection"),
			wantErr: ErrTooManyErrors,
		},
		{
			name:    "disallow with no extensions",
			mode:    Disallow,
			srv:     func(s *Server) { s.SMTPExtensions = []string{} },
			input:   crlf("EHLO c", "QUIT"),
			want:    crlf(smtpGreeting, "250 mx.test", "221 2.0.0 mx.test closing connection"),
			wantErr: ErrClientQuit,
		},
	}
	runDialogues(t, SMTP, "mx.test", tests)
}

// TestSMTPAllowHandover checks a client that declines STARTTLS in Allow
// mode: the EHLO is answered, the transaction goes to the backend in Pending
// together with what was pipelined after it, and the name is recorded.
func TestSMTPAllowHandover(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, mode := range []Mode{Allow, Disallow} {
		t.Run(mode.String(), func(t *testing.T) {
			s := &Server{Protocol: SMTP, Mode: mode, TLSConfig: newSrvPKI(t).server, Hostname: "mx.test"}
			res := runPipe(t, s, crlf("EHLO client.test", "MAIL FROM:<a@b>", "RCPT TO:<c@d>")+"DA")
			require.NoError(t, res.err)
			require.NotNil(t, res.sess)
			assert.Equal(t, crlf("MAIL FROM:<a@b>", "RCPT TO:<c@d>")+"DA", string(res.sess.Pending))
			assert.Equal(t, "client.test", res.sess.Helo)
			assert.Equal(t, "EHLO", res.sess.HeloVerb)
			assert.False(t, res.sess.TLS)
			assert.Equal(t, SMTP, res.sess.Protocol)
			assert.True(t, strings.HasPrefix(res.out, smtpGreeting+"\r\n250-mx.test\r\n"), "got %q", res.out)
		})
	}
}

// TestSMTPPipelinedOneWrite checks that a pipelined group is answered in
// order with one Write after the greeting's.
func TestSMTPPipelinedOneWrite(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	s := &Server{Protocol: SMTP, TLSConfig: newSrvPKI(t).server, Hostname: "mx.test"}
	res := runPipe(t, s, crlf("EHLO c", "NOOP", "RSET", "QUIT"))
	require.ErrorIs(t, res.err, ErrClientQuit)
	assert.Equal(t, crlf(smtpGreeting, strings.Join(smtpEHLORequire, "\r\n"), "250 2.0.0 OK", "250 2.0.0 OK", "221 2.0.0 mx.test closing connection"), res.out)
	assert.Equal(t, 2, res.writes, "got %d writes; want greeting + one for the group", res.writes)
}

func TestSMTPParse(t *testing.T) {
	tests := []struct {
		name, line, verb, arg string
		ok                    bool
	}{
		{name: "plain", line: "ehlo example.com", verb: "EHLO", arg: "example.com", ok: true},
		{name: "no arg", line: "QUIT", verb: "QUIT", ok: true},
		{name: "mail", line: "MAIL FROM:<a@b> SIZE=10", verb: "MAIL", arg: "FROM:<a@b> SIZE=10", ok: true},
		{name: "extra spaces", line: "NOOP   x  ", verb: "NOOP", arg: "x", ok: true},
		{name: "empty", line: "", ok: false},
		{name: "leading space", line: " EHLO x", ok: false},
		{name: "punctuation", line: "GET/ x", ok: false},
		{name: "too long verb", line: strings.Repeat("A", 17), ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verb, arg, ok := parseSMTPCommand([]byte(tt.line))
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.verb, verb)
			assert.Equal(t, tt.arg, arg)
		})
	}
}
