//go:build unix

// Login at the edge (package auth) end to end: mailedge.Proxy with Login
// set, run in the test process as an application runs it, takes the
// client's login from real clients (curl, Python's imaplib, poplib and
// smtplib, swaks), asks an Authenticator, logs in at a real Dovecot or
// Postfix with the credentials the Result names (the client's, a Dovecot
// master user's, or none for Postfix's XCLIENT LOGIN=) and splices. The
// helpers are in login_helpers_test.go.
package integration_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// stalePass is a password the edge's Authenticator still accepts for user
// but the backend no longer does: the login is allowed at the edge and
// refused by Dovecot or Postfix.
const stalePass = "stale-pw-Hq4n"

// demoAuthenticator allows user with pass, and with stalePass, sending
// both to be; it refuses everything else with the zero Result.
func demoAuthenticator(be auth.Backend) auth.Authenticator {
	return auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
		if r.User == user && (string(r.Password) == pass || string(r.Password) == stalePass) {
			return &auth.Result{OK: true, Backend: be}, nil
		}
		return &auth.Result{}, nil
	})
}

// listsINBOX matches INBOX in the answer to LIST as curl prints it.
var listsINBOX = regexp.MustCompile(`(?m)^\* LIST \([^)]*\) "[./]" "?INBOX"?\r?$`)

