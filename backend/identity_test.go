package backend

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// unxtext decodes RFC 3461 xtext, for round-trip checks.
func unxtext(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 > len(s) {
			return "", false
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), true
}

func TestXtext(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "mx.example.com", "mx.example.com"},
		{"plus and equals", "a+b=c", "a+2Bb+3Dc"},
		{"space", "a b", "a+20b"},
		{"crlf", "evil\r\nRCPT TO:<x>", "evil+0D+0ARCPT+20TO:<x>"},
		{"utf8", "é", "+C3+A9"},
		{"brackets", "[1.2.3.4]", "[1.2.3.4]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := xtext(tt.in)
			assert.Equal(t, tt.want, got)
			back, ok := unxtext(got)
			assert.True(t, ok)
			assert.Equal(t, tt.in, back)
		})
	}
}

func FuzzXtext(f *testing.F) {
	for _, s := range []string{"", "a b", "+=", "\r\n", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := xtext(s)
		if strings.ContainsAny(enc, " \r\n=\x00") {
			t.Fatalf("xtext(%q) = %q holds a separator", s, enc)
		}
		back, ok := unxtext(enc)
		if !ok || back != s {
			t.Fatalf("xtext(%q) = %q does not round-trip (%q)", s, enc, back)
		}
	})
}

func TestXCLIENTAttrs(t *testing.T) {
	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 1234}
	mapped := &net.TCPAddr{IP: net.ParseIP("::ffff:198.51.100.9"), Port: 25}
	all := []string{"ADDR", "PORT", "DESTADDR", "DESTPORT", "HELO", "PROTO", "NAME", "LOGIN"}
	tests := []struct {
		name string
		ci   ClientInfo
		adv  []string
		want string
	}{
		{"unknown", ClientInfo{}, all,
			"XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] DESTADDR=[UNAVAILABLE] DESTPORT=[UNAVAILABLE] HELO=[UNAVAILABLE] PROTO=[UNAVAILABLE]\r\n"},
		{"ipv6 and helo", ClientInfo{Src: v6, Dst: mapped, Helo: "h", HeloVerb: "helo"}, all,
			"XCLIENT ADDR=IPV6:2001:db8::7 PORT=1234 DESTADDR=198.51.100.9 DESTPORT=25 HELO=h PROTO=SMTP\r\n"},
		{"only advertised", ClientInfo{Src: v6, HeloVerb: "EHLO"}, []string{"addr", "PROTO"},
			"XCLIENT ADDR=IPV6:2001:db8::7 PROTO=ESMTP\r\n"},
		{"nothing listed means all", ClientInfo{}, nil,
			"XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] DESTADDR=[UNAVAILABLE] DESTPORT=[UNAVAILABLE] HELO=[UNAVAILABLE] PROTO=[UNAVAILABLE]\r\n"},
		{"injection", ClientInfo{Helo: "x\r\nRCPT TO:<a> =+"}, []string{"HELO"},
			"XCLIENT HELO=x+0D+0ARCPT+20TO:<a>+20+3D+2B\r\n"},
		{"absurd helo", ClientInfo{Helo: strings.Repeat(" ", 200)}, []string{"HELO"},
			"XCLIENT HELO=[UNAVAILABLE]\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := xclientLines(xclientAttrs(tt.ci, tt.adv))
			assert.Equal(t, tt.want, strings.Join(lines, ""))
		})
	}
}

func TestXCLIENTLinesSplit(t *testing.T) {
	attrs := []string{"HELO=" + strings.Repeat("h", 300), "ADDR=" + strings.Repeat("1", 300)}
	lines := xclientLines(attrs)
	require.Len(t, lines, 2)
	for _, l := range lines {
		assert.LessOrEqual(t, len(l), maxXCLIENTLine)
		assert.Equal(t, 1, strings.Count(l, "\n"))
	}
}

// xclientBackend advertises XCLIENT (or not), records the XCLIENT line and
// answers with answer.
func xclientBackend(advertise bool, answer string, got *[]string) func(f *fakeConn) {
	return func(f *fakeConn) {
		f.send("220 fake\r\n")
		f.expect("EHLO proxy.test\r\n")
		if advertise {
			f.send("250-fake\r\n250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n250 SIZE\r\n")
		} else {
			f.send("250-fake\r\n250 SIZE\r\n")
		}
		if advertise {
			*got = append(*got, f.line())
			f.send(answer)
		}
		if f.line() == "QUIT\r\n" { // the failing cases hang up instead
			f.send("221 bye\r\n")
		}
	}
}

func TestXCLIENTDial(t *testing.T) {
	leaktest.Check(t)
	hostile := ClientInfo{
		Src:      &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5000},
		Helo:     "a b\r\nMAIL FROM:<x>\nc=d+e",
		HeloVerb: "EHLO",
	}
	tests := []struct {
		name       string
		advertise  bool
		answer     string
		bestEffort bool
		err        error
		greeting   string
	}{
		{name: "accepted", advertise: true, answer: "220 new greeting\r\n", greeting: "220 new greeting\r\n"},
		{name: "refused", advertise: true, answer: "550 5.7.0 not authorized\r\n", err: ErrIdentity},
		{name: "not advertised", err: ErrIdentity},
		{name: "not advertised best effort", bestEffort: true, greeting: "220 fake\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			srv := newFake(t, xclientBackend(tt.advertise, tt.answer, &got))
			d := &Dialer{Addr: srv.Addr(), XCLIENT: true, Hostname: "proxy.test", IdentityBestEffort: tt.bestEffort}
			c, err := d.Dial(context.Background(), hostile)
			if tt.err != nil {
				assert.ErrorIs(t, err, tt.err)
				srv.Close()
			} else {
				require.NoError(t, err)
				assert.Equal(t, tt.greeting, string(c.Greeting))
				quit(t, c) // the fake sees QUIT right after XCLIENT: no extra line
				require.NoError(t, c.Close())
				srv.Close()
			}
			if tt.advertise {
				assert.Equal(t, []string{"XCLIENT ADDR=IPV6:2001:db8::1 PORT=5000 DESTADDR=[UNAVAILABLE] DESTPORT=[UNAVAILABLE] HELO=a+20b+0D+0AMAIL+20FROM:<x>+0Ac+3Dd+2Be PROTO=ESMTP\r\n"}, got)
			}
		})
	}
}

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
