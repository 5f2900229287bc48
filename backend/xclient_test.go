package backend

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
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
		// Unknown HELO and PROTO are left out: Postfix refuses
		// PROTO=[UNAVAILABLE] (seen with Postfix 3.7 in the integration suite).
		{"unknown", ClientInfo{}, all,
			"XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] DESTADDR=[UNAVAILABLE] DESTPORT=[UNAVAILABLE]\r\n"},
		{"ipv6 and helo", ClientInfo{Src: v6, Dst: mapped, Helo: "h", HeloVerb: "helo"}, all,
			"XCLIENT ADDR=IPV6:2001:db8::7 PORT=1234 DESTADDR=198.51.100.9 DESTPORT=25 HELO=h PROTO=SMTP\r\n"},
		{"only advertised", ClientInfo{Src: v6, HeloVerb: "EHLO"}, []string{"addr", "PROTO"},
			"XCLIENT ADDR=IPV6:2001:db8::7 PROTO=ESMTP\r\n"},
		{"nothing listed means all", ClientInfo{Helo: "h", HeloVerb: "EHLO"}, nil,
			"XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] DESTADDR=[UNAVAILABLE] DESTPORT=[UNAVAILABLE] HELO=h PROTO=ESMTP\r\n"},
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
				if tt.advertise {
					assert.Equal(t, []string{"xclient"}, c.Identity)
				} else {
					assert.Empty(t, c.Identity, "best effort: XCLIENT not sent")
				}
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
