package authhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// TestNginxTestsAuth runs the logins of nginx-tests' mail_smtp.t against
// its auth location.
func TestNginxTestsAuth(t *testing.T) {
	leaktest.Check(t)
	s := newCountingServer(t, http.HandlerFunc(nginxTestsAuth))
	c := newClient(t, s.URL+"/mail/auth")
	c.Dialer = &backend.Dialer{XCLIENT: true}
	smtp := func(mech, user, pass string) *auth.Request {
		return &auth.Request{Protocol: starttls.SMTP, Mechanism: mech, User: user, Password: auth.Secret(pass), Attempt: 1,
			Client: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Helo: "example.com"}
	}
	none := smtp(auth.None, "", "")
	none.MailFrom, none.RcptTo = "test@example.com", "test@example.com"
	badRcpt := smtp(auth.None, "", "")
	badRcpt.MailFrom, badRcpt.RcptTo = "test@example.com", "example.org"

	for _, tt := range []struct {
		name string
		req  *auth.Request
		ok   bool
	}{
		{"auth plain with bad password", smtp(auth.Plain, "test@example.com", "bad"), false},
		{"auth plain", smtp(auth.Plain, "test@example.com", "secret"), true},
		{"auth login", smtp(auth.Login, "test@example.com", "secret"), true},
		{"auth external", smtp(auth.External, "test@example.com", ""), true},
		{"auth none", none, true},
		{"auth none, bad rcpt to", badRcpt, false},
		{"imap", imapLogin("test@example.com", "secret"), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Authenticate(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.ok {
				if res.OK || res.Message != "ERROR" || res.Wait != time.Second || res.Close || res.Backend != nil {
					t.Fatalf("want a refusal \"ERROR\" after 1 s, got %+v", res)
				}
				return
			}
			d, _ := res.Backend.(*backend.Dialer)
			if !res.OK || d == nil || d.Addr != "127.0.0.1:8026" || d.Protocol != tt.req.Protocol || !d.XCLIENT {
				t.Fatalf("want OK to 127.0.0.1:8026, got %+v (%+v)", res, d)
			}
		})
	}
}

// TestKeepAlive: sequential logins share one connection to the auth
// service, and concurrent ones no more connections than there are
// logins at once; a body is read and ignored.
func TestKeepAlive(t *testing.T) {
	leaktest.Check(t)
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		nginxTestsAuthStatus200(w, r)
		fmt.Fprint(w, strings.Repeat("<p>ignored</p>\n", 64))
	}))
	c := newClient(t, s.URL)
	for i := range 50 {
		pass := "secret"
		if i%3 == 0 {
			pass = "wrong"
		}
		res, err := c.Authenticate(context.Background(), imapLogin("test@example.com", pass))
		if err != nil {
			t.Fatal(err)
		}
		if res.OK != (pass == "secret") {
			t.Fatalf("login %d: %+v", i, res)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("50 sequential logins made %d connections, want 1", n)
	}

	const workers = 8
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if res, err := c.Authenticate(context.Background(), imapLogin("test@example.com", "secret")); err != nil || !res.OK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d concurrent logins failed", failed.Load())
	}
	// net/http may dial for a request while another's connection is on
	// its way back to the idle pool, and keep both: a few more
	// connections than workers is reuse; one per login (160) would not be.
	if n := s.conns.Load(); n > 1+2*workers {
		t.Fatalf("%d workers made %d connections for %d logins", workers, n, workers*20)
	}
}

// nginxTestsAuthStatus200 is nginxTestsAuth answering 200 instead of 204,
// so that a body can follow.
func nginxTestsAuthStatus200(w http.ResponseWriter, r *http.Request) {
	rec := &statusOverride{ResponseWriter: w}
	nginxTestsAuth(rec, r)
}

type statusOverride struct{ http.ResponseWriter }

func (s *statusOverride) WriteHeader(int) { s.ResponseWriter.WriteHeader(http.StatusOK) }

