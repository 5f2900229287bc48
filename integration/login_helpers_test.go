//go:build unix

package integration_test

// Helpers of login_test.go: mailedge.Proxy with Login set, run in the test
// process as an application would run it, in front of the suite's servers
// or of a Dovecot of the test's own with a master user; mail seeded into a
// Maildir; Python's clients.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/starttls"
)

// The accounts of the login Dovecot (startLoginDovecot). Every password is
// a word found nowhere else, so that a log can be searched for it.
const (
	alice = "alice@example.com"
	// alicePass is Dovecot's password for alice: what only the backend
	// knows.
	alicePass = "alice-backend-Xq7w"
	// aliceEdge is what alice types at the edge; Dovecot refuses it.
	aliceEdge = "alice-edge-K3v9p"
	// master is the login Dovecot's master user.
	master     = "master"
	masterPass = "master-pw-Zr8wJ"
)

// dovecotSeq numbers the login Dovecots, for unique instance names.
var dovecotSeq atomic.Int32

// startLoginDovecot starts a Dovecot of the test's own from
// testdata/dovecot-login.conf.tmpl: alice in the regular passdb with
// alicePass, and the users of more (name to password), master in a master
// passdb, "*" as the master user separator, mail homes under its own
// folder. It is stopped when the test ends.
func startLoginDovecot(t *testing.T, e *env, more ...[2]string) *dovecot {
	t.Helper()
	name := fmt.Sprintf("login-%d", dovecotSeq.Add(1))
	dir := filepath.Join(e.dir, "dovecot-"+name)
	home := filepath.Join(dir, "home")
	require.NoError(t, os.MkdirAll(home, 0o755))
	require.NoError(t, os.Chown(home, e.dovecot.UID, e.dovecot.GID))
	be := e.certFiles[backendName]
	d, err := newDovecot(name, dir, home, be[0], be[1], owner{UID: e.dovecot.UID, GID: e.dovecot.GID})
	require.NoError(t, err)
	passwd := alice + ":{PLAIN}" + alicePass + "\n"
	for _, u := range more {
		passwd += u[0] + ":{PLAIN}" + u[1] + "\n"
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "master-passwd"), []byte(master+":{PLAIN}"+masterPass+"\n"), 0o644))
	require.NoError(t, render("dovecot-login.conf.tmpl", d.conf, d))
	t.Cleanup(d.stop)
	require.NoError(t, d.start(), "login Dovecot:%s%s", tail(d.logFile(), 20), tail(filepath.Join(dir, "master.out"), 20))
	return d
}

// seedMessage delivers a message whose Subject is tok into the Maildir at
// maildir as a delivery agent does (tmp, then rename into new), owned by
// the mail user, and creates the Maildir if it is missing.
func seedMessage(t *testing.T, e *env, maildir, tok string) {
	t.Helper()
	uid, gid := e.dovecot.UID, e.dovecot.GID
	for _, d := range []string{filepath.Dir(maildir), maildir, filepath.Join(maildir, "cur"), filepath.Join(maildir, "new"), filepath.Join(maildir, "tmp")} {
		if _, err := os.Stat(d); err == nil {
			continue
		}
		require.NoError(t, os.Mkdir(d, 0o700))
		require.NoError(t, os.Chown(d, uid, gid))
	}
	name := fmt.Sprintf("%d.%s.mailedge", time.Now().UnixNano(), tok)
	tmp := filepath.Join(maildir, "tmp", name)
	msg := strings.ReplaceAll(message("seed@example.org", user, tok), "\r\n", "\n")
	require.NoError(t, os.WriteFile(tmp, []byte(msg), 0o600))
	require.NoError(t, os.Chown(tmp, uid, gid))
	require.NoError(t, os.Rename(tmp, filepath.Join(maildir, "new", name)))
}

// edge is a mailedge.Proxy with Login set, serving one listener on
// gatewayIP, with everything it reports captured: a text and a JSON slog
// handler at debug level write every session, every OnError error and
// every request and result the Authenticator saw to log.
type edge struct {
	addr  string
	proxy *mailedge.Proxy

	log    syncBuffer
	logger []*slog.Logger

	mu       sync.Mutex
	sessions []mailedge.SessionInfo
	errs     []error
	reqs     []auth.Request
	results  []auth.Result
	changed  chan struct{} // closed and replaced on every new session
}

// edgeName is the name clients reach the edge by: the suite's default
// certificate is issued for it.
var edgeName = sniNames[0]

