package auth_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/auth/authhttp"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/starttls"
)

// The three advisories of nginx's mail module in 2025-2026, each as the
// attack would be made against mailedge.

// authService is an nginx-style auth_http service that records every
// request's headers and answers with answer.
type authService struct {
	mu     sync.Mutex
	heads  []http.Header
	answer func(h http.Header) http.Header
}

func (a *authService) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.heads = append(a.heads, r.Header.Clone())
		a.mu.Unlock()
		for k, v := range a.answer(r.Header) {
			w.Header()[k] = v
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mail/auth"
}

func (a *authService) requests() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.heads...)
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestCVE2025_53859 is nginx's smtp_auth none with Auth-Wait, where nginx
// sent worker memory to the auth service in the request it repeated after
// the wait. Here every request is built afresh from the session: the
// second carries exactly the first's headers with the attempt counted up.
func TestCVE2025_53859(t *testing.T) {
	svc := &authService{}
	e := newEnv(t, starttls.SMTP, true, func(e *env) {
		e.srv.Relay = true
		svc.answer = func(h http.Header) http.Header {
			if h.Get("Auth-Login-Attempt") == "1" {
				return http.Header{"Auth-Status": {"Temporary failure"}, "Auth-Wait": {"1"}, "Auth-Error-Code": {"451 4.3.0"}}
			}
			host, port := hostPort(t, e.a.MX)
			return http.Header{"Auth-Status": {"OK"}, "Auth-Server": {host}, "Auth-Port": {port}}
		}
		e.srv.Authenticator = &authhttp.Client{URL: svc.start(t), Dialer: &backend.Dialer{}}
	})
	c := e.dial(true, nil)
	c.expect("220")
	c.send("EHLO client.example.org")
	for l := c.line(); !strings.HasPrefix(l, "250 "); l = c.line() {
	}
	c.send("MAIL FROM:<sender@example.org>")
	c.expect("250")
	c.send("RCPT TO:<" + user + ">")
	c.expect("451 4.3.0")
	c.send("RCPT TO:<" + user + ">")
	c.expect("250")
	c.send("QUIT")
	c.expect("221")

	reqs := svc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d auth requests, want 2", len(reqs))
	}
	for _, h := range reqs {
		if h.Get("Auth-Method") != "none" || h.Get("Auth-User") != "" || h.Get("Auth-Pass") != "" ||
			!strings.Contains(h.Get("Auth-SMTP-From"), "sender@example.org") || !strings.Contains(h.Get("Auth-SMTP-To"), user) ||
			h.Get("Auth-SMTP-Helo") != "client.example.org" {
			t.Errorf("request headers %v", h)
		}
	}
	a, b := reqs[0].Clone(), reqs[1].Clone()
	if a.Get("Auth-Login-Attempt") != "1" || b.Get("Auth-Login-Attempt") != "2" {
		t.Errorf("attempts %q, %q", a.Get("Auth-Login-Attempt"), b.Get("Auth-Login-Attempt"))
	}
	a.Del("Auth-Login-Attempt")
	b.Del("Auth-Login-Attempt")
	if len(a) != len(b) {
		t.Errorf("the repeated request differs:\n%v\n%v", a, b)
	}
	for k := range a {
		if a.Get(k) != b.Get(k) {
			t.Errorf("header %s: %q then %q", k, a.Get(k), b.Get(k))
		}
	}
}