// TestLoginIMAP: an implicit-TLS IMAP listener with Login, in front of
// Dovecot's plain port behind a PROXY v2 header (TLS offload: the SSL TLV
// tells Dovecot the client used TLS). curl with AUTHENTICATE PLAIN and
// LOGIN, imaplib's LOGIN and AUTHENTICATE PLAIN each reach the user's
// INBOX (a message seeded there is found); a wrong password is refused at
// the edge with [AUTHENTICATIONFAILED], and so is a password the edge
// allows but Dovecot refuses.
func TestLoginIMAP(t *testing.T) {
	e := need(t)
	be := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", e.dovecot.IMAPProxy), Protocol: starttls.IMAP, Proxy: backend.ProxyV2}
	ed := startEdge(t, e, starttls.IMAP, true, demoAuthenticator(be))
	tok := token("login-imap")
	seedMessage(t, e, e.maildir(), tok)
	dovecotLog := e.dovecot.logFile()

	for _, tt := range []struct{ mech, src string }{
		{auth.Plain, "127.0.0.30"},
		{auth.Login, "127.0.0.31"},
	} {
		t.Run("curl AUTH="+tt.mech, func(t *testing.T) {
			args, url := curlEdge(e, ed, "imaps", tt.src, user, pass)
			args = append(args, "--login-options", "AUTH="+tt.mech)
			out := mustRun(t, "curl", append(args, url+"/")...)
			assert.Contains(t, out, "> A002 AUTHENTICATE "+tt.mech, "curl must have used AUTHENTICATE %s", tt.mech)
			assert.Regexp(t, listsINBOX, out)
			assert.Equal(t, tt.mech, ed.lastRequest(t).Mechanism)
			out = mustRun(t, "curl", append(args, url+"/INBOX?SUBJECT%20"+tok)...)
			assert.Regexp(t, `(?m)^\* SEARCH \d+`, out, "the seeded message must be found in the user's INBOX")
			// Dovecot saw the login from the client's address, over TLS
			// (its "secured": the PROXY header's SSL TLV).
			line := waitLogLine(t, dovecotLog, logWait, "imap-login: Info: Login: user=<"+user+">", "rip="+tt.src+",", "lip="+gatewayIP+",")
			assert.Contains(t, line, "secured")
			in := ed.session(t, tt.src)
			assert.Equal(t, user, in.User)
			assert.Contains(t, []mailedge.Outcome{mailedge.OutcomeOK, mailedge.OutcomeReset}, in.Outcome, "%v", in)
		})
	}

	for _, tt := range []struct{ mode, src, said string }{
		{"imap-login", "127.0.0.32", "login OK"},
		{"imap-plain", "127.0.0.33", "authenticate OK"},
	} {
		t.Run("imaplib "+tt.mode, func(t *testing.T) {
			out := mustPy(t, e, ed, tt.mode, tt.src, user, pass, tok)
			assert.Contains(t, out, tt.said)
			assert.Regexp(t, `(?m)^list OK .*INBOX`, out)
			assert.Regexp(t, `(?m)^select OK [1-9]\d*$`, out)
			assert.Contains(t, out, "search OK 1\n")
			assert.Contains(t, out, "fetched Subject: "+tok)
			waitLogLine(t, dovecotLog, logWait, "imap-login: Info: Login: user=<"+user+">", "rip="+tt.src+",")
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		const src = "127.0.0.34"
		args, url := curlEdge(e, ed, "imaps", src, user, "wrong-"+pass)
		out, err := run(t, "curl", append(args, url+"/")...)
		assert.Equal(t, curlLoginDenied, exitCode(err), "curl must fail with \"Login denied\":\n%s", out)
		assert.Regexp(t, `< A\d+ NO \[AUTHENTICATIONFAILED\] Authentication failed`, out)
		assert.NotRegexp(t, listsINBOX, out)

		const pySrc = "127.0.0.35"
		out = mustPy(t, e, ed, "imap-refused", pySrc, user, "wrong-"+pass, tok)
		assert.Contains(t, out, "refused b'[AUTHENTICATIONFAILED] Authentication failed.'")
		// Refused at the edge: Dovecot never saw these clients, and the
		// sessions name the user who tried.
		for _, s := range []string{src, pySrc} {
			in := ed.session(t, s)
			assertRefused(t, in)
			assert.NotContains(t, readFile(dovecotLog), "rip="+s+",")
		}
	})

	t.Run("refused by Dovecot", func(t *testing.T) {
		// Allowed at the edge, refused by the backend: the client is told
		// what a refusal at the edge says, OnError why.
		const src = "127.0.0.36"
		before := len(ed.onErrors())
		args, url := curlEdge(e, ed, "imaps", src, user, stalePass)
		out, err := run(t, "curl", append(args, url+"/")...)
		assert.Equal(t, curlLoginDenied, exitCode(err), "curl must fail with \"Login denied\":\n%s", out)
		assert.Regexp(t, `< A\d+ NO \[AUTHENTICATIONFAILED\] Authentication failed`, out)
		waitLogLine(t, dovecotLog, logWait, "imap-login: Info:", "auth failed", "user=<"+user+">", "rip="+src+",")
		assertRefused(t, ed.session(t, src))
		errs := ed.onErrors()[before:]
		require.True(t, errAny(errs, auth.ErrBackendLogin), "OnError: %v", errs)
		assert.Contains(t, fmt.Sprint(errs), "Authentication failed", "Dovecot's words reach OnError")
	})
}

// TestLoginIMAPPasswordQuoting: passwords that IMAP must quote or send as
// a literal, to the edge and from the edge to Dovecot: one with a space, a
// double quote and a backslash (a quoted string with escapes), one in
// UTF-8 (a literal: not a valid quoted string in IMAP4rev1). Clients send
// them with AUTHENTICATE PLAIN (curl), LOGIN with a quoted string
// (imaplib) and LOGIN with a literal (on the wire); the proxy sends Dovecot
// the client's credentials with LOGIN, and Dovecot checks them.
func TestLoginIMAPPasswordQuoting(t *testing.T) {
	e := need(t)
	const (
		bob, bobPass   = "bob@example.com", `sp ace"quo\te`
		erin, erinPass = "erin@example.com", "pässwörd-ü"
	)
	d := startLoginDovecot(t, e, [2]string{bob, bobPass}, [2]string{erin, erinPass})
	relay := startTap(t, fmt.Sprintf("127.0.0.1:%d", d.IMAPProxy))
	be := &backend.Dialer{Addr: relay.addr, Protocol: starttls.IMAP, Proxy: backend.ProxyV2}
	ed := startEdge(t, e, starttls.IMAP, true, auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
		// Dovecot checks the password: the edge only routes.
		return &auth.Result{OK: true, Backend: be}, nil
	}))
	log := d.logFile()
	for _, tt := range []struct {
		name, u, pw, options, src, said string
	}{
		{"curl PLAIN UTF-8", erin, erinPass, "AUTH=PLAIN", "127.0.0.90", "> A002 AUTHENTICATE PLAIN " + b64("\x00"+erin+"\x00"+erinPass)},
		{"curl PLAIN quotes", bob, bobPass, "AUTH=PLAIN", "127.0.0.91", "> A002 AUTHENTICATE PLAIN " + b64("\x00"+bob+"\x00"+bobPass)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args, url := curlEdge(e, ed, "imaps", tt.src, tt.u, tt.pw)
			out := mustRun(t, "curl", append(args, "--login-options", tt.options, url+"/")...)
			assert.Contains(t, out, tt.said)
			assert.Regexp(t, listsINBOX, out)
			assert.Equal(t, tt.pw, string(ed.lastRequest(t).Password), "the password as the edge read it")
			waitLogLine(t, log, logWait, "imap-login: Info: Login: user=<"+tt.u+">", "rip="+tt.src+",")
		})
	}
	t.Run("LOGIN literal UTF-8", func(t *testing.T) {
		// curl 7.88 has no way to ask for LOGIN (AUTH=+LOGIN came later)
		// and imaplib sends ASCII only: on the wire, a synchronising
		// literal.
		const src = "127.0.0.92"
		w := dialWire(t, ed.addr, edgeName, src)
		require.True(t, strings.HasPrefix(w.line(), "* OK"))
		w.send(fmt.Sprintf("a LOGIN %s {%d}", erin, len(erinPass)))
		require.True(t, strings.HasPrefix(w.line(), "+ "), "a continuation request for the literal")
		w.send(erinPass)
		require.Contains(t, last(w.until("a ")), "a OK")
		w.send("b SELECT INBOX")
		assert.Contains(t, last(w.until("b ")), "b OK [READ-WRITE] Select completed")
		w.send("c LOGOUT")
		w.until("c ")
		waitLogLine(t, log, logWait, "imap-login: Info: Login: user=<"+erin+">", "rip="+src+",")
	})
	t.Run("imaplib LOGIN quoted", func(t *testing.T) {
		const src = "127.0.0.93"
		out := mustPy(t, e, ed, "imap-login", src, bob, bobPass, "none")
		assert.Contains(t, out, "login OK")
		assert.Regexp(t, `(?m)^select OK 0$`, out)
		waitLogLine(t, log, logWait, "imap-login: Info: Login: user=<"+bob+">", "rip="+src+",")
	})

	// What the proxy sent Dovecot: LOGIN, the password quoted with its
	// escapes, or as a non-synchronising literal (Dovecot offers LITERAL+).
	sent := relay.String()
	assert.Contains(t, sent, "A1 LOGIN "+bob+` "sp ace\"quo\\te"`+"\r\n")
	assert.Contains(t, sent, fmt.Sprintf("A1 LOGIN %s {%d+}\r\n%s\r\n", erin, len(erinPass), erinPass))
}

