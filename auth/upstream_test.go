package auth

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// The upstream tests run loginUpstream against scripted fake backends on
// the other end of a net.Pipe: each step waits for the exact line the
// proxy must send, then writes the backend's answer; after the script any
// further line the proxy sends fails the test.

const (
	upUser = "joe"
	upPass = "s3cr3t-P4ss"
)

func upB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// upStep is one exchange of a fake backend: wait for want (a line without
// its CRLF; "" waits for nothing), then send send as it is, or hang up if
// send is upHangup.
type upStep struct{ want, send string }

const upHangup = "\x00hang up"

// upFake starts a fake backend for one connection and returns the proxy's
// end as the Dialer would: greeting read, no deadline. finish closes the
// proxy's end and waits for the fake.
func upFake(t *testing.T, greeting string, upgraded bool, script ...upStep) (be *backend.Conn, finish func()) {
	t.Helper()
	a, b := net.Pipe()
	be = &backend.Conn{Conn: a, Greeting: []byte(greeting), Upgraded: upgraded}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer b.Close()
		br := bufio.NewReader(b)
		for i, st := range script {
			if st.want != "" {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Errorf("fake, step %d: waiting for %q: %v", i, st.want, err)
					return
				}
				if line != st.want+"\r\n" {
					t.Errorf("fake, step %d: got %q, want %q", i, line, st.want+"\r\n")
					return
				}
			}
			if st.send == upHangup {
				return
			}
			if st.send != "" {
				if _, err := io.WriteString(b, st.send); err != nil {
					t.Errorf("fake, step %d: sending %q: %v", i, st.send, err)
					return
				}
			}
		}
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				t.Errorf("fake: unexpected %q after the script", line)
			}
			if err != nil {
				return
			}
		}
	})
	var once sync.Once
	return be, func() {
		once.Do(func() {
			be.Close()
			wg.Wait()
		})
	}
}

// upRun logs in u against a fake backend running script, and checks that
// the error, if any, shows no credential.
func upRun(t *testing.T, u upstream, greeting string, script ...upStep) (upstreamReply, error) {
	t.Helper()
	be, finish := upFake(t, greeting, false, script...)
	defer finish()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := loginUpstream(ctx, be, u)
	upNoSecrets(t, u, err)
	return rep, err
}

// upNoSecrets fails if err shows the password or a SASL response.
func upNoSecrets(t testing.TB, u upstream, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range upSecrets(u) {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q shows the credential %q", err, s)
		}
		var r *upstreamRefusal
		if errors.As(err, &r) && strings.Contains(r.Text, s) {
			t.Errorf("refusal text %q shows the credential %q", r.Text, s)
		}
	}
}

func upSecrets(u upstream) []string {
	var out []string
	for _, s := range []string{u.Password, upB64(u.Password), upB64(u.AuthzID + "\x00" + u.User + "\x00" + u.Password)} {
		if u.Password != "" {
			out = append(out, s)
		}
	}
	return out
}

// upRefusal returns the refusal err holds, failing the test if there is
// none.
func upRefusal(t *testing.T, err error) *upstreamRefusal {
	t.Helper()
	var r *upstreamRefusal
	require.ErrorAs(t, err, &r)
	assert.ErrorIs(t, err, ErrBackendLogin)
	return r
}

// upNotRefusal checks an error that is not a refusal: it wraps
// ErrBackendLogin and target.
func upNotRefusal(t *testing.T, err error, target error) {
	t.Helper()
	require.Error(t, err)
	var r *upstreamRefusal
	assert.False(t, errors.As(err, &r), "%v is a refusal", err)
	assert.ErrorIs(t, err, ErrBackendLogin)
	assert.ErrorIs(t, err, target)
}

const (
	smtpGreeting = "220 mx.example ESMTP\r\n"
	smtpEHLO     = "EHLO client.example"
)

func smtpUser() upstream {
	return upstream{Protocol: starttls.SMTP, User: upUser, Password: upPass, Helo: "client.example"}
}