// startEdge serves proto on a new listener on gatewayIP: implicit TLS, or
// STARTTLS required. authn decides the logins; the edge logs each request
// (its password redacted by auth.Request's LogValue) and result. configure,
// if given, may change the Proxy (its Login) before it serves. The edge is
// shut down when the test ends, after its sessions.
func startEdge(t *testing.T, e *env, proto starttls.Protocol, implicit bool, authn auth.Authenticator, configure ...func(*mailedge.Proxy)) *edge {
	t.Helper()
	ed := &edge{changed: make(chan struct{})}
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	ed.logger = []*slog.Logger{
		slog.New(slog.NewTextHandler(&ed.log, opts)),
		slog.New(slog.NewJSONHandler(&ed.log, opts)),
	}
	cert, err := tls.LoadX509KeyPair(e.certFiles[edgeName][0], e.certFiles[edgeName][1])
	require.NoError(t, err)
	logged := auth.AuthenticatorFunc(func(ctx context.Context, req *auth.Request) (*auth.Result, error) {
		res, err := authn.Authenticate(ctx, req)
		ed.mu.Lock()
		ed.reqs = append(ed.reqs, *req)
		if res != nil {
			ed.results = append(ed.results, *res)
		}
		ed.mu.Unlock()
		for _, l := range ed.logger {
			l.Debug("authenticate", "request", req, "err", err)
		}
		if res != nil {
			ed.logger[0].Debug("result", "result", res) // the whole Result, as %+v
			ed.logger[1].Debug("result", "ok", res.OK, "user", res.User, "password", res.Password,
				"authzid", res.AuthzID, "nologin", res.NoLogin, "message", res.Message)
		}
		return res, err
	})
	ed.proxy = &mailedge.Proxy{
		Server: &starttls.Server{
			Protocol:  proto,
			Mode:      starttls.Require,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			Hostname:  "mail.example.com",
		},
		Implicit: implicit,
		Login: &auth.Server{
			Authenticator: logged,
			// Short, so that refusals do not slow the suite; the delay
			// itself is auth's unit tests' business.
			FailureDelay: 20 * time.Millisecond,
			OnError: func(err error) {
				ed.mu.Lock()
				ed.errs = append(ed.errs, err)
				ed.mu.Unlock()
				for _, l := range ed.logger {
					l.Warn("login error", "err", err)
				}
			},
		},
		OnSession: func(in mailedge.SessionInfo) {
			for _, l := range ed.logger {
				l.Info("session", "info", in.String(), "user", in.User, "outcome", in.Outcome, "err", in.Err)
			}
			ed.logger[0].Debug("session", "whole", in) // every field, as %+v
			ed.mu.Lock()
			ed.sessions = append(ed.sessions, in)
			close(ed.changed)
			ed.changed = make(chan struct{})
			ed.mu.Unlock()
		},
	}
	for _, f := range configure {
		f(ed.proxy)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(gatewayIP, "0"))
	require.NoError(t, err)
	ed.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- ed.proxy.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ed.proxy.Shutdown(ctx); err != nil {
			t.Errorf("edge shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("edge Serve: %v", err)
		}
	})
	return ed
}

// port is the edge listener's port.
func (ed *edge) port() string {
	_, p := hostPort(ed.addr)
	return p
}

// session waits for the first finished session from src and returns it.
func (ed *edge) session(t *testing.T, src string) mailedge.SessionInfo {
	t.Helper()
	timer := time.NewTimer(logWait)
	defer timer.Stop()
	for {
		ed.mu.Lock()
		ch := ed.changed
		for _, in := range ed.sessions {
			if mailedge.IPOf(in.Client).String() == src {
				ed.mu.Unlock()
				return in
			}
		}
		ed.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("no session from %s ended within %v; log:\n%s", src, logWait, ed.log.String())
		}
	}
}

// lastRequest returns the last login request the Authenticator saw.
func (ed *edge) lastRequest(t *testing.T) auth.Request {
	t.Helper()
	ed.mu.Lock()
	defer ed.mu.Unlock()
	require.NotEmpty(t, ed.reqs, "the Authenticator was never asked")
	return ed.reqs[len(ed.reqs)-1]
}

// lastResult returns the last Result the Authenticator gave.
func (ed *edge) lastResult(t *testing.T) auth.Result {
	t.Helper()
	ed.mu.Lock()
	defer ed.mu.Unlock()
	require.NotEmpty(t, ed.results, "the Authenticator never answered")
	return ed.results[len(ed.results)-1]
}

// onErrors returns what OnError has been told so far.
func (ed *edge) onErrors() []error {
	ed.mu.Lock()
	defer ed.mu.Unlock()
	return append([]error(nil), ed.errs...)
}

// syncBuffer is a bytes.Buffer safe for the sessions' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tap is a TCP relay in front of a backend that records what the proxy
// sends it, so that a test can see the backend login on the wire.
type tap struct {
	addr string
	mu   sync.Mutex
	sent bytes.Buffer
}

// startTap relays connections on a new 127.0.0.1 port to target until the
// test ends.
func startTap(t *testing.T, target string) *tap {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tp := &tap{addr: l.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(c, s)
				c.Close()
			}()
			go func() {
				defer wg.Done()
				io.Copy(s, io.TeeReader(c, tp))
				s.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return tp
}

// Write records bytes the proxy sent.
func (tp *tap) Write(p []byte) (int, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.sent.Write(p)
}

// String returns everything the proxy sent so far.
func (tp *tap) String() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.sent.String()
}

// pyClient runs one mode of testdata/login_clients.py against ed from src,
// and returns its output and error.
func pyClient(t *testing.T, e *env, ed *edge, mode, src, u, pw, tok string) (string, error) {
	t.Helper()
	return run(t, "python3", "testdata/login_clients.py", mode, e.caFile, edgeName, gatewayIP, ed.port(), src, u, pw, tok)
}

// mustPy is pyClient that fails the test on a non-zero exit.
func mustPy(t *testing.T, e *env, ed *edge, mode, src, u, pw, tok string) string {
	t.Helper()
	out, err := pyClient(t, e, ed, mode, src, u, pw, tok)
	require.NoError(t, err, "login_clients.py %s:\n%s", mode, out)
	return out
}

// curlEdge returns curl's arguments for the edge reached as edgeName from
// src, trusting only the suite's CA, with -v so that the dialogue shows,
// and the URL base (scheme://name:port).
func curlEdge(e *env, ed *edge, scheme, src, u, pw string) (args []string, url string) {
	return []string{"-sS", "-v", "--max-time", "20", "--cacert", e.caFile, "--interface", src,
		"--resolve", edgeName + ":" + ed.port() + ":" + gatewayIP, "-u", u + ":" + pw}, scheme + "://" + edgeName + ":" + ed.port()
}

// errAny reports whether any error in errs satisfies is.
func errAny(errs []error, target error) bool {
	for _, err := range errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
