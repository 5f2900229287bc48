package monitor

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
	"github.com/stretchr/testify/assert"
)

// pop3Server is a small in-test POP3 server (RFC 1939 with CAPA and STLS)
// holding testUser with two messages. stls, when not nil, offers STLS.
func pop3Server(stls *tls.Config, noCapa bool) func(net.Conn) {
	return func(c net.Conn) {
		_, _ = io.WriteString(c, "+OK POP3 test server ready\r\n")
		r := bufio.NewReader(c)
		var user string
		authed := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			var reply string
			switch strings.ToUpper(verb) {
			case "CAPA":
				reply = pop3Capa(stls != nil, noCapa)
			case "STLS":
				if stls == nil {
					reply = "-ERR STLS not supported\r\n"
					break
				}
				_, _ = io.WriteString(c, "+OK begin TLS negotiation\r\n")
				tc := tls.Server(c, stls)
				if tc.Handshake() != nil {
					return
				}
				c, r = tc, bufio.NewReader(tc)
				continue
			case "USER":
				user, reply = arg, "+OK\r\n"
			case "PASS":
				authed = user == testUser && arg == testPass
				reply = map[bool]string{true: "+OK maildrop locked\r\n", false: "-ERR [AUTH] invalid password\r\n"}[authed]
			case "STAT":
				reply = map[bool]string{true: "+OK 2 320\r\n", false: "-ERR not authenticated\r\n"}[authed]
			case "QUIT":
				_, _ = io.WriteString(c, "+OK bye\r\n")
				return
			default:
				reply = "-ERR unknown command\r\n"
			}
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
	}
}

func pop3Capa(stls, refuse bool) string {
	if refuse {
		return "-ERR unknown command\r\n"
	}
	s := "+OK capability list follows\r\nUSER\r\nTOP\r\n"
	if stls {
		s += "STLS\r\n"
	}
	return s + ".\r\n"
}

func TestPOP3Probe(t *testing.T) {
	p := newPKI(t, nil)
	tests := []struct {
		name     string
		implicit bool
		stls     bool
		noCapa   bool
		handle   func(net.Conn) // replaces the test server when set
		probe    POP3
		kind     error
		reason   string
	}{
		{name: "plain no login", probe: POP3{}},
		{name: "plain login stat", probe: POP3{Username: testUser, Password: testPass}},
		{name: "old server without CAPA", noCapa: true, probe: POP3{Username: testUser, Password: testPass}},
		{name: "stls login", stls: true, probe: POP3{Security: starttls.STARTTLS, TLSConfig: p.client(testHost), Username: testUser, Password: testPass}},
		{name: "implicit tls login", implicit: true, probe: POP3{Security: starttls.TLS, TLSConfig: p.client(testHost), Username: testUser, Password: testPass}},
		{name: "wrong password", probe: POP3{Username: testUser, Password: "nope"},
			kind: ErrAuth, reason: "login failed: -ERR [AUTH] invalid password"},
		{name: "stls not offered", probe: POP3{Security: starttls.STARTTLS, TLSConfig: p.client(testHost)},
			kind: ErrStartTLS, reason: "STARTTLS not offered (no STLS in CAPA)"},
		{name: "stls wrong name", stls: true, probe: POP3{Security: starttls.STARTTLS, TLSConfig: p.client("other.example.test")},
			kind: ErrTLS, reason: "TLS verify failed: x509: certificate is valid for mail.example.test, not other.example.test"},
		{name: "err greeting", handle: greets("-ERR maildrop server down\r\n"),
			kind: ErrGreeting, reason: "wrong greeting: -ERR maildrop server down"},
		{name: "silent", handle: silent, kind: ErrNoGreeting, reason: "no greeting within 300ms"},
		{name: "slow greeting is still up", handle: slowly("+OK slow\r\n", script("", func(line string) string {
			if strings.EqualFold(line, "CAPA") {
				return "+OK\r\nUSER\r\n.\r\n"
			}
			return "+OK\r\n"
		}))},
		{name: "garbage greeting", handle: greets("220 smtp.example.test ESMTP\r\n"),
			kind: ErrGreeting, reason: `wrong greeting: not POP3: pop3client: malformed reply: "220 smtp.example.test ESMTP"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			var listenTLS, stls *tls.Config
			if tt.implicit {
				listenTLS = p.server
			}
			if tt.stls {
				stls = p.server
			}
			h := tt.handle
			if h == nil {
				h = pop3Server(stls, tt.noCapa)
			}
			addr := serveFunc(t, listenTLS, h)
			r := tt.probe.Probe(probeCtx(t, tt.reason), addr)
			checkResult(t, r, tt.kind, tt.reason)
			if tt.kind == nil && tt.probe.Security != starttls.Plain {
				assert.True(t, strings.HasPrefix(r.Detail, "TLS 1.3, certificate expires in"), r.Detail)
			}
		})
	}
}

func TestPOP3ProbeConnectRefused(t *testing.T) {
	r := POP3{}.Probe(probeCtx(t, ""), closedAddr(t))
	assert.ErrorIs(t, r.Err, ErrConnect)
}
