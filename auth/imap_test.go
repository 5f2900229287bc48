package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/starttls"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestIMAPLogin is nginx-tests mail_imap.t "login": a LOGIN without
// arguments, a bad password, then the right one; the session is then the
// backend's.
func TestIMAPLogin(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)
	c := e.dial(true, nil)
	g := c.expect("* OK [CAPABILITY ")
	for _, want := range []string{"IMAP4rev1", "SASL-IR", "LITERAL+", "AUTH=PLAIN", "AUTH=LOGIN"} {
		if !strings.Contains(g, want) {
			t.Errorf("greeting %q lacks %s", g, want)
		}
	}
	if strings.Contains(g, "AUTH=EXTERNAL") || strings.Contains(g, "STARTTLS") || strings.Contains(g, "LOGINDISABLED") {
		t.Errorf("greeting %q offers what it must not", g)
	}
	c.send("a01 LOGIN")
	c.expect("a01 BAD")
	c.send("a02 LOGIN test@example.com bad")
	c.expect("a02 NO [AUTHENTICATIONFAILED]")
	c.send("a03 LOGIN test@example.com secret")
	ok := c.expect("a03 OK ")
	if !strings.Contains(ok, "[CAPABILITY ") || strings.Contains(ok, "AUTH=") || strings.Contains(ok, "STARTTLS") {
		t.Errorf("login answer %q: want the backend's capabilities after login", ok)
	}
	c.send("a04 SELECT INBOX")
	c.expect("a04 OK")
	c.send("a05 LOGOUT")
	c.expect("* BYE")
	c.expect("a05 OK")

	reqs := e.requests()
	if len(reqs) != 2 || reqs[0].Attempt != 1 || reqs[1].Attempt != 2 || reqs[1].Mechanism != auth.Plain || reqs[1].Protocol != starttls.IMAP {
		t.Errorf("requests: %+v", reqs)
	}
	if reqs[1].TLS == nil || reqs[1].ServerName != "mail.example.com" || reqs[1].Client == nil {
		t.Errorf("request lacks the session's facts: %+v", reqs[1])
	}
}

// TestIMAPAuthenticate is mail_imap.t "auth plain", "auth login simple",
// "auth login with username" and "auth external".
func TestIMAPAuthenticate(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)

	c := e.dial(true, nil)
	c.expect("* OK")
	c.send("1 AUTHENTICATE")
	c.expect("1 BAD")
	c.send("1 AUTHENTICATE PLAIN " + b64("\x00test@example.com\x00bad"))
	c.expect("1 NO")
	c.send("1 AUTHENTICATE PLAIN " + b64("\x00test@example.com\x00secret"))
	c.expect("1 OK")

	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("1 AUTHENTICATE LOGIN")
	c.expect("+ VXNlcm5hbWU6")
	c.send(b64("test@example.com"))
	c.expect("+ UGFzc3dvcmQ6")
	c.send(b64("secret"))
	c.expect("1 OK")

	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("1 AUTHENTICATE LOGIN " + b64("test@example.com"))
	c.expect("+ UGFzc3dvcmQ6")
	c.send(b64("secret"))
	c.expect("1 OK")

	// PLAIN without an initial response: an empty challenge.
	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("1 AUTHENTICATE PLAIN")
	if l := c.line(); l != "+ " {
		t.Errorf("challenge %q, want \"+ \"", l)
	}
	c.send(b64("\x00test@example.com\x00secret"))
	c.expect("1 OK")

	// "*" aborts (RFC 9051 §6.2.2: tagged BAD), and the session goes on.
	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("1 AUTHENTICATE LOGIN")
	c.expect("+ ")
	c.send("*")
	c.expect("1 BAD")
	c.send("2 AUTHENTICATE PLAIN =")
	c.expect("2 BAD") // an empty PLAIN response is malformed
	c.send("3 AUTHENTICATE CRAM-MD5")
	c.expect("3 NO") // not offered: nginx's CVE-2026-27651 path does not exist here
	c.send("4 LOGIN test@example.com secret")
	c.expect("4 OK")
}

// TestIMAPExternal is mail_imap.t "auth external" with a verified client
// certificate, and "auth external after failed plain".
func TestIMAPExternal(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)
	cert := e.clientCert(user)

	c := e.dial(true, cert)
	if g := c.expect("* OK"); !strings.Contains(g, "AUTH=EXTERNAL") {
		t.Errorf("greeting %q does not offer EXTERNAL to a client with a certificate", g)
	}
	c.send("1 AUTHENTICATE EXTERNAL")
	c.expect("+ ")
	c.send("") // empty identity: the certificate's
	c.expect("1 OK")

	c = e.dial(true, cert)
	c.expect("* OK")
	c.send("1 AUTHENTICATE PLAIN " + b64("\x00test@example.com\x00bad"))
	c.expect("1 NO")
	c.send("2 AUTHENTICATE EXTERNAL " + b64(user))
	c.expect("2 OK")

	// Without a certificate EXTERNAL is not offered and is refused.
	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("1 AUTHENTICATE EXTERNAL " + b64(user))
	c.expect("1 NO")

	var ext int
	for _, r := range e.requests() {
		if r.Mechanism == auth.External {
			ext++
			if r.ClientCert == nil || r.User != user || r.Password != "" {
				t.Errorf("EXTERNAL request: %+v", r)
			}
		}
	}
	if ext != 2 {
		t.Errorf("%d EXTERNAL requests, want 2", ext)
	}
}