// TestCVE2026_27651 is nginx's worker crash with CRAM-MD5 or APOP and
// Auth-Wait. Neither mechanism is offered here: both are refused in the
// protocol's words without asking the service, and a refusal with
// Auth-Wait, then a retry, works on the same session.
func TestCVE2026_27651(t *testing.T) {
	for _, proto := range []starttls.Protocol{starttls.IMAP, starttls.POP3, starttls.SMTP} {
		t.Run(proto.String(), func(t *testing.T) {
			svc := &authService{}
			e := newEnv(t, proto, true, func(e *env) {
				svc.answer = func(h http.Header) http.Header {
					if h.Get("Auth-Pass") != password {
						return http.Header{"Auth-Status": {"Invalid login or password"}, "Auth-Wait": {"1"}}
					}
					host, port := hostPort(t, e.backendFor(proto, user).Addr)
					return http.Header{"Auth-Status": {"OK"}, "Auth-Server": {host}, "Auth-Port": {port}}
				}
				e.srv.Authenticator = &authhttp.Client{URL: svc.start(t), Dialer: &backend.Dialer{}}
			})
			c := e.dial(true, nil)
			c.t = t
			switch proto {
			case starttls.IMAP:
				c.expect("* OK")
				c.send("1 AUTHENTICATE CRAM-MD5")
				c.expect("1 NO")
				c.send("2 LOGIN " + user + " bad")
				c.expect("2 NO")
				c.send("3 AUTHENTICATE CRAM-MD5")
				c.expect("3 NO")
				c.send("4 LOGIN " + user + " " + password)
				c.expect("4 OK")
			case starttls.POP3:
				c.expect("+OK")
				c.send("APOP " + user + " 0123456789abcdef0123456789abcdef")
				c.expect("-ERR")
				c.send("AUTH CRAM-MD5")
				c.expect("-ERR")
				c.send("USER " + user)
				c.expect("+OK")
				c.send("PASS bad")
				c.expect("-ERR")
				c.send("APOP " + user + " 0123456789abcdef0123456789abcdef")
				c.expect("-ERR")
				c.send("USER " + user)
				c.expect("+OK")
				c.send("PASS " + password)
				c.expect("+OK")
			case starttls.SMTP:
				c.expect("220")
				c.send("EHLO x")
				for l := c.line(); !strings.HasPrefix(l, "250 "); l = c.line() {
				}
				c.send("AUTH CRAM-MD5")
				c.expect("504")
				c.send("AUTH PLAIN " + b64("\x00"+user+"\x00bad"))
				c.expect("535")
				c.send("AUTH CRAM-MD5")
				c.expect("504")
				c.send("AUTH PLAIN " + b64("\x00"+user+"\x00"+password))
				c.expect("235")
			}
			for _, h := range svc.requests() {
				if m := h.Get("Auth-Method"); m != "plain" {
					t.Errorf("the service was asked with Auth-Method %q", m)
				}
			}
		})
	}
}

// TestCVE2026_28753 is CRLF from outside the client (nginx: a DNS answer)
// injected into the XCLIENT command sent upstream. Here the values that
// reach the backend dialogue from an Authenticator are checked: a user
// name with CRLF is never written, the client gets a temporary refusal,
// and the backend sees no injected command.
func TestCVE2026_28753(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	// A Postfix-like backend that offers XCLIENT.
	backendAddr := testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		c.Write([]byte("220 backend ESMTP\r\n"))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			seen = append(seen, strings.TrimRight(line, "\r\n"))
			mu.Unlock()
			switch {
			case strings.HasPrefix(line, "EHLO"):
				c.Write([]byte("250-backend\r\n250-XCLIENT NAME ADDR PROTO HELO LOGIN\r\n250 AUTH PLAIN\r\n"))
			case strings.HasPrefix(line, "XCLIENT"):
				c.Write([]byte("220 backend ESMTP\r\n"))
			case strings.HasPrefix(line, "QUIT"):
				c.Write([]byte("221 bye\r\n"))
				return
			default:
				c.Write([]byte("250 ok\r\n"))
			}
		}
	})
	for _, evil := range []string{"bob\r\nRCPT TO:<victim@example.org>", "bob\nMAIL FROM:<x>", "bob\x00"} {
		e := newEnv(t, starttls.SMTP, true, func(e *env) {
			e.srv.Authenticator = auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
				return &auth.Result{OK: true, NoLogin: true, User: evil, Backend: &backend.Dialer{Addr: backendAddr, Protocol: starttls.SMTP}}, nil
			})
		})
		c := e.dial(true, nil)
		c.expect("220")
		c.send("EHLO client")
		for l := c.line(); !strings.HasPrefix(l, "250 "); l = c.line() {
		}
		c.send("AUTH PLAIN " + b64("\x00"+user+"\x00"+password))
		c.expect("454")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if strings.HasPrefix(s, "RCPT") || strings.HasPrefix(s, "MAIL") || strings.Contains(s, "victim") || strings.HasPrefix(s, "XCLIENT") {
			t.Errorf("the backend received %q", s)
		}
	}
}
