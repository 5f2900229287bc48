package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/internal/pop3client"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

// The passwords of the demo's users, and a wrong one: none may appear in
// the gateway's log.
var secrets = []string{"wonderland", "builder", "not-the-password", "carols-secret"}

func assertNoSecrets(t *testing.T, logs string) {
	t.Helper()
	for _, s := range secrets {
		assert.NotContains(t, logs, s, "a password in the log")
	}
	assert.NotContains(t, logs, base64.StdEncoding.EncodeToString([]byte("\x00bob@example.net\x00not-the-password")))
}

// imapLogin logs in over the demo's IMAPS listener and logs out.
func imapLogin(t *testing.T, addr string, roots *x509.CertPool, user, pass string) {
	t.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: clientTLS(roots, "mail.example.com")})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Login(user, pass).Wait())
	_, err = c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.NoError(t, c.Logout().Wait())
}

// The demo routes users by domain: alice@example.com to backend A,
// bob@example.net to backend B, over IMAP, POP3 and submission, and mail
// for them arriving on port 25 by recipient. The session log line names
// the user and the member.
func TestDemoRoutesUsersByDomain(t *testing.T) {
	logs := &syncBuffer{}
	d := startDemoGateway(t, logs, true)
	a, b := d.ds.stores[0], d.ds.stores[1]

	imapLogin(t, d.addrs["imaps"], d.roots, "alice@example.com", "wonderland")
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=imaps .*outcome=ok .*backend=demo-a user=alice@example.com `))
	imapLogin(t, d.addrs["imaps"], d.roots, "bob@example.net", "builder")
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=imaps .*outcome=ok .*backend=demo-b user=bob@example.net `))

	// bob submits to bob and alice over 587: bob's copy is in B's store.
	sc, err := smtp.DialStartTLS(d.addrs["submission"], clientTLS(d.roots, "mail.example.net"))
	require.NoError(t, err)
	require.NoError(t, sc.Auth(sasl.NewPlainClient("", "bob@example.net", "builder")))
	require.NoError(t, sc.SendMail("bob@example.net", []string{"bob@example.net"}, strings.NewReader(message("bob to bob"))))
	require.NoError(t, sc.Quit())
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=submission .*backend=demo-b user=bob@example.net `))

	// Port 25: routed by the first recipient, without login.
	mx, err := smtp.Dial(d.addrs["smtp"])
	require.NoError(t, err)
	require.NoError(t, mx.SendMail("someone@example.org", []string{"alice@example.com"}, strings.NewReader(message("inbound for alice"))))
	require.NoError(t, mx.Quit())
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=smtp .*backend=demo-a user="" .*rcpt=alice@example.com`))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := b.system.Messages(ctx, "bob@example.net")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Subject: bob to bob")
	msgs, err = a.system.Messages(ctx, "alice@example.com")
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Subject: inbound for alice")

	// POP3 reads bob's mailbox on B.
	conn, err := tls.Dial("tcp", d.addrs["pop3s"], clientTLS(d.roots, "mail.example.net"))
	require.NoError(t, err)
	pc := pop3client.NewClient(conn)
	defer pc.Close()
	_, err = pc.Greeting(ctx)
	require.NoError(t, err)
	require.NoError(t, pc.User(ctx, "bob@example.net"))
	require.NoError(t, pc.Pass(ctx, "builder"))
	n, _, err := pc.Stat(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, pc.Quit(ctx))
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=pop3s .*backend=demo-b user=bob@example.net `))

	assertNoSecrets(t, logs.String())
}

// step is one line sent (if not empty) and the start of the answer line
// expected, after skipping lines that start with skip.
type step struct{ send, want, skip string }

// converse runs steps on conn, a server-speaks-first protocol.
func converse(t *testing.T, conn net.Conn, steps ...step) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	for _, s := range steps {
		if s.send != "" {
			_, err := io.WriteString(conn, s.send+"\r\n")
			require.NoError(t, err)
		}
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err, "after %q", s.send)
			if s.skip != "" && strings.HasPrefix(line, s.skip) {
				continue
			}
			assert.True(t, strings.HasPrefix(line, s.want), "after %q: got %q, want %q...", s.send, line, s.want)
			break
		}
	}
}

// A wrong password is refused in each protocol's words, the refusal is
// logged with the user and without the password, and counted.
func TestDemoWrongPassword(t *testing.T) {
	logs := &syncBuffer{}
	metricsAddr := testnet.FreeAddr(t)
	d := startDemoGateway(t, logs, true, "-metrics", metricsAddr)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00bob@example.net\x00not-the-password"))
	t.Run("refusals", func(t *testing.T) { // returns when its parallel subtests are done
		for _, tt := range []struct {
			listener string
			steps    []step
		}{
			{"imaps", []step{{"", "* OK", ""}, {"a LOGIN bob@example.net not-the-password", "a NO [AUTHENTICATIONFAILED]", "* "}}},
			{"pop3s", []step{{"", "+OK", ""}, {"USER bob@example.net", "+OK", ""}, {"PASS not-the-password", "-ERR [AUTH]", ""}}},
			{"smtps", []step{{"", "220 ", ""}, {"EHLO client.example", "250 ", "250-"}, {"AUTH PLAIN " + plain, "535 5.7.8", ""}}},
		} {
			t.Run(tt.listener, func(t *testing.T) {
				t.Parallel() // each refusal waits the failure delay
				conn, err := tls.Dial("tcp", d.addrs[tt.listener], clientTLS(d.roots, "mail.example.net"))
				require.NoError(t, err)
				defer conn.Close()
				converse(t, conn, tt.steps...)
			})
		}
	})
	for _, l := range []string{"imaps", "pop3s", "smtps"} {
		sessionLine(t, logs, regexp.MustCompile(`msg="login refused" listener=`+l+` client=127.0.0.1:\d+ user=bob@example.net mechanism=PLAIN attempt=1`))
	}
	waitMetrics(t, metricsAddr,
		`mailedge_auth_decisions_total{listener="imaps",result="refused"} 1`,
		`mailedge_auth_decisions_total{listener="pop3s",result="refused"} 1`,
		`mailedge_auth_decisions_total{listener="smtps",result="refused"} 1`)
	assertNoSecrets(t, logs.String())
}

// waitMetrics waits until the /metrics page holds every line of want.
func waitMetrics(t *testing.T, addr string, want ...string) {
	t.Helper()
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond)
	for _, w := range want {
		assert.Contains(t, body, w)
	}
}

// -limits loginfailures=1: after one failed login the source is locked
// out, the session ends as auth_failed, and the lockout is counted with
// the other rate-limit refusals.
func TestLoginLockout(t *testing.T) {
	logs := &syncBuffer{}
	metricsAddr := testnet.FreeAddr(t)
	d := startDemoGateway(t, logs, true, "-metrics", metricsAddr, "-limits", "loginfailures=1,lockout=1m")
	conn, err := tls.Dial("tcp", d.addrs["imaps"], clientTLS(d.roots, "mail.example.com"))
	require.NoError(t, err)
	defer conn.Close()
	converse(t, conn,
		step{"", "* OK", ""},
		step{"a LOGIN alice@example.com not-the-password", "a NO [AUTHENTICATIONFAILED]", "* "},
		step{"b LOGIN alice@example.com wonderland", "b NO [UNAVAILABLE]", "* "})
	m := sessionLine(t, logs, regexp.MustCompile(`msg=session listener=imaps .*outcome=auth_failed .* err="([^"]*)"`))
	assert.Contains(t, m[1], "locked out")
	waitMetrics(t, metricsAddr,
		`mailedge_sessions_total{listener="imaps",outcome="auth_failed"} 1`,
		`mailedge_ratelimit_refusals_total{kind="lockout",listener="imaps"} 1`)
	assertNoSecrets(t, logs.String())
}