func TestUpstreamSMTP(t *testing.T) {
	leaktest.Check(t)
	long := strings.Repeat("p", 400)
	tests := []struct {
		name   string
		u      func(u *upstream)
		script []upStep
		text   string
	}{
		{"PLAIN with initial response", nil, []upStep{
			{smtpEHLO, "250-mx.example\r\n250-PIPELINING\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n"},
			{"AUTH PLAIN " + upB64("\x00joe\x00"+upPass), "235 2.7.0 Authentication successful\r\n"},
		}, "Authentication successful"},
		{"PLAIN as master user", func(u *upstream) { u.AuthzID = "mailbox@example.com" }, []upStep{
			{smtpEHLO, "250-mx.example\r\n250 AUTH PLAIN LOGIN\r\n"},
			{"AUTH PLAIN " + upB64("mailbox@example.com\x00joe\x00"+upPass), "235 ok\r\n"},
		}, "ok"},
		{"PLAIN too long for the command line", func(u *upstream) { u.Password = long }, []upStep{
			{smtpEHLO, "250-mx.example\r\n250 AUTH PLAIN\r\n"},
			{"AUTH PLAIN", "334 \r\n"},
			{upB64("\x00joe\x00" + long), "235 2.7.0 Accepted\r\n"},
		}, "Accepted"},
		{"LOGIN only (Exchange)", nil, []upStep{
			{smtpEHLO, "250-exchange.example Hello\r\n250-AUTH NTLM LOGIN\r\n250 CHUNKING\r\n"},
			{"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
			{upB64(upUser), "334 UGFzc3dvcmQ6\r\n"},
			{upB64(upPass), "235 2.7.0 Authentication successful\r\n"},
		}, "Authentication successful"},
		{"LOGIN in the AUTH= form, prompts worded otherwise", nil, []upStep{
			{smtpEHLO, "250-mx.example\r\n250 AUTH=LOGIN\r\n"},
			{"AUTH LOGIN", "334 dXNlcg==\r\n"},
			{upB64(upUser), "334 cGFzcw==\r\n"},
			{upB64(upPass), "235 yes\r\n"},
		}, "yes"},
		{"XCLIENT LOGIN", func(u *upstream) { u.NoLogin, u.Password, u.User = true, "", "a b+c=d" }, []upStep{
			{smtpEHLO, "250-postfix.example\r\n250-XCLIENT NAME ADDR PROTO HELO LOGIN\r\n250 AUTH PLAIN\r\n"},
			{"XCLIENT LOGIN=a+20b+2Bc+3Dd", "220 postfix.example ESMTP Postfix\r\n"},
			{smtpEHLO, "250-postfix.example\r\n250 AUTH PLAIN\r\n"},
		}, "postfix.example ESMTP Postfix"},
		{"default EHLO name", func(u *upstream) { u.Helo = "" }, []upStep{
			{"EHLO localhost", "250-mx\r\n250 AUTH PLAIN\r\n"},
			{"AUTH PLAIN " + upB64("\x00joe\x00"+upPass), "235\r\n"},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := smtpUser()
			if tt.u != nil {
				tt.u(&u)
			}
			rep, err := upRun(t, u, smtpGreeting, tt.script...)
			require.NoError(t, err)
			assert.Equal(t, tt.text, rep.Text)
			assert.Nil(t, rep.Capabilities)
		})
	}
}

func TestUpstreamSMTPFailures(t *testing.T) {
	leaktest.Check(t)
	ehlo := func(ext string) upStep { return upStep{smtpEHLO, "250-mx.example\r\n" + ext} }
	plain := "AUTH PLAIN " + upB64("\x00joe\x00"+upPass)
	tests := []struct {
		name      string
		u         func(u *upstream)
		script    []upStep
		refusal   bool
		temporary bool
		text      string
		err       error
	}{
		{name: "refused 535", script: []upStep{ehlo("250 AUTH PLAIN\r\n"), {plain, "535 5.7.8 Authentication credentials invalid\r\n"}},
			refusal: true, text: "Authentication credentials invalid"},
		{name: "temporary 454", script: []upStep{ehlo("250 AUTH PLAIN\r\n"), {plain, "454 4.7.0 Temporary authentication failure\r\n"}},
			refusal: true, temporary: true, text: "Temporary authentication failure"},
		{name: "LOGIN refused after the user name", script: []upStep{ehlo("250 AUTH LOGIN\r\n"), {"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"}, {upB64(upUser), "535 5.7.8 no\r\n"}},
			refusal: true, text: "no"},
		{name: "no AUTH", script: []upStep{ehlo("250 SIZE 100\r\n")}, err: errNoMechanism},
		{name: "only CRAM-MD5", script: []upStep{ehlo("250 AUTH CRAM-MD5\r\n")}, err: errNoMechanism},
		{name: "master user without PLAIN", u: func(u *upstream) { u.AuthzID = "box" }, script: []upStep{ehlo("250 AUTH LOGIN\r\n")}, err: errNoMechanism},
		{name: "XCLIENT not offered", u: func(u *upstream) { u.NoLogin = true }, script: []upStep{ehlo("250 AUTH PLAIN\r\n")}, err: backend.ErrIdentity},
		{name: "XCLIENT without LOGIN", u: func(u *upstream) { u.NoLogin = true }, script: []upStep{ehlo("250 XCLIENT ADDR NAME\r\n")}, err: backend.ErrIdentity},
		{name: "XCLIENT refused", u: func(u *upstream) { u.NoLogin = true }, script: []upStep{ehlo("250 XCLIENT LOGIN\r\n"),
			{"XCLIENT LOGIN=joe", "550 5.7.0 Error: insufficient authorization\r\n"}}, err: backend.ErrIdentity},
		{name: "EHLO refused", script: []upStep{{smtpEHLO, "554 5.7.1 go away\r\n"}}, err: backend.ErrProtocol},
		{name: "challenge after PLAIN", script: []upStep{ehlo("250 AUTH PLAIN\r\n"), {plain, "334 more\r\n"}}, err: backend.ErrProtocol},
		{name: "third LOGIN challenge", script: []upStep{ehlo("250 AUTH LOGIN\r\n"), {"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
			{upB64(upUser), "334 UGFzc3dvcmQ6\r\n"}, {upB64(upPass), "334 again\r\n"}}, err: backend.ErrProtocol},
		{name: "malformed reply", script: []upStep{ehlo("250 AUTH PLAIN\r\n"), {plain, "hello " + upPass + "\r\n"}}, err: backend.ErrProtocol},
		{name: "unexpected code", script: []upStep{ehlo("250 AUTH PLAIN\r\n"), {plain, "250 " + upB64("\x00joe\x00"+upPass) + "\r\n"}}, err: backend.ErrProtocol},
		{name: "closed mid-reply", script: []upStep{ehlo("250 AUTH PLAIN\r\n"), {plain, "235-half\r\n"}, {"", upHangup}}, err: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := smtpUser()
			if tt.u != nil {
				tt.u(&u)
			}
			_, err := upRun(t, u, smtpGreeting, tt.script...)
			if !tt.refusal {
				upNotRefusal(t, err, tt.err)
				return
			}
			r := upRefusal(t, err)
			assert.Equal(t, tt.temporary, r.Temporary)
			assert.Equal(t, tt.text, r.Text)
		})
	}
}

const imapGreeting = "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN] ready\r\n"

func imapUser() upstream {
	return upstream{Protocol: starttls.IMAP, User: upUser, Password: upPass}
}

func TestUpstreamIMAP(t *testing.T) {
	leaktest.Check(t)
	const noCaps = "* OK ready\r\n"
	loggedIn := "A1 OK [CAPABILITY IMAP4rev1 IDLE STARTTLS LOGINDISABLED AUTH=PLAIN AUTH=LOGIN MOVE] Logged in\r\n"
	tests := []struct {
		name     string
		u        func(u *upstream)
		greeting string
		upgraded bool
		script   []upStep
		caps     []string
		text     string
	}{
		{"LOGIN atoms, capabilities from the tagged OK", nil, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n", false, []upStep{
			{"A1 LOGIN joe " + upPass, loggedIn},
		}, []string{"IMAP4rev1", "IDLE", "MOVE"}, "Logged in"},
		{"LOGIN quoted", func(u *upstream) { u.User, u.Password = "joe smith", `p a"s\s` }, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{`A1 LOGIN "joe smith" "p a\"s\\s"`, "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGIN empty user", func(u *upstream) { u.User = "" }, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{`A1 LOGIN "" ` + upPass, "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGIN synchronising literal", func(u *upstream) { u.Password = "pässwörd" }, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{"A1 LOGIN joe {10}", "+ Ready for literal data\r\n"},
			{"pässwörd", "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGIN two synchronising literals", func(u *upstream) { u.User, u.Password = "jöe", "pässwörd" }, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{"A1 LOGIN {4}", "+\r\n"},
			{"jöe {10}", "* OK [ALERT] untagged lines are skipped\r\n+ go on\r\n"},
			{"pässwörd", "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGIN with LITERAL+", func(u *upstream) { u.Password = "pässwörd" }, "* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n", false, []upStep{
			{"A1 LOGIN joe {10+}", ""},
			{"pässwörd", "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGIN with LITERAL- and a short literal", func(u *upstream) { u.Password = "pässwörd" }, "* OK [CAPABILITY IMAP4rev1 LITERAL-] hi\r\n", false, []upStep{
			{"A1 LOGIN joe {10+}", ""},
			{"pässwörd", "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGIN with LITERAL- and a long literal", func(u *upstream) { u.Password = strings.Repeat("ü", 2049) }, "* OK [CAPABILITY IMAP4rev1 LITERAL-] hi\r\n", false, []upStep{
			{"A1 LOGIN joe {4098}", "+ ok\r\n"},
			{strings.Repeat("ü", 2049), "A1 OK done\r\n"},
		}, nil, "done"},
		{"LOGINDISABLED: AUTHENTICATE PLAIN with SASL-IR", nil, "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGINDISABLED AUTH=PLAIN AUTH=LOGIN] hi\r\n", false, []upStep{
			{"A1 AUTHENTICATE PLAIN " + upB64("\x00joe\x00"+upPass), "A1 OK Logged in\r\n"},
		}, nil, "Logged in"},
		{"LOGINDISABLED: AUTHENTICATE PLAIN without SASL-IR", nil, "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] hi\r\n", false, []upStep{
			{"A1 AUTHENTICATE PLAIN", "+ \r\n"},
			{upB64("\x00joe\x00" + upPass), "A1 OK Logged in\r\n"},
		}, nil, "Logged in"},
		{"LOGINDISABLED: AUTHENTICATE LOGIN", nil, "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGINDISABLED AUTH=LOGIN] hi\r\n", false, []upStep{
			{"A1 AUTHENTICATE LOGIN", "+ VXNlcm5hbWU6\r\n"},
			{upB64(upUser), "+ UGFzc3dvcmQ6\r\n"},
			{upB64(upPass), "A1 OK Logged in\r\n"},
		}, nil, "Logged in"},
		{"master user: AUTHENTICATE PLAIN though LOGIN is allowed", func(u *upstream) { u.User, u.AuthzID = "master", "joe@example.com" }, imapGreeting, false, []upStep{
			{"A1 AUTHENTICATE PLAIN " + upB64("joe@example.com\x00master\x00"+upPass), "A1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"},
		}, []string{"IMAP4rev1"}, "Logged in"},
		{"no capabilities in the greeting: CAPABILITY first", nil, noCaps, false, []upStep{
			{"A1 CAPABILITY", "* CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN\r\nA1 OK done\r\n"},
			{"A2 AUTHENTICATE PLAIN", "+\r\n"},
			{upB64("\x00joe\x00" + upPass), "A2 OK Logged in\r\n"},
		}, nil, "Logged in"},
		{"after STARTTLS the greeting's capabilities are stale", nil, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n", true, []upStep{
			{"A1 CAPABILITY", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA1 OK done\r\n"},
			{"A2 LOGIN joe " + upPass, "A2 OK in\r\n"},
		}, nil, "in"},
		{"untagged CAPABILITY during the login", nil, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{"A1 LOGIN joe " + upPass, "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN IDLE\r\n* 3 EXISTS\r\n* OK [ALERT] hello\r\nA1 OK Logged in\r\n"},
		}, []string{"IMAP4rev1", "IDLE"}, "Logged in"},
		{"the tagged code wins over an untagged CAPABILITY", nil, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{"A1 LOGIN joe " + upPass, "* CAPABILITY IMAP4rev1 OLD\r\nA1 OK [CAPABILITY IMAP4rev1 NEW] Logged in\r\n"},
		}, []string{"IMAP4rev1", "NEW"}, "Logged in"},
		{"the CAPABILITY answer before the login is not the one after", nil, noCaps, false, []upStep{
			{"A1 CAPABILITY", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nA1 OK done\r\n"},
			{"A2 LOGIN joe " + upPass, "A2 OK Logged in\r\n"},
		}, nil, "Logged in"},
		{"capabilities all removed", nil, "* OK [CAPABILITY IMAP4rev1] hi\r\n", false, []upStep{
			{"A1 LOGIN joe " + upPass, "A1 OK [CAPABILITY STARTTLS AUTH=PLAIN] in\r\n"},
		}, []string{}, "in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := imapUser()
			if tt.u != nil {
				tt.u(&u)
			}
			be, finish := upFake(t, tt.greeting, tt.upgraded, tt.script...)
			defer finish()
			rep, err := loginUpstream(context.Background(), be, u)
			require.NoError(t, err)
			assert.Equal(t, tt.caps, rep.Capabilities)
			assert.Equal(t, tt.text, rep.Text)
		})
	}
}

func TestUpstreamIMAPFailures(t *testing.T) {
	leaktest.Check(t)
	login := "A1 LOGIN joe " + upPass
	tests := []struct {
		name      string
		u         func(u *upstream)
		greeting  string
		script    []upStep
		refusal   bool
		temporary bool
		text      string
		err       error
	}{
		{name: "NO", script: []upStep{{login, "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"}},
			refusal: true, text: "Authentication failed."},
		{name: "NO [UNAVAILABLE]", script: []upStep{{login, "A1 NO [UNAVAILABLE] Temporary authentication failure.\r\n"}},
			refusal: true, temporary: true, text: "Temporary authentication failure."},
		{name: "NO to a synchronising literal", u: func(u *upstream) { u.Password = "pässwörd" },
			script: []upStep{{"A1 LOGIN joe {10}", "A1 NO [AUTHENTICATIONFAILED] nope\r\n"}}, refusal: true, text: "nope"},
		{name: "BAD to a synchronising literal", u: func(u *upstream) { u.Password = "pässwörd" },
			script: []upStep{{"A1 LOGIN joe {10}", "A1 BAD literal too big\r\n"}}, refusal: true, text: "literal too big"},
		{name: "OK before the password", u: func(u *upstream) { u.Password = "pässwörd" },
			script: []upStep{{"A1 LOGIN joe {10}", "A1 OK what\r\n"}}, err: backend.ErrProtocol},
		{name: "NO to AUTHENTICATE", u: func(u *upstream) { u.AuthzID = "box" },
			script: []upStep{{"A1 AUTHENTICATE PLAIN " + upB64("box\x00joe\x00"+upPass), "A1 NO [AUTHORIZATIONFAILED] not a master\r\n"}}, refusal: true, text: "not a master"},
		{name: "BAD", script: []upStep{{login, "A1 BAD [CLIENTBUG] Error in IMAP command\r\n"}}, err: backend.ErrProtocol},
		{name: "BAD echoing the password", script: []upStep{{login, "A1 BAD unknown: " + login + "\r\n"}}, err: backend.ErrProtocol},
		{name: "literal in an untagged answer", script: []upStep{{login, "* 1 FETCH (BODY[] {5}\r\nhello)\r\nA1 OK in\r\n"}}, err: backend.ErrProtocol},
		{name: "untagged BYE", script: []upStep{{login, "* BYE shutting down\r\n"}}, err: backend.ErrRefused},
		{name: "another tag", script: []upStep{{login, "A7 OK in\r\n"}}, err: backend.ErrProtocol},
		{name: "malformed", script: []upStep{{login, "garbage\r\n"}}, err: backend.ErrProtocol},
		{name: "continuation to LOGIN", script: []upStep{{login, "+ more\r\n"}}, err: backend.ErrProtocol},
		{name: "endless untagged answers", script: []upStep{{login, strings.Repeat("* OK still here\r\n", upstreamMaxLines)}}, err: backend.ErrProtocol},
		{name: "LOGINDISABLED and no mechanism", greeting: "* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI] hi\r\n", err: errNoMechanism},
		{name: "master user without AUTH=PLAIN", u: func(u *upstream) { u.AuthzID = "box" }, greeting: "* OK [CAPABILITY IMAP4rev1] hi\r\n", err: errNoMechanism},
		{name: "CAPABILITY refused", greeting: "* OK hi\r\n", script: []upStep{{"A1 CAPABILITY", "A1 BAD no\r\n"}}, err: backend.ErrProtocol},
		{name: "unexpected challenge", u: func(u *upstream) { u.AuthzID = "box" },
			script: []upStep{{"A1 AUTHENTICATE PLAIN " + upB64("box\x00joe\x00"+upPass), "+ more\r\n"}}, err: backend.ErrProtocol},
		{name: "line too long", u: func(u *upstream) { u.MaxLineLength = 64 }, script: []upStep{{login, "A1 OK " + strings.Repeat("x", 100) + "\r\n"}}, err: backend.ErrLineTooLong},
		{name: "NoLogin", u: func(u *upstream) { u.NoLogin = true }, err: errNoMechanism},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := imapUser()
			if tt.u != nil {
				tt.u(&u)
			}
			g := tt.greeting
			if g == "" {
				g = "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n"
			}
			rep, err := upRun(t, u, g, tt.script...)
			assert.Equal(t, upstreamReply{}, rep)
			if !tt.refusal {
				upNotRefusal(t, err, tt.err)
				return
			}
			r := upRefusal(t, err)
			assert.Equal(t, tt.temporary, r.Temporary)
			assert.Equal(t, tt.text, r.Text)
		})
	}
}

const pop3Greeting = "+OK Dovecot ready.\r\n"

func pop3User() upstream {
	return upstream{Protocol: starttls.POP3, User: upUser, Password: upPass}
}

func TestUpstreamPOP3(t *testing.T) {
	leaktest.Check(t)
	long := strings.Repeat("p", 200)
	tests := []struct {
		name   string
		u      func(u *upstream)
		script []upStep
		text   string
	}{
		{"USER/PASS", nil, []upStep{
			{"CAPA", "+OK\r\nTOP\r\nUSER\r\nUIDL\r\n.\r\n"},
			{"USER joe", "+OK\r\n"},
			{"PASS " + upPass, "+OK Logged in.\r\n"},
		}, "Logged in."},
		{"AUTH PLAIN with initial response", nil, []upStep{
			{"CAPA", "+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\n.\r\n"},
			{"AUTH PLAIN " + upB64("\x00joe\x00"+upPass), "+OK [IN-USE] Logged in.\r\n"},
		}, "Logged in."},
		{"AUTH PLAIN too long for the command line", func(u *upstream) { u.Password = long }, []upStep{
			{"CAPA", "+OK\r\nSASL PLAIN\r\n.\r\n"},
			{"AUTH PLAIN", "+ \r\n"},
			{upB64("\x00joe\x00" + long), "+OK\r\n"},
		}, ""},
		{"master user", func(u *upstream) { u.User, u.AuthzID = "master", "joe" }, []upStep{
			{"CAPA", "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"},
			{"AUTH PLAIN " + upB64("joe\x00master\x00"+upPass), "+OK Logged in.\r\n"},
		}, "Logged in."},
		{"CAPA refused: USER/PASS", nil, []upStep{
			{"CAPA", "-ERR unknown command\r\n"},
			{"USER joe", "+OK\r\n"},
			{"PASS " + upPass, "+OK maildrop has 2 messages\r\n"},
		}, "maildrop has 2 messages"},
		{"SASL without USER: AUTH LOGIN", nil, []upStep{
			{"CAPA", "+OK\r\nSASL LOGIN NTLM\r\n.\r\n"},
			{"AUTH LOGIN", "+ VXNlcm5hbWU6\r\n"},
			{upB64(upUser), "+ UGFzc3dvcmQ6\r\n"},
			{upB64(upPass), "+OK\r\n"},
		}, ""},
		{"SASL with USER but no PLAIN: USER/PASS", nil, []upStep{
			{"CAPA", "+OK\r\nSASL LOGIN\r\nUSER\r\n.\r\n"},
			{"USER joe", "+OK\r\n"},
			{"PASS " + upPass, "+OK\r\n"},
		}, ""},
		{"password with spaces", func(u *upstream) { u.Password = "a b  c" }, []upStep{
			{"CAPA", "+OK\r\nUSER\r\n.\r\n"},
			{"USER joe", "+OK\r\n"},
			{"PASS a b  c", "+OK\r\n"},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := pop3User()
			if tt.u != nil {
				tt.u(&u)
			}
			rep, err := upRun(t, u, pop3Greeting, tt.script...)
			require.NoError(t, err)
			assert.Equal(t, tt.text, rep.Text)
			assert.Nil(t, rep.Capabilities)
		})
	}
}

func TestUpstreamPOP3Failures(t *testing.T) {
	leaktest.Check(t)
	capa := upStep{"CAPA", "+OK\r\nUSER\r\n.\r\n"}
	user := upStep{"USER joe", "+OK\r\n"}
	pass := "PASS " + upPass
	tests := []struct {
		name      string
		u         func(u *upstream)
		script    []upStep
		refusal   bool
		temporary bool
		text      string
		err       error
	}{
		{name: "-ERR [AUTH]", script: []upStep{capa, user, {pass, "-ERR [AUTH] Authentication failed.\r\n"}}, refusal: true, text: "Authentication failed."},
		{name: "-ERR [SYS/TEMP]", script: []upStep{capa, user, {pass, "-ERR [SYS/TEMP] Temporary authentication failure.\r\n"}},
			refusal: true, temporary: true, text: "Temporary authentication failure."},
		{name: "-ERR [IN-USE]", script: []upStep{capa, user, {pass, "-ERR [IN-USE] locked\r\n"}}, refusal: true, temporary: true, text: "locked"},
		{name: "-ERR without a code", script: []upStep{capa, user, {pass, "-ERR\r\n"}}, refusal: true},
		{name: "USER refused", script: []upStep{capa, {"USER joe", "-ERR [AUTH] Plaintext authentication disallowed\r\n"}},
			refusal: true, text: "Plaintext authentication disallowed"},
		{name: "AUTH PLAIN refused", script: []upStep{{"CAPA", "+OK\r\nSASL PLAIN\r\n.\r\n"}, {"AUTH PLAIN " + upB64("\x00joe\x00"+upPass), "-ERR [AUTH] bad " + upB64("\x00joe\x00"+upPass) + "\r\n"}},
			refusal: true, text: ""},
		{name: "SASL without USER, PLAIN or LOGIN", script: []upStep{{"CAPA", "+OK\r\nSASL GSSAPI\r\n.\r\n"}}, err: errNoMechanism},
		{name: "master user without PLAIN", u: func(u *upstream) { u.AuthzID = "box" }, script: []upStep{capa}, err: errNoMechanism},
		{name: "garbage to PASS", script: []upStep{capa, user, {pass, "what " + pass + "\r\n"}}, err: backend.ErrProtocol},
		{name: "continuation to PASS", script: []upStep{capa, user, {pass, "+ more\r\n"}}, err: backend.ErrProtocol},
		{name: "garbage to CAPA", script: []upStep{{"CAPA", "* OK\r\n"}}, err: backend.ErrProtocol},
		{name: "endless CAPA", script: []upStep{{"CAPA", "+OK\r\n" + strings.Repeat("X\r\n", upstreamMaxLines)}}, err: backend.ErrProtocol},
		{name: "unexpected challenge", script: []upStep{{"CAPA", "+OK\r\nSASL PLAIN\r\n.\r\n"}, {"AUTH PLAIN " + upB64("\x00joe\x00"+upPass), "+ more\r\n"}}, err: backend.ErrProtocol},
		{name: "NoLogin", u: func(u *upstream) { u.NoLogin = true }, err: errNoMechanism},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := pop3User()
			if tt.u != nil {
				tt.u(&u)
			}
			_, err := upRun(t, u, pop3Greeting, tt.script...)
			if !tt.refusal {
				upNotRefusal(t, err, tt.err)
				return
			}
			r := upRefusal(t, err)
			assert.Equal(t, tt.temporary, r.Temporary)
			assert.Equal(t, tt.text, r.Text)
		})
	}
}

// TestUpstreamUnsafeValues: a CR, LF or NUL in any value is refused before
// a byte is sent (the fake fails on any line), so nothing can be injected
// into the backend dialogue.
func TestUpstreamUnsafeValues(t *testing.T) {
	leaktest.Check(t)
	for _, proto := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		for name, set := range map[string]func(u *upstream, v string){
			"user":     func(u *upstream, v string) { u.User = v },
			"password": func(u *upstream, v string) { u.Password = v },
			"authzid":  func(u *upstream, v string) { u.AuthzID = v },
			"helo":     func(u *upstream, v string) { u.Helo = v },
		} {
			for _, v := range []string{"joe\r\nRCPT TO:<x@y>", "joe\nA2 DELETE INBOX", "joe\rx", "joe\x00x"} {
				t.Run(proto.String()+"/"+name, func(t *testing.T) {
					u := upstream{Protocol: proto, User: upUser, Password: upPass}
					set(&u, v)
					_, err := upRun(t, u, "")
					upNotRefusal(t, err, errUpstreamUnsafe)
					if name == "password" {
						assert.NotContains(t, err.Error(), "joe")
					}
				})
			}
		}
	}
}

// TestUpstreamLeftover: what the backend sends after its last answer
// stays readable on the Conn, in order, before what follows on the wire.
func TestUpstreamLeftover(t *testing.T) {
	leaktest.Check(t)
	tests := []struct {
		name     string
		u        upstream
		greeting string
		script   []upStep
	}{
		{"smtp", smtpUser(), smtpGreeting, []upStep{
			{smtpEHLO, "250-mx\r\n250 AUTH PLAIN\r\n"},
			{"AUTH PLAIN " + upB64("\x00joe\x00"+upPass), "235 ok\r\n250 early\r\n"},
		}},
		{"imap", imapUser(), imapGreeting, []upStep{
			{"A1 LOGIN joe " + upPass, "A1 OK in\r\n* 1 EXISTS\r\n"},
		}},
		{"pop3", pop3User(), pop3Greeting, []upStep{
			{"CAPA", "+OK\r\nUSER\r\n.\r\n"},
			{"USER joe", "+OK\r\n"},
			{"PASS " + upPass, "+OK in\r\nearly\r\n"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := append(slices.Clip(tt.script), upStep{"", "late\r\n"})
			be, finish := upFake(t, tt.greeting, false, script...)
			defer finish()
			be.Unread([]byte("")) // no-op
			_, err := loginUpstream(context.Background(), be, tt.u)
			require.NoError(t, err)
			last := tt.script[len(tt.script)-1].send
			_, early, _ := strings.Cut(last, "\r\n")
			assert.Equal(t, len(early), be.Buffered())
			got := make([]byte, len(early)+len("late\r\n"))
			be.SetReadDeadline(time.Now().Add(5 * time.Second)) // lost bytes would block
			_, err = io.ReadFull(be, got)
			require.NoError(t, err)
			assert.Equal(t, early+"late\r\n", string(got))
		})
	}
}

// TestUpstreamBufferedBeforeLogin: bytes the Dialer buffered after the
// greeting are read first.
func TestUpstreamBufferedBeforeLogin(t *testing.T) {
	leaktest.Check(t)
	be, finish := upFake(t, imapGreeting, false,
		upStep{"A1 LOGIN joe " + upPass, "A1 OK in\r\n"})
	defer finish()
	be.Unread([]byte("* OK [ALERT] sent with the greeting\r\n"))
	rep, err := loginUpstream(context.Background(), be, imapUser())
	require.NoError(t, err)
	assert.Equal(t, "in", rep.Text)
	assert.Equal(t, 0, be.Buffered())
}

// TestUpstreamDialer runs a login on a connection from a real Dialer over
// loopback.
func TestUpstreamDialer(t *testing.T) {
	leaktest.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		io.WriteString(c, "+OK hi\r\n")
		for _, want := range []string{"CAPA", "USER joe", "PASS " + upPass} {
			line, _ := br.ReadString('\n')
			assert.Equal(t, want+"\r\n", line)
			switch want {
			case "CAPA":
				io.WriteString(c, "+OK\r\nUSER\r\n.\r\n")
			default:
				io.WriteString(c, "+OK\r\n")
			}
		}
		io.Copy(io.Discard, br)
	})
	d := &backend.Dialer{Addr: ln.Addr().String(), Protocol: starttls.POP3}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	be, err := d.Dial(ctx, backend.ClientInfo{})
	require.NoError(t, err)
	defer be.Close()
	_, err = loginUpstream(ctx, be, pop3User())
	require.NoError(t, err)
}

