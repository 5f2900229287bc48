package starttls

import (
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	pop3Greeting = "+OK pop.test POP3 ready"
	pop3Bye      = "+OK pop.test POP3 closing connection"
)

func TestPOP3Dialogue(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	tests := []dialogueCase{
		{
			name:    "capa in require mode has no USER",
			input:   crlf("CAPA", "noop", "QUIT"),
			want:    crlf(pop3Greeting, "+OK Capability list follows", "STLS", "RESP-CODES", "AUTH-RESP-CODE", "TOP", "UIDL", "PIPELINING", ".", "+OK", pop3Bye),
			wantErr: ErrClientQuit,
		},
		{
			name:    "capa in allow mode",
			mode:    Allow,
			srv:     func(s *Server) { s.POP3Capabilities = []string{"SASL PLAIN"} },
			input:   crlf("CAPA", "QUIT"),
			want:    crlf(pop3Greeting, "+OK Capability list follows", "STLS", "USER", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN", ".", pop3Bye),
			wantErr: ErrClientQuit,
		},
		{
			name:    "capa in disallow mode",
			mode:    Disallow,
			srv:     func(s *Server) { s.POP3Capabilities = []string{} },
			input:   crlf("CAPA", "STLS", "QUIT"),
			want:    crlf(pop3Greeting, "+OK Capability list follows", "USER", "RESP-CODES", "AUTH-RESP-CODE", ".", "-ERR STLS not available", pop3Bye),
			wantErr: ErrClientQuit,
		},
		{
			name:  "require refuses authentication",
			srv:   func(s *Server) { s.MaxErrors = -1 },
			input: crlf("USER alice", "PASS secret", "APOP alice 0123", "AUTH PLAIN", "STAT", "XYZZY", "STLS now", "QUIT"),
			want: crlf(pop3Greeting,
				"-ERR [AUTH] TLS required: issue STLS first", "-ERR [AUTH] TLS required: issue STLS first",
				"-ERR [AUTH] TLS required: issue STLS first", "-ERR [AUTH] TLS required: issue STLS first",
				"-ERR Not valid before authentication", "-ERR Unknown command", "-ERR Syntax: STLS takes no arguments", pop3Bye),
			wantErr: ErrClientQuit,
		},
		{
			name:    "max errors in one write",
			input:   crlf("USER a", "X", "FOO", "LIST", "RETR 1", "QUIT"),
			want:    crlf(pop3Greeting, "-ERR [AUTH] TLS required: issue STLS first", "-ERR Unknown command", "-ERR Unknown command", "-ERR Not valid before authentication", "-ERR Too many errors"),
			wantErr: ErrTooManyErrors,
		},
		{
			name:    "line too long",
			input:   "USER " + strings.Repeat("a", 300) + "\r\n" + crlf("QUIT"),
			want:    crlf(pop3Greeting, "-ERR Line too long", pop3Bye),
			wantErr: ErrClientQuit,
		},
		{
			name:    "injection after STLS",
			input:   crlf("STLS", "USER alice"),
			want:    crlf(pop3Greeting),
			wantErr: ErrInjection,
		},
	}
	runDialogues(t, POP3, "pop.test", tests)
}

func TestPOP3AllowHandover(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	for _, cmd := range []string{"USER alice", "APOP alice c4c9334bac560ecc979e58001b3e22fb", "AUTH PLAIN", "auth", "PASS x"} {
		t.Run(cmd, func(t *testing.T) {
			s := &Server{Protocol: POP3, Mode: Allow, TLSConfig: newSrvPKI(t).server}
			res := runPipe(t, s, crlf("CAPA", cmd, "PASS secret"))
			require.NoError(t, res.err)
			require.NotNil(t, res.sess)
			assert.Equal(t, crlf(cmd, "PASS secret"), string(res.sess.Pending))
			assert.False(t, res.sess.TLS)
			assert.Equal(t, POP3, res.sess.Protocol)
		})
	}
}

func TestPOP3Parse(t *testing.T) {
	tests := []struct {
		name, line, kw, args string
		ok                   bool
	}{
		{name: "user", line: "user alice", kw: "USER", args: "alice", ok: true},
		{name: "capa", line: "CAPA", kw: "CAPA", ok: true},
		{name: "top", line: "TOP 1 10", kw: "TOP", args: "1 10", ok: true},
		{name: "short", line: "AB", ok: false},
		{name: "long", line: "ABCDE x", ok: false},
		{name: "digits", line: "US3R x", ok: false},
		{name: "empty", line: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kw, args, ok := parsePOP3Command([]byte(tt.line))
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.kw, kw)
			assert.Equal(t, tt.args, args)
		})
	}
}