// hang is a handler that answers only when the request is abandoned.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func TestTimeout(t *testing.T) {
	leaktest.Check(t)
	s := newCountingServer(t, http.HandlerFunc(hang))
	c := newClient(t, s.URL)
	c.Timeout = 100 * time.Millisecond
	start := time.Now()
	_, err := c.Authenticate(context.Background(), imapLogin("u", "p4ssw0rd"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if strings.Contains(err.Error(), "p4ssw0rd") {
		t.Fatalf("password in %q", err)
	}
}

func TestContext(t *testing.T) {
	leaktest.Check(t)
	s := newCountingServer(t, http.HandlerFunc(hang))
	c := newClient(t, s.URL)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c.Authenticate(ctx, imapLogin("u", "p")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Authenticate(ctx, imapLogin("u", "p")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: err = %v", err)
	}
}

func TestOversize(t *testing.T) {
	leaktest.Check(t)
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("X-Pad", strings.Repeat("x", 20<<10))
		case "/body":
			nginxTestsAuthStatus200(w, r)
			_, _ = w.Write(make([]byte, 100<<10))
		case "/endless":
			nginxTestsAuthStatus200(w, r)
			buf := make([]byte, 4<<10)
			for range 2560 { // 10 MiB at most
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		case "/small":
			nginxTestsAuthStatus200(w, r)
			_, _ = w.Write(make([]byte, 1<<10))
		}
	}))
	for _, tt := range []struct {
		path      string
		transport http.RoundTripper
		want      error // nil: any error
	}{
		{"/head", nil, nil}, // cut by the default transport's header limit
		{"/head", &http.Transport{}, ErrTooLarge},
		{"/body", nil, ErrTooLarge},
		{"/endless", nil, ErrTooLarge},
	} {
		c := newClient(t, s.URL+tt.path)
		c.Transport = tt.transport
		if tt.transport != nil {
			t.Cleanup(tt.transport.(*http.Transport).CloseIdleConnections)
		}
		_, err := c.Authenticate(context.Background(), imapLogin("test@example.com", "secret"))
		if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.path, err, tt.want)
		}
	}
	c := newClient(t, s.URL+"/small")
	if res, err := c.Authenticate(context.Background(), imapLogin("test@example.com", "secret")); err != nil || !res.OK {
		t.Fatalf("a small body: %+v, %v", res, err)
	}
}

func TestHTTPStatus(t *testing.T) {
	leaktest.Check(t)
	var redirected atomic.Bool
	other := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Store(true)
		nginxTestsAuth(w, r)
	}))
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", "127.0.0.1")
		w.Header().Set("Auth-Port", "143")
		switch r.URL.Path {
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
		case "/403":
			w.WriteHeader(http.StatusForbidden)
		case "/302":
			http.Redirect(w, r, other.URL, http.StatusFound)
		case "/200":
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	for _, path := range []string{"/500", "/403", "/302"} {
		_, err := newClient(t, s.URL+path).Authenticate(context.Background(), imapLogin("test@example.com", "secret"))
		if !errors.Is(err, ErrStatus) {
			t.Errorf("%s: err = %v, want ErrStatus", path, err)
		}
	}
	if redirected.Load() {
		t.Error("a redirect was followed")
	}
	for _, path := range []string{"/200", "/204"} {
		res, err := newClient(t, s.URL+path).Authenticate(context.Background(), imapLogin("test@example.com", "secret"))
		if err != nil || !res.OK {
			t.Errorf("%s: %+v, %v", path, res, err)
		}
	}
}