// TestLoginPOP3: an implicit-TLS POP3 listener with Login, in front of
// Dovecot's plain POP3 port behind a PROXY v2 header. poplib's USER/PASS
// and curl's AUTH PLAIN and AUTH LOGIN reach the user's maildrop, where a
// seeded message is found; a wrong password is refused at the edge with
// -ERR [AUTH].
func TestLoginPOP3(t *testing.T) {
	e := need(t)
	be := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", e.dovecot.POP3Proxy), Protocol: starttls.POP3, Proxy: backend.ProxyV2}
	ed := startEdge(t, e, starttls.POP3, true, demoAuthenticator(be))
	tok := token("login-pop3")
	seedMessage(t, e, e.maildir(), tok)
	dovecotLog := e.dovecot.logFile()

	t.Run("poplib", func(t *testing.T) {
		const src = "127.0.0.40"
		out := mustPy(t, e, ed, "pop3", src, user, pass, tok)
		assert.Contains(t, out, "user +OK\n")
		assert.Contains(t, out, "pass +OK Logged in.\n", "Dovecot's words for the login")
		assert.Regexp(t, `(?m)^stat [1-9]\d* [1-9]\d*$`, out)
		assert.Regexp(t, `(?m)^found \d+$`, out, "the seeded message must be in the maildrop")
		assert.Equal(t, auth.Plain, ed.lastRequest(t).Mechanism)
		line := waitLogLine(t, dovecotLog, logWait, "pop3-login: Info: Login: user=<"+user+">", "rip="+src+",", "lip="+gatewayIP+",")
		assert.Contains(t, line, "secured")
		assert.Equal(t, user, ed.session(t, src).User)
	})

	for _, tt := range []struct{ mech, src string }{
		{auth.Plain, "127.0.0.41"},
		{auth.Login, "127.0.0.42"},
	} {
		t.Run("curl AUTH="+tt.mech, func(t *testing.T) {
			args, url := curlEdge(e, ed, "pop3s", tt.src, user, pass)
			args = append(args, "--login-options", "AUTH="+tt.mech)
			list := mustRun(t, "curl", append(args, url+"/")...)
			assert.Contains(t, list, "> AUTH "+tt.mech)
			assert.Equal(t, tt.mech, ed.lastRequest(t).Mechanism)
			m := regexp.MustCompile(`(?m)^(\d+) \d+\r?$`).FindAllStringSubmatch(list, -1)
			require.NotEmpty(t, m, "LIST: %s", list)
			found := false
			for i := len(m) - 1; i >= 0 && !found; i-- {
				msg := mustRun(t, "curl", append(args, url+"/"+m[i][1])...)
				found = strings.Contains(msg, "Subject: "+tok)
			}
			assert.True(t, found, "no message of the maildrop carries %s", tok)
			waitLogLine(t, dovecotLog, logWait, "pop3-login: Info: Login: user=<"+user+">", "rip="+tt.src+",")
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		const src = "127.0.0.43"
		args, url := curlEdge(e, ed, "pop3s", src, user, "wrong-"+pass)
		out, err := run(t, "curl", append(args, url+"/")...)
		assert.Equal(t, curlLoginDenied, exitCode(err), "curl must fail with \"Login denied\":\n%s", out)
		assert.Contains(t, out, "< -ERR [AUTH] Authentication failed.")
		assertRefused(t, ed.session(t, src))
		assert.NotContains(t, readFile(dovecotLog), "rip="+src+",")
	})
}

// TestLoginDovecotMasterUser: the Authenticator checks the client's own
// password (which Dovecot does not know) and has the proxy log in at
// Dovecot as a master user, in both of Dovecot's ways: SASL PLAIN with the
// user as authorization identity (Result.AuthzID), and "user*master" as
// the login name (Result.User, here from an auth.Static users file). The
// client lands in the user's own mailbox: a message seeded there is found,
// over IMAP and POP3. The backend is Dovecot's plain port, which trusts
// the proxy's loopback connection as secured, reached through a relay that
// records what the proxy sends, so that the test sees both logins on the
// wire.
func TestLoginDovecotMasterUser(t *testing.T) {
	e := need(t)
	d := startLoginDovecot(t, e)
	tok := token("login-master")
	seedMessage(t, e, filepath.Join(d.Home, alice, "Maildir"), tok)
	imapWire, pop3Wire := startTap(t, fmt.Sprintf("127.0.0.1:%d", d.IMAP)), startTap(t, fmt.Sprintf("127.0.0.1:%d", d.POP3))
	imapBE := &backend.Dialer{Addr: imapWire.addr, Protocol: starttls.IMAP}
	pop3BE := &backend.Dialer{Addr: pop3Wire.addr, Protocol: starttls.POP3}
	viaAuthzID := func(be auth.Backend) auth.Authenticator {
		return auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
			if r.User != alice || string(r.Password) != aliceEdge {
				return &auth.Result{}, nil
			}
			return &auth.Result{OK: true, Backend: be, User: master, Password: masterPass, AuthzID: alice}, nil
		})
	}
	users := fmt.Sprintf("# alice types %s at the edge; Dovecot knows her by the master user\n"+
		"%s {PLAIN}%s host=%s user=%%u*%s pass=%s\n", aliceEdge, alice, aliceEdge, imapWire.addr, master, masterPass)
	static, err := auth.ParseStatic(strings.NewReader(users))
	require.NoError(t, err)

	imapChecks := func(t *testing.T, ed *edge, curlSrc, pySrc string) {
		args, url := curlEdge(e, ed, "imaps", curlSrc, alice, aliceEdge)
		out := mustRun(t, "curl", append(args, "--login-options", "AUTH=PLAIN", url+"/INBOX?SUBJECT%20"+tok)...)
		assert.Regexp(t, `(?m)^\* SEARCH \d+`, out, "the message seeded in alice's INBOX must be found")
		assert.Equal(t, alice, ed.session(t, curlSrc).User)

		out = mustPy(t, e, ed, "imap-login", pySrc, alice, aliceEdge, tok)
		assert.Contains(t, out, "login OK")
		assert.Regexp(t, `(?m)^select OK 1$`, out, "alice's INBOX holds the one seeded message")
		assert.Contains(t, out, "search OK 1\n")
		assert.Contains(t, out, "fetched Subject: "+tok)
	}

	// The PLAIN response with alice as authorization identity and the
	// master user's credentials.
	asMaster := b64(alice + "\x00" + master + "\x00" + masterPass)
	t.Run("IMAP AuthzID", func(t *testing.T) {
		ed := startEdge(t, e, starttls.IMAP, true, viaAuthzID(imapBE))
		imapChecks(t, ed, "127.0.0.50", "127.0.0.51")
		// SASL-IR: Dovecot offers it.
		assert.Contains(t, imapWire.String(), "A1 AUTHENTICATE PLAIN "+asMaster+"\r\n")
	})
	t.Run("IMAP user*master", func(t *testing.T) {
		ed := startEdge(t, e, starttls.IMAP, true, static)
		imapChecks(t, ed, "127.0.0.52", "127.0.0.53")
		assert.Equal(t, alice+"*"+master, ed.lastResult(t).User, "the login name at Dovecot")
		// "*" is not an atom character: the name goes quoted.
		assert.Contains(t, imapWire.String(), `A1 LOGIN "`+alice+"*"+master+`" `+masterPass+"\r\n")
	})
	t.Run("POP3 AuthzID", func(t *testing.T) {
		ed := startEdge(t, e, starttls.POP3, true, viaAuthzID(pop3BE))
		out := mustPy(t, e, ed, "pop3", "127.0.0.54", alice, aliceEdge, tok)
		assert.Regexp(t, `(?m)^stat 1 [1-9]\d*$`, out, "alice's maildrop holds the one seeded message")
		assert.Contains(t, out, "found 1\n")
		assert.Contains(t, pop3Wire.String(), "AUTH PLAIN "+asMaster+"\r\n")
	})

	// Dovecot logged every login as alice's by the master user (two
	// clients on each IMAP edge, one on POP3), none as the master user's
	// own.
	log := d.logFile()
	waitLogLine(t, log, logWait, "auth: Info: Master user logging in as "+alice)
	assert.Equal(t, 5, countLines(log, "auth: Info: Master user logging in as "+alice))
	waitLogLine(t, log, logWait, "imap-login: Info: Login: user=<"+alice+">", "method=PLAIN", "secured")
	waitLogLine(t, log, logWait, "pop3-login: Info: Login: user=<"+alice+">", "method=PLAIN", "secured")
	waitLogLine(t, log, logWait, "imap("+alice+")")
	assert.NotContains(t, readFile(log), "Login: user=<"+master+">")

	// The control: Dovecot itself refuses the password alice typed at the
	// edge, and takes her own (the right one first: a failure would delay
	// the next login from this address).
	w := dialWire(t, fmt.Sprintf("127.0.0.1:%d", d.IMAP), "", "127.0.0.1")
	require.True(t, strings.HasPrefix(w.line(), "* OK"))
	w.send("a LOGIN " + alice + " " + alicePass)
	assert.Contains(t, last(w.until("a ")), "a OK")
	w.send("b LOGOUT")
	w.until("b ")
	w = dialWire(t, fmt.Sprintf("127.0.0.1:%d", d.IMAP), "", "127.0.0.1")
	require.True(t, strings.HasPrefix(w.line(), "* OK"))
	w.send("a LOGIN " + alice + " " + aliceEdge)
	assert.Contains(t, last(w.until("a ")), "a NO [AUTHENTICATIONFAILED]")
}