// TestUpstreamDeadline: a mute backend cannot hold the login beyond ctx,
// whether ctx ends by its deadline or by cancellation; after a login within
// ctx no deadline is left on the Conn.
func TestUpstreamDeadline(t *testing.T) {
	leaktest.Check(t)
	mute := []upStep{{want: smtpEHLO}}
	t.Run("deadline", func(t *testing.T) {
		be, finish := upFake(t, smtpGreeting, false, mute...)
		defer finish()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := loginUpstream(ctx, be, smtpUser())
		upNotRefusal(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 3*time.Second)
	})
	t.Run("cancel", func(t *testing.T) {
		be, finish := upFake(t, smtpGreeting, false, mute...)
		defer finish()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := loginUpstream(ctx, be, smtpUser())
		upNotRefusal(t, err, context.Canceled)
		assert.Less(t, time.Since(start), 3*time.Second)
	})
	t.Run("already over", func(t *testing.T) {
		be, finish := upFake(t, smtpGreeting, false)
		defer finish()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := loginUpstream(ctx, be, smtpUser())
		upNotRefusal(t, err, context.Canceled)
	})
	t.Run("no deadline left", func(t *testing.T) {
		be, finish := upFake(t, imapGreeting, false,
			upStep{"A1 LOGIN joe " + upPass, "A1 OK in\r\n"},
			upStep{"A2 NOOP", "A2 OK done\r\n"})
		defer finish()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := loginUpstream(ctx, be, imapUser())
		require.NoError(t, err)
		time.Sleep(200 * time.Millisecond) // past ctx's deadline
		_, err = io.WriteString(be, "A2 NOOP\r\n")
		require.NoError(t, err)
		line, err := bufio.NewReader(be).ReadString('\n')
		require.NoError(t, err, "the deadline was not cleared")
		assert.Equal(t, "A2 OK done\r\n", line)
	})
}