func TestWaitStatus(t *testing.T) {
	leaktest.Check(t)
	var asked atomic.Int64
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := asked.Add(1)
		switch {
		case r.URL.Path == "/once" && n == 1, r.URL.Path == "/always":
			w.Header().Set("Auth-Status", "WAIT")
			w.Header().Set("Auth-Wait", "0")
		case r.URL.Path == "/slow":
			w.Header().Set("Auth-Status", "WAIT")
			w.Header().Set("Auth-Wait", "30")
		default:
			nginxTestsAuth(w, r)
		}
	}))
	res, err := newClient(t, s.URL+"/once").Authenticate(context.Background(), imapLogin("test@example.com", "secret"))
	if err != nil || !res.OK || asked.Load() != 2 {
		t.Fatalf("WAIT then OK: %+v, %v after %d questions", res, err, asked.Load())
	}

	asked.Store(0)
	_, err = newClient(t, s.URL+"/always").Authenticate(context.Background(), imapLogin("test@example.com", "secret"))
	if !errors.Is(err, ErrResponse) || asked.Load() != maxAsks {
		t.Fatalf("WAIT forever: %v after %d questions", err, asked.Load())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = newClient(t, s.URL+"/slow").Authenticate(ctx, imapLogin("test@example.com", "secret"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WAIT past the deadline: %v", err)
	}
}

// roundTripperFunc adapts a function to http.RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRedaction: neither the client's password (as given or escaped) nor
// the password of the answer appears in an error, whatever breaks.
func TestRedaction(t *testing.T) {
	leaktest.Check(t)
	const (
		password = "Hunter2-päss%"
		escaped  = "Hunter2-päss%25"
		master   = "master-Secret"
	)
	// echo finds the Auth-Pass the request carried.
	echo := func(head string) string {
		for _, l := range strings.Split(head, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Auth-Pass: "); ok {
				return v
			}
		}
		return ""
	}
	raw := map[string]func(head string) string{
		"line without colon echoing the password": func(h string) string {
			return "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nX-Echo " + echo(h) + " " + password + "\r\n\r\n"
		},
		"NUL in the answer's Auth-Pass": func(h string) string {
			return "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\nAuth-Pass: " + master + "\x00\r\n\r\n"
		},
		"status line echoing the password": func(h string) string {
			return "HTTP/1.0 " + echo(h) + " OK\r\n\r\n"
		},
		"HTTP error": func(h string) string {
			return "HTTP/1.0 500 " + password + "\r\nAuth-Pass: " + master + "\r\n\r\n"
		},
		"answer too large": func(h string) string {
			return "HTTP/1.0 200 OK\r\nAuth-Pass: " + master + "\r\nX-Pad: " + strings.Repeat("x", 20<<10) + "\r\n\r\n"
		},
		"Auth-Server not an IP": func(h string) string {
			return "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: " + master + "\r\nAuth-Port: 143\r\nAuth-Pass: " + master + "\r\n\r\n"
		},
		"closed without an answer": func(string) string { return "" },
	}
	var errs []error
	for name, answer := range raw {
		u, _ := rawServer(t, answer)
		c := newClient(t, u)
		_, err := c.Authenticate(context.Background(), imapLogin("test@example.com", password))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		errs = append(errs, err)
	}
	// A transport that quotes the request in its error.
	c := &Client{URL: "http://auth.invalid/", Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return nil, fmt.Errorf("cannot send %q (%s)", r.Header["Auth-Pass"], password)
	})}
	_, err := c.Authenticate(context.Background(), imapLogin("test@example.com", password))
	errs = append(errs, err)
	if errors.Unwrap(err) != nil {
		t.Errorf("an error whose text held the password is still wrapped: %#v", err)
	}
	// A timeout.
	s := newCountingServer(t, http.HandlerFunc(hang))
	c = newClient(t, s.URL)
	c.Timeout = 50 * time.Millisecond
	_, err = c.Authenticate(context.Background(), imapLogin("test@example.com", password))
	errs = append(errs, err)

	for _, err := range errs {
		for _, text := range []string{err.Error(), fmt.Sprint(err), fmt.Sprintf("%v|%+v|%#v|%s|%q", err, err, err, err, err)} {
			for _, secret := range []string{password, escaped, master} {
				if strings.Contains(text, secret) {
					t.Errorf("%q in the error %q", secret, text)
				}
			}
		}
	}
}