// swaksArgs returns swaks's arguments for one message tagged tok to user
// through ed from src: tlsFlag is --tls-on-connect or --tls, mech the AUTH
// mechanism.
func swaksArgs(e *env, ed *edge, src, tlsFlag, mech, u, pw, tok string) []string {
	return []string{"--server", gatewayIP, "--port", ed.port(), "--local-interface", src,
		tlsFlag, "--tls-sni", edgeName, "--tls-ca-path", e.caFile, "--tls-verify",
		"--auth", mech, "--auth-user", u, "--auth-password", pw,
		"--from", user, "--to", user, "--header", "Subject: " + tok, "--body", "body line for " + tok + "\n.. a dot-stuffed line"}
}

// queuedAs matches Postfix's answer to the end of DATA, with its queue id.
var queuedAs = regexp.MustCompile(`250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)`)

// queueID returns the queue id of the message a client's output says was
// queued.
func queueID(t *testing.T, out string) string {
	t.Helper()
	m := queuedAs.FindStringSubmatch(out)
	require.NotNil(t, m, "no \"queued as\" in:\n%s", out)
	return m[1]
}

// TestLoginSMTPAuth: SMTP submission listeners with Login (implicit TLS,
// and STARTTLS required) in front of Postfix's plain port, where Postfix
// offers AUTH checked by Dovecot's SASL: the proxy logs in there with AUTH
// PLAIN and the client's credentials, whatever mechanism the client used,
// and tells Postfix the client's address with XCLIENT. swaks (AUTH PLAIN
// and LOGIN) and smtplib deliver a message; a wrong password is refused at
// the edge (535), and so is one the edge allows but Postfix refuses.
func TestLoginSMTPAuth(t *testing.T) {
	e := need(t)
	be := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", e.postfix.Plain), Protocol: starttls.SMTP, XCLIENT: true}
	smtps := startEdge(t, e, starttls.SMTP, true, demoAuthenticator(be))
	submission := startEdge(t, e, starttls.SMTP, false, demoAuthenticator(be))
	maillog := e.postfix.maillog()

	for _, tt := range []struct {
		name          string
		ed            *edge
		tlsFlag, mech string
		src           string
	}{
		{"swaks PLAIN implicit TLS", smtps, "--tls-on-connect", auth.Plain, "127.0.0.60"},
		{"swaks LOGIN STARTTLS", submission, "--tls", auth.Login, "127.0.0.61"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := token("login-swaks")
			out := mustRun(t, "swaks", swaksArgs(e, tt.ed, tt.src, tt.tlsFlag, tt.mech, user, pass, tok)...)
			assert.Contains(t, out, "~> AUTH "+tt.mech)
			assert.Contains(t, out, "<~  235 2.7.0 Authentication successful")
			qid := queueID(t, out)
			msg := assertDelivered(t, e, tok, clientDot)
			// Postfix took the proxy's AUTH PLAIN, whatever the client
			// used, from the client's address (XCLIENT), and says so in the
			// Received header: ESMTPA is an authenticated session.
			waitLogLine(t, maillog, logWait, qid+": client=unknown["+tt.src+"]", "sasl_method=PLAIN", "sasl_username="+user)
			assert.Regexp(t, `\(unknown \[`+regexp.QuoteMeta(tt.src)+`\]\)\s+by mx\.example\.com \(Postfix\) with ESMTPA id `+qid, msg)
			assert.Equal(t, tt.mech, tt.ed.lastRequest(t).Mechanism)
			assert.Equal(t, user, tt.ed.session(t, tt.src).User)
		})
	}

	for _, tt := range []struct {
		mode string
		ed   *edge
		src  string
	}{
		{"smtp-ssl", smtps, "127.0.0.62"},
		{"smtp-starttls", submission, "127.0.0.63"},
	} {
		t.Run("smtplib "+tt.mode, func(t *testing.T) {
			tok := token("login-smtplib")
			out := mustPy(t, e, tt.ed, tt.mode, tt.src, user, pass, tok)
			assert.Contains(t, out, "login 235 2.7.0 Authentication successful")
			assert.Contains(t, out, "sent "+tok+" refused 0")
			msg := waitFileWith(t, e.maildir(), tok, deliverWait)
			assert.Contains(t, msg, "Subject: "+tok+"\n")
			assert.Contains(t, msg, "body line for "+tok+"\n")
			assert.Regexp(t, `\(unknown \[`+regexp.QuoteMeta(tt.src)+`\]\)\s+by mx\.example\.com \(Postfix\) with ESMTPA id `, msg)
			waitLogLine(t, maillog, logWait, "client=unknown["+tt.src+"]", "sasl_method=PLAIN", "sasl_username="+user)
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		const src = "127.0.0.64"
		out, err := run(t, "swaks", swaksArgs(e, smtps, src, "--tls-on-connect", auth.Plain, user, "wrong-"+pass, token("never"))...)
		require.Error(t, err, "swaks must fail:\n%s", out)
		assert.Contains(t, out, "<~* 535 5.7.8 Authentication credentials invalid")
		assert.NotContains(t, out, "queued as")
		assert.NotContains(t, readFile(maillog), "["+src+"]", "refused at the edge: Postfix never saw the client")
	})

	t.Run("refused by Postfix", func(t *testing.T) {
		const src = "127.0.0.65"
		before := len(smtps.onErrors())
		out, err := run(t, "swaks", swaksArgs(e, smtps, src, "--tls-on-connect", auth.Plain, user, stalePass, token("never"))...)
		require.Error(t, err, "swaks must fail:\n%s", out)
		assert.Contains(t, out, "<~* 535 5.7.8 Authentication credentials invalid")
		waitLogLine(t, maillog, logWait, "warning: unknown["+src+"]: SASL PLAIN authentication failed")
		errs := smtps.onErrors()[before:]
		require.True(t, errAny(errs, auth.ErrBackendLogin), "OnError: %v", errs)
	})
}