// SIGHUP reloads the users file with the certificates: a user added to it
// can log in afterwards; a broken file keeps the previous one.
func TestAuthFileReloadOnSIGHUP(t *testing.T) {
	logs := &syncBuffer{}
	d := startDemoGateway(t, logs, true)
	carol := &auth.Request{Protocol: starttls.IMAP, Mechanism: auth.Plain, User: "carol@example.net", Password: "carols-secret"}
	res, err := d.g.logins.Authenticate(context.Background(), carol)
	require.NoError(t, err)
	require.False(t, res.OK, "carol is not in the users file yet")

	f, err := os.OpenFile(d.ds.usersFile, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	// carol logs in at B as bob (user= and pass= for the backend).
	_, err = io.WriteString(f, "carol@example.net {PLAIN}carols-secret user=bob@example.net pass=builder\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	d.hup <- syscall.SIGHUP
	d.hup <- syscall.SIGHUP // returns once the first reload is done
	imapLogin(t, d.addrs["imaps"], d.roots, "carol@example.net", "carols-secret")
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=imaps .*outcome=ok .*backend=demo-b user=carol@example.net `))
	assert.Contains(t, logs.String(), `msg="users file reloaded"`)

	// A broken file is refused and logged; carol still logs in.
	require.NoError(t, os.WriteFile(d.ds.usersFile, []byte("*@example.com {BCRYPT}xyz\n"), 0o600))
	d.hup <- syscall.SIGHUP
	d.hup <- syscall.SIGHUP
	m := sessionLine(t, logs, regexp.MustCompile(`msg="users file reload failed; still using the previous one" file=\S+ err="([^"]*)"`))
	assert.Contains(t, m[1], "line 1: unknown password scheme")
	res, err = d.g.logins.Authenticate(context.Background(), carol)
	require.NoError(t, err)
	assert.True(t, res.OK, "the previous users file stays")
	assertNoSecrets(t, logs.String())
}

