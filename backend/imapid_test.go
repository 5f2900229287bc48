package backend

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

func TestIMAPQuote(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"ip", "192.0.2.1", `"192.0.2.1"`, true},
		{"escapes", `a"b\c`, `"a\"b\\c"`, true},
		{"space and parens", "a (b) c", `"a (b) c"`, true},
		{"cr", "a\rb", "", false},
		{"lf", "1.2.3.4\r\nme2 LOGIN a b", "", false},
		{"nul", "a\x00", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := imapQuote(tt.in)
			if !tt.ok {
				assert.ErrorIs(t, err, ErrIdentity)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := idCommand([]string{"x-originating-ip", "1.2.3.4\r\nme2 LOGOUT"})
	assert.ErrorIs(t, err, ErrIdentity, "a CR/LF value never becomes a command")
}

// idBackend greets, records the ID line and answers with answer.
func idBackend(answer string, got *string) func(f *fakeConn) {
	return func(f *fakeConn) {
		f.send("* OK [CAPABILITY IMAP4rev1 ID] ready\r\n")
		*got = f.line()
		f.send(answer)
		if f.line() == "QUIT\r\n" { // not IMAP, but the shared quit helper's word
			f.send("221 bye\r\n")
		}
	}
}

func TestIMAPIDDial(t *testing.T) {
	leaktest.Check(t)
	ci := ClientInfo{
		Src: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 4), Port: 50123},
		Dst: &net.TCPAddr{IP: net.ParseIP("2001:db8::143"), Port: 993},
	}
	const want = `me1 ID ("x-originating-ip" "198.51.100.4" "x-originating-port" "50123" "x-connected-ip" "2001:db8::143" "x-connected-port" "993")` + "\r\n"
	tests := []struct {
		name       string
		answer     string
		bestEffort bool
		err        error
	}{
		{name: "dovecot", answer: "* ID (\"name\" \"Dovecot\")\r\nme1 OK ID completed.\r\n"},
		{name: "literal in answer", answer: "* ID (\"name\" {7}\r\nDovecot)\r\nme1 OK done\r\n"},
		{name: "nil", answer: "* ID NIL\r\nme1 OK done\r\n"},
		{name: "bad", answer: "me1 BAD unknown command\r\n", err: ErrIdentity},
		{name: "bad best effort", answer: "me1 BAD unknown command\r\n", bestEffort: true},
		{name: "bye", answer: "* BYE shutting down\r\n", err: ErrRefused},
		{name: "garbage", answer: "+ go on\r\n", err: ErrProtocol},
		{name: "huge literal", answer: "* ID (\"name\" {99999}\r\n", err: ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			srv := newFake(t, idBackend(tt.answer, &got))
			d := &Dialer{Addr: srv.Addr(), Protocol: starttls.IMAP, IMAPID: true, IdentityBestEffort: tt.bestEffort}
			c, err := d.Dial(context.Background(), ci)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
			} else {
				require.NoError(t, err)
				assert.Equal(t, "* OK [CAPABILITY IMAP4rev1 ID] ready\r\n", string(c.Greeting))
				if tt.bestEffort {
					assert.Empty(t, c.Identity, "ID refused, best effort: nothing sent")
				} else {
					assert.Equal(t, []string{"id"}, c.Identity)
				}
				quit(t, c)
				require.NoError(t, c.Close())
			}
			srv.Close()
			assert.Equal(t, want, got)
		})
	}
}

func TestIMAPIDNothingKnown(t *testing.T) {
	leaktest.Check(t)
	srv := newFake(t, greeter("* OK ready\r\n"))
	c, err := (&Dialer{Addr: srv.Addr(), Protocol: starttls.IMAP, IMAPID: true}).Dial(context.Background(), ClientInfo{})
	require.NoError(t, err)
	quit(t, c) // the fake's first line is QUIT: no ID was sent
	require.NoError(t, c.Close())
}

func FuzzReadTagged(f *testing.F) {
	for _, s := range []string{"me1 OK\r\n", "* ID NIL\r\nme1 NO x\r\n", "* X {3}\r\nabc\r\nme1 OK\r\n", "* BYE\r\n", "{5+}\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		status, err := readTagged(bufio.NewReader(strings.NewReader(s)), idTag, 256, nil)
		if err == nil && !strings.Contains(strings.ToUpper(s), strings.ToUpper(idTag+" "+status)) {
			t.Fatalf("status %q not in input %q", status, s)
		}
	})
}

func TestIMAPIDCapability(t *testing.T) {
	leaktest.Check(t)
	ci := ClientInfo{Src: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 4), Port: 1}}
	const id = `me1 ID ("x-originating-ip" "198.51.100.4" "x-originating-port" "1")` + "\r\n"
	tests := []struct {
		name       string
		greeting   string
		capAnswer  string // answer to CAPABILITY; "" if none must be asked
		bestEffort bool
		err        error
		lines      []string // what the backend saw
	}{
		{name: "asked, has ID", greeting: "* OK hi\r\n", capAnswer: "* CAPABILITY IMAP4rev1 ID\r\nme0 OK\r\n",
			lines: []string{"me0 CAPABILITY\r\n", id}},
		{name: "asked, no ID", greeting: "* OK hi\r\n", capAnswer: "* CAPABILITY IMAP4rev1\r\nme0 OK\r\n",
			err: ErrIdentity, lines: []string{"me0 CAPABILITY\r\n"}},
		{name: "asked, refused", greeting: "* OK hi\r\n", capAnswer: "me0 BAD no\r\n",
			err: ErrProtocol, lines: []string{"me0 CAPABILITY\r\n"}},
		{name: "greeting without ID", greeting: "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", err: ErrIdentity},
		{name: "greeting without ID, best effort", greeting: "* OK [CAPABILITY IMAP4rev1] hi\r\n", bestEffort: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines []string
			srv := newFake(t, func(f *fakeConn) {
				f.send(tt.greeting)
				for {
					line := f.line()
					switch {
					case line == "" || line == "QUIT\r\n":
						f.send("221 bye\r\n")
						return
					case strings.HasPrefix(line, "me0 "):
						f.send(tt.capAnswer)
					case strings.HasPrefix(line, "me1 "):
						f.send("me1 OK\r\n")
					}
					lines = append(lines, line)
				}
			})
			d := &Dialer{Addr: srv.Addr(), Protocol: starttls.IMAP, IMAPID: true, IdentityBestEffort: tt.bestEffort}
			c, err := d.Dial(context.Background(), ci)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
			} else {
				require.NoError(t, err)
				quit(t, c)
				require.NoError(t, c.Close())
			}
			srv.Close()
			assert.Equal(t, tt.lines, lines)
		})
	}
}