// TestLoginSMTPXCLIENTLogin: the Authenticator checks the password itself
// and answers NoLogin: the proxy sends Postfix "XCLIENT LOGIN=user" (Postfix
// trusts it from smtpd_authorized_xclient_hosts), no credentials. Postfix
// then treats the session as authenticated: a foreign recipient passes
// its relay check (and meets the test instance's error transport), where
// the same connection without the login gets "Relay access denied" (the
// control); it logs sasl_method=XCLIENT with the user, and writes ESMTPA in the
// Received header. Once with XCLIENT LOGIN= alone (Postfix sees the proxy's
// address), once after the Dialer's own XCLIENT with the client's address.
func TestLoginSMTPXCLIENTLogin(t *testing.T) {
	e := need(t)
	plain := fmt.Sprintf("127.0.0.1:%d", e.postfix.Plain)
	maillog := e.postfix.maillog()
	const foreign = "someone@elsewhere.example.org"

	t.Run("control: no login, no relay", func(t *testing.T) {
		w := dialWire(t, plain, "", "127.0.0.1")
		require.True(t, strings.HasPrefix(w.line(), "220"))
		caps := strings.Join(w.ehlo("client.example"), "\n")
		require.Regexp(t, `XCLIENT .*LOGIN`, caps, "Postfix must offer XCLIENT LOGIN to the proxy's address")
		w.expect("MAIL FROM:<"+user+">", "250")
		assert.Contains(t, w.expect("RCPT TO:<"+foreign+">", "554"), "Relay access denied")
		w.expect("QUIT", "221")
	})

	for _, tt := range []struct {
		name    string
		xclient bool
		src     string
		seenAs  string // the client address Postfix logs
	}{
		{"XCLIENT LOGIN alone", false, "127.0.0.70", "127.0.0.1"},
		{"XCLIENT with the client's address", true, "127.0.0.71", "127.0.0.71"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			be := &backend.Dialer{Addr: plain, Protocol: starttls.SMTP, XCLIENT: tt.xclient}
			ed := startEdge(t, e, starttls.SMTP, true, auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
				if r.User == user && string(r.Password) == pass {
					return &auth.Result{OK: true, Backend: be, NoLogin: true}, nil
				}
				return &auth.Result{}, nil
			}))
			w := dialWire(t, ed.addr, edgeName, tt.src)
			require.True(t, strings.HasPrefix(w.line(), "220"))
			w.ehlo("client.example")
			w.expect("AUTH PLAIN "+b64("\x00"+user+"\x00"+pass), "235")
			w.expect("MAIL FROM:<"+user+">", "250")
			// Past the relay check, which only an authenticated session
			// passes (the control above gets "Relay access denied"), the
			// test instance's error transport refuses the recipient.
			reply := w.expect("RCPT TO:<"+foreign+">", "550 5.1.1")
			assert.Contains(t, reply, "outbound mail disabled in the test instance")
			assert.NotContains(t, reply, "Relay access denied")
			w.expect("RSET", "250")
			tok := token("login-xclient")
			qid := queueID(t, w.sendMail(user, user, tok))
			w.expect("QUIT", "221")
			w.close()

			msg := assertDelivered(t, e, tok, wireDot)
			waitLogLine(t, maillog, logWait, qid+": client=unknown["+tt.seenAs+"]", "sasl_method=XCLIENT", "sasl_username="+user)
			assert.Regexp(t, `\(unknown \[`+regexp.QuoteMeta(tt.seenAs)+`\]\)\s+by mx\.example\.com \(Postfix\) with ESMTPA id `+qid, msg)
			assert.Equal(t, user, ed.session(t, tt.src).User)

			// swaks too, with AUTH LOGIN; Postfix never saw a password, so
			// it logged no SASL login of its own for this client.
			swaksSrc := "127.0.0.7" + map[bool]string{false: "2", true: "3"}[tt.xclient]
			tok = token("login-xclient-swaks")
			out := mustRun(t, "swaks", swaksArgs(e, ed, swaksSrc, "--tls-on-connect", auth.Login, user, pass, tok)...)
			assert.Contains(t, out, "<~  235 2.7.0 Authentication successful")
			qid = queueID(t, out)
			assertDelivered(t, e, tok, clientDot)
			waitLogLine(t, maillog, logWait, qid+": client=unknown[", "sasl_method=XCLIENT", "sasl_username="+user)
		})
	}
	assert.NotContains(t, readFile(maillog), "sasl_method=XCLIENT, sasl_username=wrong")
}