// -auth-http asks an auth service in nginx's auth_http protocol, with the
// -auth-http-header headers; its Auth-Server and Auth-Port route the
// login to a demo backend, and its refusal reaches the client.
func TestAuthHTTP(t *testing.T) {
	var mu sync.Mutex
	var asked []http.Header
	var ports map[string]string // Auth-Protocol -> demo B's port
	authSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Header.Clone())
		port := ports[r.Header.Get("Auth-Protocol")]
		mu.Unlock()
		if r.Header.Get("X-Auth-Key") != "k3y" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		if r.Header.Get("Auth-User") == "bob@example.net" && r.Header.Get("Auth-Pass") == "builder" {
			w.Header().Set("Auth-Status", "OK")
			w.Header().Set("Auth-Server", "127.0.0.1")
			w.Header().Set("Auth-Port", port)
			return
		}
		w.Header().Set("Auth-Status", "Invalid login or password")
		w.Header().Set("Auth-Wait", "1") // the client may try again (without Auth-Wait, nginx closes)
	}))
	defer authSrv.Close()

	logs := &syncBuffer{}
	d := startDemoGateway(t, logs, false, "-auth-http", authSrv.URL+"/mail/auth",
		"-auth-http-header", "X-Auth-Key: k3y", "-auth-http-timeout", "5s")
	b := d.ds.stores[1].addrs
	mu.Lock()
	ports = map[string]string{"imap": portOf(t, b.IMAP), "pop3": portOf(t, b.POP3), "smtp": portOf(t, b.Submission)}
	mu.Unlock()

	imapLogin(t, d.addrs["imaps"], d.roots, "bob@example.net", "builder")
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=imaps .*outcome=ok .*backend=`+regexp.QuoteMeta(b.IMAP)+` user=bob@example.net `))

	conn, err := tls.Dial("tcp", d.addrs["pop3s"], clientTLS(d.roots, "mail.example.net"))
	require.NoError(t, err)
	defer conn.Close()
	converse(t, conn, step{"", "+OK", ""}, step{"USER bob@example.net", "+OK", ""},
		step{"PASS not-the-password", "-ERR [AUTH] Invalid login or password", ""},
		step{"USER bob@example.net", "+OK", ""}, step{"PASS builder", "+OK", ""}, step{"QUIT", "+OK", ""})
	conn.Close()
	sessionLine(t, logs, regexp.MustCompile(`msg=session listener=pop3s .*backend=`+regexp.QuoteMeta(b.POP3)+` user=bob@example.net `))

	mu.Lock()
	require.NotEmpty(t, asked)
	first := asked[0]
	mu.Unlock()
	assert.Equal(t, "k3y", first.Get("X-Auth-Key"))
	assert.Equal(t, "plain", first.Get("Auth-Method"))
	assert.Equal(t, "imap", first.Get("Auth-Protocol"))
	assert.Equal(t, "127.0.0.1", first.Get("Client-Ip"))
	assertNoSecrets(t, logs.String())
	assert.NotContains(t, logs.String(), "k3y", "the shared secret of -auth-http-header in the log")
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}

// The auth flags and the listener option parse as documented, and
// mistakes are refused before anything listens.
func TestLoginFlags(t *testing.T) {
	ls, err := parseListen("imaps=127.0.0.1:0,proto=imap,auth")
	require.NoError(t, err)
	assert.True(t, ls.Auth)
	assert.False(t, ls.Relay)
	ls, err = parseListen("mx=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,auth=relay")
	require.NoError(t, err)
	assert.True(t, ls.Auth && ls.Relay)
	ls, err = parseListen("imaps=127.0.0.1:0,proto=imap,auth=off")
	require.NoError(t, err)
	assert.False(t, ls.Auth)
	_, err = parseListen("imaps=127.0.0.1:0,proto=imap,auth=maybe")
	assert.ErrorContains(t, err, `auth="maybe"`)
	_, err = parseListen("imaps=127.0.0.1:0,proto=imap,auth=relay")
	assert.ErrorContains(t, err, "auth=relay is for an SMTP listener")

	l, err := parseLimits("inflight=15,authrate=30,loginfailures=10,userloginfailures=5,lockout=10m,unit=30s")
	require.NoError(t, err)
	assert.Equal(t, 15, l.InFlight)
	assert.Equal(t, 30, l.AuthRate)
	assert.Equal(t, 10, l.LoginFailures)
	assert.Equal(t, 5, l.UserLoginFailures)
	assert.Equal(t, 10*time.Minute, l.Lockout)
	assert.Equal(t, 30*time.Second, l.Unit)
	_, err = parseLimits("lockout=soon")
	assert.ErrorContains(t, err, "-limits lockout")

	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	require.NoError(t, os.WriteFile(users, []byte("*@example.com {PLAIN}pw pool=a\n"), 0o600))
	cert := testCertFlag(t, dir)
	base := []string{"-cert", cert, "-listen", "imaps=127.0.0.1:0,proto=imap,pool=imap,auth"}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no authenticator", nil, "-listen imaps has auth: give -auth-file or -auth-http"},
		{"both", []string{"-auth-file", users, "-auth-http", "http://127.0.0.1:1/"}, "give one of them"},
		{"bad users file", []string{"-auth-file", filepath.Join(dir, "missing")}, "missing"},
		{"bad url", []string{"-auth-http", "ftp://user:hunter2@host/"}, "want an http:// or https:// URL"},
		{"bad header", []string{"-auth-http", "http://127.0.0.1:1/", "-auth-http-header", "X-Key hunter2"}, "-auth-http-header #1"},
		{"pool of no listener", []string{"-auth-file", users, "-backend", "a/pop3=127.0.0.1:1"}, `pool "a/pop3" is not used`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(append(append([]string{}, base...), tt.args...), io.Discard)
			require.NoError(t, err)
			_, err = build(o, discardLog())
			require.ErrorContains(t, err, tt.want)
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}

	// In a -config file, as on the command line.
	cfg := filepath.Join(dir, "gateway.conf")
	require.NoError(t, os.WriteFile(cfg, []byte(`-auth-file `+users+`
