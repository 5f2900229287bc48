package auth_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

// The login tests run auth.Server.Login behind a loopback listener in
// front of the demo mail system (real IMAP, POP3 and SMTP servers that
// check passwords), and talk to it line by line as nginx's own mail tests
// do (nginx-tests mail_imap.t, mail_pop3.t, mail_smtp.t).

const (
	user     = "test@example.com"
	password = "secret"
	user2    = "other@example.net"
	pass2    = "secret2"
)

// env is one test's mail systems, certificates and proxy.
type env struct {
	t      *testing.T
	a, b   mailtest.Addrs // example.com's backend and example.net's
	ca     *mailtest.CA
	leaf   *mailtest.Leaf
	srv    *auth.Server
	ls     *starttls.Server
	tlsCfg *tls.Config
	addr   string

	mu       sync.Mutex
	reqs     []auth.Request
	errs     []error
	sessions []*auth.Session
	results  []error
}

// newEnv starts two demo systems and a proxy for proto. implicit selects
// implicit TLS; otherwise the listener is plain (starttls Disallow) with
// plaintext logins allowed.
func newEnv(t *testing.T, proto starttls.Protocol, implicit bool, configure func(*env)) *env {
	t.Helper()
	e := &env{t: t}
	e.a = startDemo(t, map[string]string{user: password, "capability@example.com": password})
	e.b = startDemo(t, map[string]string{user2: pass2})
	ca, err := mailtest.GenerateCA("auth test CA")
	if err != nil {
		t.Fatal(err)
	}
	e.ca = ca
	if e.leaf, err = ca.Issue(mailtest.CertOptions{}, "mail.example.com"); err != nil {
		t.Fatal(err)
	}
	e.tlsCfg = &tls.Config{Certificates: []tls.Certificate{e.leaf.TLS}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	e.ls = &starttls.Server{Protocol: proto, Mode: starttls.Disallow, Hostname: "mail.example.com", TLSConfig: e.tlsCfg}
	e.srv = &auth.Server{
		Authenticator: auth.AuthenticatorFunc(e.authenticate),
		FailureDelay:  -1,
		OnError: func(err error) {
			e.mu.Lock()
			e.errs = append(e.errs, err)
			e.mu.Unlock()
		},
	}
	if !implicit {
		e.srv.AllowPlaintext = true
	}
	if configure != nil {
		configure(e)
	}
	e.listen(proto, implicit)
	return e
}

func startDemo(t *testing.T, users map[string]string) mailtest.Addrs {
	t.Helper()
	sys, err := mailtest.New(mailtest.Options{Users: users, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	addrs, err := sys.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// backendFor returns the demo backend of a user's domain.
func (e *env) backendFor(proto starttls.Protocol, u string) *backend.Dialer {
	a := e.a
	if strings.HasSuffix(strings.ToLower(u), "@example.net") {
		a = e.b
	}
	addr := map[starttls.Protocol]string{starttls.IMAP: a.IMAP, starttls.POP3: a.POP3, starttls.SMTP: a.Submission}[proto]
	return &backend.Dialer{Addr: addr, Protocol: proto}
}

// authenticate is the test's Authenticator: it knows the demo users and
// routes each to the system of its domain, as nginx's test auth server
// knows test@example.com.
func (e *env) authenticate(_ context.Context, r *auth.Request) (*auth.Result, error) {
	e.mu.Lock()
	e.reqs = append(e.reqs, *r)
	e.mu.Unlock()
	switch {
	case r.Mechanism == auth.External && r.ClientCert != nil:
		u := r.User
		if u == "" {
			u = r.ClientCert.Subject.CommonName
		}
		return &auth.Result{OK: true, Backend: e.backendFor(r.Protocol, u), User: u, Password: password}, nil
	case r.User == user && string(r.Password) == password,
		r.User == user2 && string(r.Password) == pass2,
		r.User == "capability@example.com" && string(r.Password) == password:
		return &auth.Result{OK: true, Backend: e.backendFor(r.Protocol, r.User)}, nil
	case r.User == `te\"st@example.com` && string(r.Password) == `se\"cret`:
		// Auth-User and Auth-Pass: other credentials at the backend.
		return &auth.Result{OK: true, Backend: e.backendFor(r.Protocol, user), User: user, Password: password}, nil
	case r.User == "backend-refuses@example.com":
		return &auth.Result{OK: true, Backend: e.backendFor(r.Protocol, user), User: user, Password: "wrong"}, nil
	case r.User == "backend-down@example.com":
		return &auth.Result{OK: true, Backend: &backend.Dialer{Addr: "127.0.0.1:1", Protocol: r.Protocol}}, nil
	case r.User == "service-down@example.com":
		return nil, errors.New("auth service unreachable")
	case r.User == "temp@example.com":
		return &auth.Result{Temporary: true, Message: "Try later"}, nil
	}
	return &auth.Result{}, nil
}

// listen serves the proxy: the client side of starttls, Login, and a
// plain copy until either side closes.
func (e *env) listen(proto starttls.Protocol, implicit bool) {
	ctx, cancel := context.WithCancel(context.Background())
	e.addr = testnet.Serve(e.t, func(c net.Conn) { e.serve(ctx, c, implicit) })
	e.t.Cleanup(cancel) // runs first: sessions end, then testnet waits for them
}

func (e *env) serve(ctx context.Context, c net.Conn, implicit bool) {
	serve := e.ls.Serve
	if implicit {
		serve = e.ls.ServeTLS
	}
	sess, err := serve(ctx, c)
	if err != nil {
		return
	}
	defer sess.Conn.Close()
	out, err := e.srv.Login(ctx, e.ls, sess, auth.Peer{Client: c.RemoteAddr(), Local: c.LocalAddr()}, nil)
	e.mu.Lock()
	e.results = append(e.results, err)
	if out != nil {
		e.sessions = append(e.sessions, out)
	}
	e.mu.Unlock()
	if err != nil {
		return
	}
	defer out.Backend.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(out.Backend, out.Conn); out.Backend.CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(sess.Conn, out.Backend); sess.Conn.Close(); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	sess.Conn.Close()
	out.Backend.Close()
	<-done
}

// client is a line-based test client.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dial connects to the proxy; over TLS when implicit, with cert as the
// client certificate if not nil.
func (e *env) dial(implicit bool, cert *tls.Certificate) *client {
	e.t.Helper()
	var c net.Conn
	var err error
	if implicit {
		cfg := &tls.Config{RootCAs: e.ca.Pool(), ServerName: "mail.example.com"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err = tls.Dial("tcp", e.addr, cfg)
	} else {
		c, err = net.Dial("tcp", e.addr)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &client{t: e.t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, s+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads lines until one starts with prefix (skipping untagged
// lines when prefix is tagged) and returns it.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	for i := 0; i < 50; i++ {
		l := c.line()
		if strings.HasPrefix(l, prefix) {
			return l
		}
		if strings.HasPrefix(l, "* ") && !strings.HasPrefix(prefix, "* ") {
			continue
		}
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	c.t.Fatalf("no line with prefix %q", prefix)
	return ""
}

// closed asserts that the server closes the connection.
func (c *client) closed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c.br)
	if err != nil && !errors.Is(err, io.EOF) && !isReset(err) {
		c.t.Fatalf("want close, got %v after %q", err, b)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

func (e *env) requests() []auth.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]auth.Request(nil), e.reqs...)
}

func (e *env) loggedIn() []*auth.Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*auth.Session(nil), e.sessions...)
}

// clientCert issues a client certificate for cn from the test CA.
func (e *env) clientCert(cn string) *tls.Certificate {
	leaf, err := e.ca.Issue(mailtest.CertOptions{CommonName: cn}, "client.example.com")
	if err != nil {
		e.t.Fatal(err)
	}
	return &leaf.TLS
}

var _ = x509.Certificate{}
var _ = fmt.Sprint