// assertRefused checks the report of a session whose login was refused:
// no backend reached, not a session that was copied, and User the user
// who tried (SessionInfo.User).
func assertRefused(t *testing.T, in mailedge.SessionInfo) {
	t.Helper()
	assert.Equal(t, user, in.User, "%v", in)
	assert.Empty(t, in.Member, "%v", in)
	assert.NotContains(t, []mailedge.Outcome{mailedge.OutcomeOK, mailedge.OutcomeReset}, in.Outcome, "%v", in)
}

// curlLoginDenied is curl's exit status for a refused login
// (CURLE_LOGIN_DENIED).
const curlLoginDenied = 67

// exitCode returns the exit status of a command's error: 0 for nil, -1 for
// an error other than an exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// b64 is base64 of s, as SASL carries it.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestLoginNoPasswordInLogs runs logins of every kind through edges whose
// every report is captured (login_helpers_test.go: OnSession, OnError, the
// Authenticator's request and Result, written by a text and a JSON slog
// handler at debug level): allowed with the client's password, with
// rewritten credentials, as a Dovecot master user, over IMAP LOGIN (atoms
// and a literal), AUTHENTICATE PLAIN and LOGIN, POP3 USER/PASS, SMTP AUTH
// PLAIN and LOGIN; refused at the edge, refused by Dovecot and by Postfix,
// and closed after too many failures. No password the client typed or the
// proxy sent to a backend may appear in the logs, in a session's error or
// in an error given to OnError: neither in the clear nor as SASL carries
// it (base64 of the password, of a PLAIN response).
func TestLoginNoPasswordInLogs(t *testing.T) {
	e := need(t)
	d := startLoginDovecot(t, e)
	seedMessage(t, e, filepath.Join(d.Home, alice, "Maildir"), token("login-logs"))
	const (
		carol          = "carol@example.com"
		carolEdge      = "carol-edge-Wm2s" // carol's edge password: she logs in to alice's mailbox with alice's
		daveEdge       = "dave-edge-Pq9t"
		daveBackend    = "dave-backend-stale-Jc5y" // refused by Dovecot
		smtpEdge       = "smtp-edge-Ty6b"          // sent to Postfix as pass
		smtpStale      = "smtp-stale-Nv3k"         // refused by Postfix
		wrongPrefix    = "wrong-Bx8r-"
		tooManyWrongPw = wrongPrefix + "3"
	)
	// Behind PROXY v2, so that Dovecot's penalty for the refused logins
	// falls on their clients' addresses, not on every login of the proxy.
	imapBE := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", d.IMAPProxy), Protocol: starttls.IMAP, Proxy: backend.ProxyV2}
	pop3BE := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", d.POP3Proxy), Protocol: starttls.POP3, Proxy: backend.ProxyV2}
	mailbox := auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
		be := auth.Backend(imapBE)
		if r.Protocol == starttls.POP3 {
			be = pop3BE
		}
		switch pw := string(r.Password); {
		case r.User == alice && pw == aliceEdge:
			return &auth.Result{OK: true, Backend: be, User: master, Password: masterPass, AuthzID: alice}, nil
		case r.User == carol && pw == carolEdge:
			return &auth.Result{OK: true, Backend: be, User: alice, Password: alicePass}, nil
		case r.User == "dave@example.com" && pw == daveEdge:
			return &auth.Result{OK: true, Backend: be, User: alice, Password: daveBackend}, nil
		}
		return &auth.Result{}, nil
	})
	postfixBE := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", e.postfix.Plain), Protocol: starttls.SMTP, XCLIENT: true}
	submission := auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
		switch {
		case r.User == user && string(r.Password) == smtpEdge:
			return &auth.Result{OK: true, Backend: postfixBE, Password: pass}, nil
		case r.User == user && string(r.Password) == smtpStale:
			return &auth.Result{OK: true, Backend: postfixBE, Password: smtpStale}, nil
		}
		return &auth.Result{}, nil
	})
	imapEdge := startEdge(t, e, starttls.IMAP, true, mailbox)
	pop3Edge := startEdge(t, e, starttls.POP3, true, mailbox)
	smtpEdgeSrv := startEdge(t, e, starttls.SMTP, true, submission)

	// IMAP: curl AUTHENTICATE PLAIN and LOGIN, imaplib LOGIN.
	for i, mech := range []string{auth.Plain, auth.Login} {
		src := fmt.Sprintf("127.0.0.8%d", i)
		args, url := curlEdge(e, imapEdge, "imaps", src, alice, aliceEdge)
		out := mustRun(t, "curl", append(args, "--login-options", "AUTH="+mech, url+"/")...)
		assert.Regexp(t, listsINBOX, out)
	}
	out := mustPy(t, e, imapEdge, "imap-login", "127.0.0.82", carol, carolEdge, "none")
	assert.Contains(t, out, "select OK 1")
	out = mustPy(t, e, imapEdge, "imap-refused", "127.0.0.83", "dave@example.com", daveEdge, "none")
	assert.Contains(t, out, "refused b'[AUTHENTICATIONFAILED] Authentication failed.'")

	// IMAP on the wire: a password in a literal, then three wrong ones in
	// one session, which the edge ends.
	w := dialWire(t, imapEdge.addr, edgeName, "127.0.0.84")
	require.True(t, strings.HasPrefix(w.line(), "* OK"))
	w.send(fmt.Sprintf("a LOGIN %s {%d+}", alice, len(wrongPrefix+"1")))
	w.send(wrongPrefix + "1")
	assert.Contains(t, last(w.until("a ")), "a NO [AUTHENTICATIONFAILED]")
	w.send("b LOGIN " + alice + " " + wrongPrefix + "2")
	assert.Contains(t, last(w.until("b ")), "b NO [AUTHENTICATIONFAILED]")
	w.send("c AUTHENTICATE PLAIN " + b64("\x00"+alice+"\x00"+tooManyWrongPw))
	assert.Contains(t, strings.Join(w.until("* BYE"), "\n"), "c NO [AUTHENTICATIONFAILED]")
	assert.Equal(t, mailedge.OutcomeAuthFailed, imapEdge.session(t, "127.0.0.84").Outcome)

	// POP3 USER/PASS.
	out = mustPy(t, e, pop3Edge, "pop3", "127.0.0.85", alice, aliceEdge, "none")
	assert.Regexp(t, `(?m)^stat 1 `, out)
	w = dialWire(t, pop3Edge.addr, edgeName, "127.0.0.86")
	require.True(t, strings.HasPrefix(w.line(), "+OK"))
	w.send("USER dave@example.com")
	require.True(t, strings.HasPrefix(w.line(), "+OK"))
	w.send("PASS " + daveEdge)
	assert.Equal(t, "-ERR [AUTH] Authentication failed.", w.line(), "Dovecot refused the rewritten password")
	w.send("QUIT")
	w.line()

	// SMTP: AUTH PLAIN and LOGIN allowed (the edge password is replaced by
	// the one Postfix knows), one refused by Postfix, one at the edge.
	for i, mech := range []string{auth.Plain, auth.Login} {
		tok := token("login-logs")
		out := mustRun(t, "swaks", swaksArgs(e, smtpEdgeSrv, fmt.Sprintf("127.0.0.8%d", 7+i), "--tls-on-connect", mech, user, smtpEdge, tok)...)
		assert.Contains(t, out, "<~  235 2.7.0 Authentication successful")
		waitFileWith(t, e.maildir(), tok, deliverWait)
	}
	for _, pw := range []string{smtpStale, wrongPrefix + "smtp"} {
		out, err := run(t, "swaks", swaksArgs(e, smtpEdgeSrv, "127.0.0.89", "--tls-on-connect", auth.Plain, user, pw, token("never"))...)
		require.Error(t, err, out)
		assert.Contains(t, out, "<~* 535 5.7.8")
	}

	// Every session has ended and been reported before the logs are read.
	for _, c := range []struct {
		ed   *edge
		srcs []string
	}{
		{imapEdge, []string{"127.0.0.80", "127.0.0.81", "127.0.0.82", "127.0.0.83", "127.0.0.84"}},
		{pop3Edge, []string{"127.0.0.85", "127.0.0.86"}},
		{smtpEdgeSrv, []string{"127.0.0.87", "127.0.0.88", "127.0.0.89"}},
	} {
		for _, src := range c.srcs {
			c.ed.session(t, src)
		}
	}

	secrets := []string{aliceEdge, alicePass, masterPass, carolEdge, daveEdge, daveBackend, smtpEdge, smtpStale, wrongPrefix}
	for _, s := range secrets {
		secrets = append(secrets, b64(s))
	}
	secrets = append(secrets,
		// The PLAIN responses: the clients' and the proxy's to the backends.
		b64("\x00"+alice+"\x00"+aliceEdge), b64(alice+"\x00"+master+"\x00"+masterPass),
		b64("\x00"+carol+"\x00"+carolEdge), b64("\x00"+alice+"\x00"+alicePass),
		b64("\x00"+alice+"\x00"+daveBackend), b64("\x00"+user+"\x00"+smtpEdge),
		b64("\x00"+user+"\x00"+pass), b64("\x00"+user+"\x00"+smtpStale))

	var reports []string
	for _, ed := range []*edge{imapEdge, pop3Edge, smtpEdgeSrv} {
		reports = append(reports, ed.log.String())
		for _, err := range ed.onErrors() {
			reports = append(reports, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		}
		ed.mu.Lock()
		for _, in := range ed.sessions {
			reports = append(reports, in.String(), fmt.Sprintf("%+v", in))
			if in.Err != nil {
				reports = append(reports, in.Err.Error())
			}
		}
		ed.mu.Unlock()
	}
	all := strings.Join(reports, "\n")
	for _, s := range secrets {
		assert.NotContains(t, all, s, "a password in the logs or errors")
	}

	// The logs are there and say what happened, passwords redacted.
	assert.Contains(t, all, "user="+alice)
	assert.Contains(t, all, "outcome=auth_failed")
	assert.Contains(t, all, "Password:[redacted]", "the Result as %+v")
	assert.Contains(t, all, `"password":"[redacted]"`, "the Result's password as JSON")
	assert.Contains(t, all, "Authentication failed", "Dovecot's refusal, in OnError")
	require.True(t, errAny(imapEdge.onErrors(), auth.ErrBackendLogin))
	require.True(t, errAny(pop3Edge.onErrors(), auth.ErrBackendLogin))
	require.True(t, errAny(smtpEdgeSrv.onErrors(), auth.ErrBackendLogin))
	if t.Failed() {
		t.Logf("reports:\n%s", all)
	}
}