// TestIMAPStrings is mail_imap.t "quoted strings", "literals",
// "non-synchronizing literals" and "backslash in quotes and literals".
func TestIMAPStrings(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)
	for _, tc := range []struct {
		name  string
		steps []string // sent; "+" expects a continuation request
	}{
		{"quoted", []string{`a01 LOGIN "te\\\"st@example.com" "se\\\"cret"`}},
		{"literals", []string{"a01 LOGIN {18}", "+", `te\"st@example.com {8}`, "+", `se\"cret`}},
		{"non-sync", []string{"a01 LOGIN {18+}\r\n" + `te\"st@example.com {8+}` + "\r\n" + `se\"cret`}},
		{"backslash", []string{"a01 LOGIN {18+}\r\n" + `te\"st@example.com "se\\\"cret"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(true, nil)
			c.t = t
			c.expect("* OK")
			for _, s := range tc.steps {
				if s == "+" {
					c.expect("+ ")
					continue
				}
				c.send(s)
			}
			c.expect("a01 OK")
		})
	}
}

// TestIMAPPipelining is mail_imap.t "pipelining": an invalid command and a
// NOOP in one write, a non-synchronising literal of an invalid command not
// read as a command, and a LOGOUT pipelined after LOGIN going to the
// backend.
func TestIMAPPipelining(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)
	c := e.dial(true, nil)
	c.expect("* OK")
	c.send("a01 INVALID COMMAND WITH ARGUMENTS\r\na02 NOOP")
	c.expect("a01 BAD")
	c.expect("a02 OK")
	c.send("a03 FOOBAR {10+}\r\ntest test \r\na04 NOOP")
	c.expect("a03 BAD")
	c.expect("a04 OK")

	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("a01 LOGIN test@example.com secret\r\na02 LOGOUT")
	c.expect("a01 OK")
	c.expect("* BYE")
	c.expect("a02 OK")
}

// TestIMAPFailures: the session is closed after MaxAttempts refused
// logins; a backend that refuses or is down, and an auth service that
// fails, give a refusal the client can retry.
func TestIMAPFailures(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)
	c := e.dial(true, nil)
	c.expect("* OK")
	for i := 1; i <= 2; i++ {
		c.send("a LOGIN test@example.com wrong")
		c.expect("a NO [AUTHENTICATIONFAILED]")
	}
	c.send("a LOGIN test@example.com wrong")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	c.expect("* BYE")
	c.closed()

	c = e.dial(true, nil)
	c.expect("* OK")
	c.send("a LOGIN backend-refuses@example.com x")
	c.expect("a NO")
	c.send("b LOGIN backend-down@example.com x")
	c.expect("b NO [UNAVAILABLE]")
	c.send("c LOGIN service-down@example.com " + password)
	c.expect("c NO [UNAVAILABLE]")
	c.send("d LOGIN temp@example.com x")
	c.expect("d NO [UNAVAILABLE] Try later")
	c.send("e LOGIN test@example.com secret")
	c.expect("e OK")

	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) < 3 {
		t.Errorf("OnError got %d errors, want at least 3: %v", len(e.errs), e.errs)
	}
	for _, err := range append(e.errs, e.results...) {
		if err != nil && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "wrong")) {
			t.Errorf("error holds a password: %v", err)
		}
	}
}

// TestIMAPRouting: users of example.com land on one backend, users of
// example.net on the other.
func TestIMAPRouting(t *testing.T) {
	e := newEnv(t, starttls.IMAP, true, nil)
	for _, u := range [][2]string{{user, password}, {user2, pass2}} {
		c := e.dial(true, nil)
		c.expect("* OK")
		c.send("a LOGIN " + u[0] + " " + u[1])
		c.expect("a OK")
		c.send("b LOGOUT")
		c.expect("b OK")
	}
	s := e.loggedIn()
	if len(s) != 2 || s[0].Backend.Member != e.a.IMAP || s[1].Backend.Member != e.b.IMAP {
		t.Fatalf("sessions went to %v and %v, want %s and %s", s[0].Backend.Member, s[1].Backend.Member, e.a.IMAP, e.b.IMAP)
	}
	if s[0].Request.User != user || s[0].Request.Password != "" {
		t.Errorf("session request %+v: want the user and no password", s[0].Request)
	}
}

// TestIMAPPlaintext: a plain session is refused logins unless the Server
// allows plaintext, and is told so.
func TestIMAPPlaintext(t *testing.T) {
	e := newEnv(t, starttls.IMAP, false, func(e *env) { e.srv.AllowPlaintext = false })
	c := e.dial(false, nil)
	c.expect("* OK")
	c.send("a LOGIN test@example.com secret")
	c.expect("a NO [PRIVACYREQUIRED]")
	c.send("b CAPABILITY")
	if l := c.expect("* CAPABILITY"); !strings.Contains(l, "LOGINDISABLED") || strings.Contains(l, "AUTH=PLAIN") {
		t.Errorf("capability %q on a plain session", l)
	}
	c.expect("b OK")
	if n := len(e.requests()); n != 0 {
		t.Errorf("%d requests reached the Authenticator", n)
	}

	e = newEnv(t, starttls.IMAP, false, nil)
	c = e.dial(false, nil)
	c.expect("* OK")
	c.send("a LOGIN test@example.com secret")
	c.expect("a OK")
}