// TestUpstreamEchoedCredentials: a backend that echoes what it got in its
// error answers does not get the password or a SASL response into an
// error or a refusal's text.
func TestUpstreamEchoedCredentials(t *testing.T) {
	leaktest.Check(t)
	plain := upB64("\x00joe\x00" + upPass)
	tests := []struct {
		name     string
		u        upstream
		greeting string
		script   []upStep
	}{
		{"smtp 535", smtpUser(), smtpGreeting, []upStep{{smtpEHLO, "250-mx\r\n250 AUTH PLAIN\r\n"}, {"AUTH PLAIN " + plain, "535 5.7.8 bad AUTH PLAIN " + plain + "\r\n"}}},
		{"smtp LOGIN 535", smtpUser(), smtpGreeting, []upStep{{smtpEHLO, "250-mx\r\n250 AUTH LOGIN\r\n"}, {"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
			{upB64(upUser), "334 UGFzc3dvcmQ6\r\n"}, {upB64(upPass), "535 5.7.8 bad " + upB64(upPass) + "\r\n"}}},
		{"smtp malformed", smtpUser(), smtpGreeting, []upStep{{smtpEHLO, "250-mx\r\n250 AUTH PLAIN\r\n"}, {"AUTH PLAIN " + plain, "xyz" + plain + "\r\n"}}},
		{"smtp 334", smtpUser(), smtpGreeting, []upStep{{smtpEHLO, "250-mx\r\n250 AUTH PLAIN\r\n"}, {"AUTH PLAIN " + plain, "334 " + plain + "\r\n"}}},
		{"smtp mechanisms", upstream{Protocol: starttls.SMTP, User: upUser, Password: upPass}, smtpGreeting, []upStep{{"EHLO localhost", "250-mx\r\n250 AUTH " + upPass + "\r\n"}}},
		{"imap NO", imapUser(), imapGreeting, []upStep{{"A1 LOGIN joe " + upPass, "A1 NO " + upPass + "\r\n"}}},
		{"imap NO quoted", upstream{Protocol: starttls.IMAP, User: upUser, Password: `pa"ss wd`}, imapGreeting, []upStep{{`A1 LOGIN joe "pa\"ss wd"`, "A1 NO you said \"pa\\\"ss wd\"\r\n"}}},
		{"imap BAD", imapUser(), imapGreeting, []upStep{{"A1 LOGIN joe " + upPass, "A1 BAD " + upPass + "\r\n"}}},
		{"imap literal", imapUser(), imapGreeting, []upStep{{"A1 LOGIN joe " + upPass, "* 1 FETCH (" + upPass + " {3}\r\n"}}},
		{"imap garbage", imapUser(), imapGreeting, []upStep{{"A1 LOGIN joe " + upPass, upPass + "\r\n"}}},
		{"imap long line", imapUser(), imapGreeting, []upStep{{"A1 LOGIN joe " + upPass, "A1 BAD " + strings.Repeat("x", 115) + upPass + "\r\n"}}},
		{"pop3 -ERR", pop3User(), pop3Greeting, []upStep{{"CAPA", "-ERR\r\n"}, {"USER joe", "+OK\r\n"}, {"PASS " + upPass, "-ERR [AUTH] PASS " + upPass + "\r\n"}}},
		{"pop3 garbage", pop3User(), pop3Greeting, []upStep{{"CAPA", "-ERR\r\n"}, {"USER joe", "+OK\r\n"}, {"PASS " + upPass, "PASS " + upPass + "\r\n"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := upRun(t, tt.u, tt.greeting, tt.script...)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrBackendLogin)
			upNoSecrets(t, tt.u, err) // upRun checked too; say it here
			assert.NotContains(t, err.Error(), `pa\"ss wd`)
			var r *upstreamRefusal
			if errors.As(err, &r) {
				assert.NotContains(t, r.Text, `pa\"ss wd`, "the password as the backend quoted it")
			}
		})
	}
}

func TestUpstreamIMAPAstring(t *testing.T) {
	tests := []struct {
		in, arg, lit string
		sync         bool
		caps         []string
	}{
		{"joe", "joe", "", false, nil},
		{"joe@example.com", "joe@example.com", "", false, nil},
		{"", `""`, "", false, nil},
		{"a b", `"a b"`, "", false, nil},
		{`a"b\c`, `"a\"b\\c"`, "", false, nil},
		{"a]b", `"a]b"`, "", false, nil},
		{"a{b}", `"a{b}"`, "", false, nil},
		{"tab\there", "{8}\r\n", "tab\there", true, nil},
		{"é", "{2}\r\n", "é", true, nil},
		{"é", "{2+}\r\n", "é", false, []string{"literal+"}},
		{"é", "{2+}\r\n", "é", false, []string{"LITERAL-"}},
	}
	for _, tt := range tests {
		arg, lit, sync := imapAstring(tt.in, tt.caps)
		assert.Equal(t, tt.arg, arg, "%q", tt.in)
		assert.Equal(t, tt.lit, lit, "%q", tt.in)
		assert.Equal(t, tt.sync, sync, "%q", tt.in)
	}
}

func TestUpstreamStripEnhanced(t *testing.T) {
	for in, want := range map[string]string{
		"5.7.8 Authentication credentials invalid": "Authentication credentials invalid",
		"5.7.8":                     "",
		"4.7.0 Try later":           "4.7.0 Try later", // not the reply's class
		"Authentication successful": "Authentication successful",
		"5.7 nope":                  "5.7 nope",
		"5.x.8 nope":                "5.x.8 nope",
		"5.1234.1 nope":             "5.1234.1 nope",
	} {
		assert.Equal(t, want, stripEnhanced(in, 5), in)
	}
}

// upDovecot starts a private Dovecot 2.3 with IMAP and POP3 on loopback
// ports, plaintext logins allowed, the users of upDovecotUsers and a master
// user "master" with password "masterpw"; it returns the IMAP and POP3
// addresses. It skips as the integration suite does (integration/doc.go):
// with MAILEDGE_INTEGRATION=off, with -short, without dovecot or root,
// unless MAILEDGE_INTEGRATION=require makes those failures.
func upDovecot(t *testing.T) (imapAddr, pop3Addr string) {
	t.Helper()
	mode := strings.ToLower(os.Getenv("MAILEDGE_INTEGRATION"))
	switch {
	case mode == "off" || mode == "0" || mode == "false":
		t.Skip("MAILEDGE_INTEGRATION=" + mode)
	case testing.Short() && mode != "require":
		t.Skip("-short")
	}
	skip := func(reason string) {
		t.Helper()
		if mode == "require" {
			t.Fatal("MAILEDGE_INTEGRATION=require but " + reason)
		}
		t.Skip(reason + " (set MAILEDGE_INTEGRATION=require to make this an error)")
	}
	if _, err := exec.LookPath("dovecot"); err != nil {
		skip("dovecot not installed")
	}
	if os.Geteuid() != 0 {
		skip("not root: Dovecot must start as root to drop privileges")
	}
	owner, err := osuser.Lookup("dovecot")
	if err != nil {
		skip("no user dovecot")
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)

	dir, err := os.MkdirTemp("", "mailedge-auth-dovecot-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755)) // Dovecot's own users read their files
	var passwd strings.Builder
	for user, pass := range upDovecotUsers {
		passwd.WriteString(user + ":{PLAIN}" + pass + "\n")
		home := filepath.Join(dir, "home", user)
		require.NoError(t, os.MkdirAll(home, 0o755))
		require.NoError(t, os.Chown(home, uid, gid))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd.String()), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "masters"), []byte("master:{PLAIN}masterpw\n"), 0o644))
	var ports [2]int
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
instance_name = mailedge-auth-%[2]d
listen = 127.0.0.1
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = %[3]d
last_valid_uid = %[3]d
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN %[1]s/masters
  pass = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    port = %[5]d
  }
  inet_listener imaps {
    port = 0
  }
}
# No auth penalty: the refused logins must not slow down the next ones.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = %[6]d
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dir, ports[0], uid, gid, ports[0], ports[1])
	confFile := filepath.Join(dir, "dovecot.conf")
	require.NoError(t, os.WriteFile(confFile, []byte(conf), 0o644))
	out, err := os.Create(filepath.Join(dir, "master.out"))
	require.NoError(t, err)
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command("dovecot", "-F", "-c", confFile)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	imapAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	pop3Addr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Ready once IMAP greets with its capabilities (the auth process is up).
		c, err := net.DialTimeout("tcp", imapAddr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "* OK [CAPABILITY") {
				return imapAddr, pop3Addr
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "master.out"))
			t.Fatalf("dovecot exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot not ready after 20s: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond) // polling a process that cannot notify us
	}
}