-listen imaps=127.0.0.1:0,proto=imap,pool=imap,auth
-listen mx=127.0.0.1:0,proto=smtp,tls=starttls,mode=allow,pool=mx,auth=relay
-auth-http-header X-Auth-Key: k3y
-limits userloginfailures=5
`), 0o600))
	o, err := parseFlags([]string{"-config", cfg}, io.Discard)
	require.NoError(t, err)
	require.Len(t, o.listens, 2)
	assert.True(t, o.listens[0].Auth && !o.listens[0].Relay)
	assert.True(t, o.listens[1].Auth && o.listens[1].Relay)
	assert.Equal(t, users, o.authFile)
	assert.Equal(t, multiFlag{"X-Auth-Key: k3y"}, o.authHTTPHeaders)

	// NAME reaches NAME/<listener pool>, or NAME itself for its protocol.
	o, err = parseFlags(append(base, "-auth-file", users,
		"-listen", "pop3s=127.0.0.1:0,proto=pop3,pool=pop3,auth",
		"-backend", "a/imap=127.0.0.1:1,probe=none", "-backend", "a/pop3=127.0.0.1:2,probe=none",
		"-backend", "imap=127.0.0.1:3,probe=none"), io.Discard)
	require.NoError(t, err)
	g, err := build(o, discardLog())
	require.NoError(t, err)
	imapPools, pop3Pools := g.poolsFor(g.specs[0]), g.poolsFor(g.specs[1])
	assert.Same(t, g.pools["a/imap"], imapPools("a"))
	assert.Same(t, g.pools["a/pop3"], pop3Pools("a"))
	assert.Same(t, g.pools["imap"], imapPools("imap"))
	assert.Same(t, g.pools["a/imap"], imapPools("a/imap"))
	assert.Nil(t, pop3Pools("imap"), "an IMAP pool is not reached from a POP3 listener")
	assert.Nil(t, pop3Pools("a/imap"))
	assert.Nil(t, imapPools("b"))
	assert.Nil(t, g.services[1].proxy.Backend, "a listener with auth needs no pool of its own")
}

// testCertFlag writes a certificate for mail.example.com into dir and
// returns its -cert value.
func testCertFlag(t *testing.T, dir string) string {
	t.Helper()
	ca, err := mailtest.GenerateCA("login test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	c, k, err := leaf.WriteFiles(dir, "mail")
	require.NoError(t, err)
	return c + "," + k
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
