package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// TestPOP3Login is nginx-tests mail_pop3.t: USER/PASS with a bad and a
// good password, pipelined USER/PASS/QUIT, AUTH PLAIN and LOGIN, APOP
// refused.
func TestPOP3Login(t *testing.T) {
	e := newEnv(t, starttls.POP3, true, nil)
	c := e.dial(true, nil)
	c.expect("+OK")
	c.send("CAPA")
	c.expect("+OK")
	var caps []string
	for l := c.line(); l != "."; l = c.line() {
		caps = append(caps, l)
	}
	if got := strings.Join(caps, ","); !strings.Contains(got, "USER") || !strings.Contains(got, "SASL PLAIN LOGIN") || strings.Contains(got, "STLS") {
		t.Errorf("CAPA %q", got)
	}
	c.send("USER test@example.com")
	c.expect("+OK")
	c.send("PASS bad")
	c.expect("-ERR [AUTH]")
	c.send("PASS secret")
	c.expect("-ERR") // PASS without USER
	c.send("USER test@example.com")
	c.expect("+OK")
	c.send("PASS secret")
	c.expect("+OK")
	c.send("STAT")
	c.expect("+OK")
	c.send("QUIT")
	c.expect("+OK")

	// Pipelined: QUIT after PASS goes to the backend.
	c = e.dial(true, nil)
	c.expect("+OK")
	c.send("USER test@example.com\r\nPASS secret\r\nQUIT")
	c.expect("+OK")
	c.expect("+OK")
	c.expect("+OK")
	c.closed()

	c = e.dial(true, nil)
	c.expect("+OK")
	c.send("APOP test@example.com 00000000000000000000000000000000")
	c.expect("-ERR")
	c.send("AUTH PLAIN " + b64("\x00test@example.com\x00bad"))
	c.expect("-ERR [AUTH]")
	c.send("AUTH LOGIN")
	c.expect("+ VXNlcm5hbWU6")
	c.send(b64("test@example.com"))
	c.expect("+ UGFzc3dvcmQ6")
	c.send(b64("secret"))
	c.expect("+OK")
	c.send("QUIT")
	c.expect("+OK")

	c = e.dial(true, nil)
	c.expect("+OK")
	c.send("AUTH PLAIN")
	c.expect("+ ")
	c.send("*")
	c.expect("-ERR")
	c.send("AUTH PLAIN " + b64("\x00test@example.com\x00secret"))
	c.expect("+OK")
}

// TestSMTPSubmission is nginx-tests mail_smtp.t's AUTH cases on a
// submission listener.
func TestSMTPSubmission(t *testing.T) {
	e := newEnv(t, starttls.SMTP, true, nil)
	c := e.dial(true, nil)
	c.expect("220 mail.example.com")
	c.send("AUTH PLAIN " + b64("\x00test@example.com\x00secret"))
	c.expect("503") // EHLO first
	c.send("EHLO client.example.org")
	var ehlo []string
	for {
		l := c.line()
		ehlo = append(ehlo, l)
		if strings.HasPrefix(l, "250 ") {
			break
		}
	}
	if got := strings.Join(ehlo, "\n"); !strings.Contains(got, "AUTH PLAIN LOGIN") || strings.Contains(got, "STARTTLS") {
		t.Errorf("EHLO answer %q", got)
	}
	c.send("MAIL FROM:<test@example.com>")
	c.expect("530")
	c.send("AUTH PLAIN " + b64("\x00test@example.com\x00bad"))
	c.expect("535 5.7.8")
	c.send("AUTH LOGIN")
	c.expect("334 VXNlcm5hbWU6")
	c.send(b64("test@example.com"))
	c.expect("334 UGFzc3dvcmQ6")
	c.send("*")
	c.expect("501")
	c.send("AUTH PLAIN " + b64("\x00test@example.com\x00secret") + "\r\nMAIL FROM:<test@example.com>")
	c.expect("235")
	c.expect("250") // the pipelined MAIL, answered by the backend
	c.send("RCPT TO:<test@example.com>")
	c.expect("250")
	c.send("QUIT")
	c.expect("221")

	reqs := e.requests()
	last := reqs[len(reqs)-1]
	if last.Helo != "client.example.org" || last.Protocol != starttls.SMTP {
		t.Errorf("request %+v", last)
	}
}

// TestSMTPRelay is mail_smtp.t's smtp_auth none: an inbound session is
// routed at its first RCPT TO by the recipient's domain; a refused
// recipient gets the Authenticator's code and words; Auth-Wait is
// honoured and the next request is built afresh (CVE-2025-53859: nginx
// sent worker memory to the auth service on that path).
func TestSMTPRelay(t *testing.T) {
	e := newEnv(t, starttls.SMTP, true, func(e *env) {
		e.srv.Relay = true
		e.srv.Authenticator = auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
			e.mu.Lock()
			e.reqs = append(e.reqs, *r)
			e.mu.Unlock()
			if r.Mechanism != auth.None || r.User != "" || r.Password != "" {
				t.Errorf("relay request %+v", r)
			}
			switch {
			case strings.HasSuffix(r.RcptTo, "@example.com"):
				return &auth.Result{OK: true, Backend: &backend.Dialer{Addr: e.a.MX, Protocol: starttls.SMTP}}, nil
			case strings.HasSuffix(r.RcptTo, "@example.net"):
				return &auth.Result{OK: true, Backend: &backend.Dialer{Addr: e.b.MX, Protocol: starttls.SMTP}}, nil
			case r.RcptTo == "wait@example.org":
				return &auth.Result{Message: "Try again", SMTPCode: "451 4.7.1", Wait: 10 * time.Millisecond}, nil
			}
			return &auth.Result{}, nil
		})
	})
	c := e.dial(true, nil)
	c.expect("220")
	c.send("EHLO client.example.org")
	for l := c.line(); !strings.HasPrefix(l, "250 "); l = c.line() {
		if strings.Contains(l, "AUTH") {
			t.Errorf("AUTH offered on a relay listener: %q", l)
		}
	}
	c.send("RCPT TO:<test@example.com>")
	c.expect("503")
	c.send("MAIL FROM:<sender@example.org>")
	c.expect("250")
	c.send("RCPT TO:<nobody@elsewhere.example>")
	c.expect("554 5.7.1")
	c.send("RCPT TO:<wait@example.org>")
	c.expect("451 4.7.1 Try again")
	c.send("RCPT TO:<" + user2 + ">")
	c.expect("250")
	c.send("DATA")
	c.expect("354")
	c.send("Subject: hi\r\n\r\nhello\r\n.")
	c.expect("250")
	c.send("QUIT")
	c.expect("221")

	reqs := e.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.MailFrom != "sender@example.org" || r.Helo != "client.example.org" || r.Attempt != i+1 {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	if got := reqs[2].RcptTo; got != user2 {
		t.Errorf("third request for %q", got)
	}
	if s := e.loggedIn(); len(s) != 1 || s[0].Backend.Member != e.b.MX {
		t.Errorf("routed to %v, want %s", s, e.b.MX)
	}
}