// upDovecotUsers are the accounts of upDovecot: an atom password, one sent
// as a quoted string and one sent as a literal.
var upDovecotUsers = map[string]string{
	"demo@example.com":    "demo",
	"quoted@example.com":  `p a"s\s`,
	"literal@example.com": "pä ss\"wörd",
}

// TestUpstreamDovecot logs in at a real Dovecot over IMAP and POP3, as a
// user (LOGIN with an atom, a quoted string and a literal; POP3 AUTH PLAIN)
// and as a master user (SASL PLAIN with an authorization identity), and
// checks the connection is then in the logged-in state.
func TestUpstreamDovecot(t *testing.T) {
	imapAddr, pop3Addr := upDovecot(t)
	leaktest.Check(t)
	tests := []struct {
		name    string
		proto   starttls.Protocol
		u       upstream
		refused bool
	}{
		{"imap atom", starttls.IMAP, upstream{User: "demo@example.com", Password: "demo"}, false},
		{"imap quoted", starttls.IMAP, upstream{User: "quoted@example.com", Password: upDovecotUsers["quoted@example.com"]}, false},
		{"imap literal", starttls.IMAP, upstream{User: "literal@example.com", Password: upDovecotUsers["literal@example.com"]}, false},
		{"imap master user", starttls.IMAP, upstream{User: "master", Password: "masterpw", AuthzID: "demo@example.com"}, false},
		{"imap wrong password", starttls.IMAP, upstream{User: "demo@example.com", Password: "wrong-" + upPass}, true},
		{"imap master user, wrong password", starttls.IMAP, upstream{User: "master", Password: "wrong-" + upPass, AuthzID: "demo@example.com"}, true},
		{"pop3", starttls.POP3, upstream{User: "demo@example.com", Password: "demo"}, false},
		{"pop3 literal password", starttls.POP3, upstream{User: "literal@example.com", Password: upDovecotUsers["literal@example.com"]}, false},
		{"pop3 master user", starttls.POP3, upstream{User: "master", Password: "masterpw", AuthzID: "demo@example.com"}, false},
		{"pop3 wrong password", starttls.POP3, upstream{User: "demo@example.com", Password: "wrong-" + upPass}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := imapAddr
			if tt.proto == starttls.POP3 {
				addr = pop3Addr
			}
			d := &backend.Dialer{Addr: addr, Protocol: tt.proto}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			be, err := d.Dial(ctx, backend.ClientInfo{})
			require.NoError(t, err)
			defer be.Close()
			u := tt.u
			u.Protocol = tt.proto
			rep, err := loginUpstream(ctx, be, u)
			upNoSecrets(t, u, err)
			if tt.refused {
				r := upRefusal(t, err)
				assert.False(t, r.Temporary)
				assert.NotEmpty(t, r.Text)
				return
			}
			require.NoError(t, err)
			br := bufio.NewReader(be)
			if tt.proto == starttls.IMAP {
				assert.Contains(t, rep.Capabilities, "IMAP4rev1")
				for _, c := range rep.Capabilities {
					assert.False(t, strings.HasPrefix(c, "AUTH="), c)
				}
				_, err = io.WriteString(be, "x SELECT INBOX\r\n")
				require.NoError(t, err)
				for {
					line, err := br.ReadString('\n')
					require.NoError(t, err)
					if strings.HasPrefix(line, "x ") {
						assert.True(t, strings.HasPrefix(line, "x OK"), line)
						break
					}
				}
				return
			}
			_, err = io.WriteString(be, "STAT\r\n")
			require.NoError(t, err)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(line, "+OK 0 0"), line)
		})
	}
}
