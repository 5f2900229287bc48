package mailedge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

type fixture struct {
	addrs mailtest.Addrs
	cfg   *tls.Config // server side, SNI-backed
	roots *tls.Config // client side, trusting the test CA for mail.example.com
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := mailtest.GenerateCA("proxy test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	var res sni.Resolver
	require.NoError(t, res.AddDefault(&leaf.TLS))
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	addrs, err := sys.Start(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	return &fixture{addrs: addrs, cfg: res.TLSConfig(sni.Policy{}),
		roots: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"}}
}

// imaps returns an implicit-TLS IMAP Proxy in front of the demo's IMAP
// server, with opt for the copy and onSession (which may be nil).
func (f *fixture) imaps(opt bridge.Options, onSession func(mailedge.SessionInfo)) *mailedge.Proxy {
	return &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Implicit:  true,
		Backend:   &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP},
		Bridge:    opt,
		OnSession: onSession,
	}
}

// serve runs p on a loopback listener; the cleanup closes the listener,
// cancels the sessions and waits for Serve to return.
func serve(t *testing.T, p *mailedge.Proxy, wrap ...net.Listener) string {
	t.Helper()
	var l net.Listener
	if len(wrap) > 0 {
		l = wrap[0]
	} else {
		var err error
		l, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		assert.NoError(t, p.Serve(ctx, l))
	}()
	t.Cleanup(func() { l.Close(); cancel(); wg.Wait() })
	return l.Addr().String()
}

func TestProxyIMAPSOffload(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	addr := serve(t, f.imaps(bridge.Options{}, func(in mailedge.SessionInfo) { sessions <- in }))
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	require.NoError(t, c.Logout().Wait())
	c.Close()
	in := <-sessions
	assert.Equal(t, mailedge.OutcomeOK, in.Outcome, "%v", in.Err)
	assert.Equal(t, f.addrs.IMAP, in.Member)
	require.NotNil(t, in.TLS)
	assert.Equal(t, "mail.example.com", in.TLS.ServerName)
	assert.Positive(t, in.Stats.ClientToServer)
}

func TestProxyLimiterRefusesInOwnWords(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	limited := make(chan error, 1)
	addr := serve(t, &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.SMTP, TLSConfig: f.cfg, Hostname: "mx.example.com"},
		Backend:   &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
		Limiter:   &ratelimit.Limiter{Limits: ratelimit.Limits{InFlight: 1}},
		OnLimited: func(err error) { limited <- err },
	})
	first, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer first.Close()
	r := bufio.NewReader(first)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(greeting, "220 "), greeting)

	second, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer second.Close()
	reply, err := bufio.NewReader(second).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1\r\n", reply)
	assert.ErrorIs(t, <-limited, ratelimit.ErrLimited)
}

func TestProxyNoBackendRefusesPromptly(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	dead.Close() // connection refused from now on
	pool, err := backend.NewPool(backend.RoundRobin, backend.Member{Name: "dead", Dialer: &backend.Dialer{Addr: deadAddr, Protocol: starttls.POP3}})
	require.NoError(t, err)
	sessions := make(chan mailedge.SessionInfo, 1)
	addr := serve(t, &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.POP3, TLSConfig: f.cfg},
		Implicit:  true,
		Backend:   pool,
		OnSession: func(in mailedge.SessionInfo) { sessions <- in },
	})
	conn, err := tls.Dial("tcp", addr, f.roots)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "-ERR [SYS/TEMP]"), line)
	in := <-sessions
	assert.Equal(t, mailedge.OutcomeNoBackend, in.Outcome)
}

func TestProxySTARTTLSRequireThenBackend(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	addr := serve(t, &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Backend: &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP},
	})
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	_, err = c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	require.NoError(t, c.Logout().Wait())
}

func TestIPOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   net.Addr
		want string
	}{
		{"v4", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 25}, "192.0.2.1"},
		{"v4-mapped", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 25}, "192.0.2.1"},
		{"v6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{"nil", nil, "invalid IP"},
		{"pipe", pipeAddr{}, "invalid IP"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, mailedge.IPOf(tt.in).String())
		})
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestSessionInfoString(t *testing.T) {
	in := mailedge.SessionInfo{
		Client: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}, Start: time.Now().Add(-time.Hour), Duration: 1500 * time.Millisecond,
		Outcome: mailedge.OutcomeNoBackend, TLS: &tls.ConnectionState{ServerName: "mail.example.com", Version: tls.VersionTLS13}, Err: errors.New("boom"),
	}
	s := in.String()
	for _, want := range []string{"client=192.0.2.1:4000", "outcome=no_backend", `sni="mail.example.com"`, `tls="TLS 1.3"`, `err="boom"`,
		"duration=1.5s"} { // the session's, not the time since Start at the call
		assert.Contains(t, s, want)
	}
}

// The duration of a session is fixed when it ends.
func TestProxySessionDuration(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	p := f.imaps(bridge.Options{}, nil)
	client, server := net.Pipe()
	client.Close() // the handshake fails at once
	in := p.ServeConn(context.Background(), server)
	assert.Positive(t, in.Duration)
	assert.False(t, in.Start.Add(in.Duration).After(time.Now()))
	assert.Equal(t, in.String(), in.String())
}

func TestProxySMTPStartTLSAfterHandoverAnsweredLocally(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	addr := serve(t, &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.SMTP, TLSConfig: f.cfg},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
	})
	conn, err := tls.Dial("tcp", addr, f.roots)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "220 "), line)
	_, err = conn.Write([]byte("EHLO client.example\r\n"))
	require.NoError(t, err)
	for {
		line, err = r.ReadString('\n')
		require.NoError(t, err)
		assert.NotContains(t, strings.ToUpper(line), "STARTTLS")
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	_, err = conn.Write([]byte("STARTTLS\r\nNOOP\r\n"))
	require.NoError(t, err)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "454 4.7.0 TLS not available\r\n", line)
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "250 "), "session stays usable: %q", line)
}

func TestProxyServeReturnsWhenContextEnds(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg},
		Backend: &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l) }()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "220 "), line)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// flakyListener fails its first Accepts with EMFILE, as a process out of
// descriptors does, then accepts normally.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestProxyServeSurvivesEMFILE(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := serve(t, &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg},
		Backend: &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
	}, &flakyListener{Listener: raw, fails: 3})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "220 "), line)
}

// TestProxyParksIdleSessions: sessions waiting for their next command hold
// no copier goroutine; each command wakes its session, which answers and
// parks again.
func TestProxyParksIdleSessions(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	poller := &bridge.Poller{ParkAfter: 5 * time.Millisecond}
	t.Cleanup(func() { poller.Close() })
	addr := serve(t, f.imaps(bridge.Options{Poller: poller}, nil))
	type client struct {
		c *tls.Conn
		r *bufio.Reader
	}
	say := func(c client, cmd, wantPrefix string) {
		t.Helper()
		_, err := c.c.Write([]byte(cmd + "\r\n"))
		require.NoError(t, err)
		for {
			line, err := c.r.ReadString('\n')
			require.NoError(t, err)
			if !strings.HasPrefix(line, "* ") {
				assert.True(t, strings.HasPrefix(line, wantPrefix), "got %q; want %q...", line, wantPrefix)
				return
			}
		}
	}
	var clients []client
	for range 5 {
		c, err := tls.Dial("tcp", addr, f.roots)
		require.NoError(t, err)
		r := bufio.NewReader(c)
		greeting, err := r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
		clients = append(clients, client{c, r})
	}
	waitPumping(t, 0)
	for i, c := range clients {
		say(c, "a LOGIN demo@example.com demo", "a OK")
		say(c, "b SELECT INBOX", "b OK")
		if i%2 == 0 {
			waitPumping(t, 0)
		}
	}
	waitPumping(t, 0)
	for _, c := range clients {
		say(c, "c NOOP", "c OK")
		say(c, "d LOGOUT", "d OK")
		c.c.Close()
	}
}

// waitPumping waits until want goroutines run a bridge direction's loop.
func waitPumping(t *testing.T, want int) {
	t.Helper()
	count := func() int {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return strings.Count(string(buf), "bridge.(*session).pump(")
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines copying; want %d", count(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestProxySilentClientTimesOut: a client that completes TLS, gets the
// greeting and never speaks is under the copy's idle timeout (it used to
// wait in the handover for its first command with no timeout at all).
func TestProxySilentClientTimesOut(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	addr := serve(t, f.imaps(bridge.Options{IdleTimeout: 100 * time.Millisecond}, func(in mailedge.SessionInfo) { sessions <- in }))
	c, err := tls.Dial("tcp", addr, f.roots)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = r.ReadString('\n')
	assert.ErrorIs(t, err, io.EOF, "the proxy closes the silent session")
	in := <-sessions
	assert.ErrorIs(t, in.Err, bridge.ErrIdleTimeout)
}

// TestProxyHandoverTimeout: a backend that greets and then never answers
// the EHLO replayed for a plain SMTP session ends the session after
// HandoverTimeout, instead of holding it for as long as the backend likes.
func TestProxyHandoverTimeout(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	mute := testnet.Serve(t, func(c net.Conn) {
		c.Write([]byte("220 mute.test ESMTP\r\n"))
		io.Copy(io.Discard, c) // reads the replayed EHLO, never answers
	})
	sessions := make(chan mailedge.SessionInfo, 1)
	addr := serve(t, &mailedge.Proxy{
		Server:          &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg},
		Backend:         &backend.Dialer{Addr: mute, Protocol: starttls.SMTP},
		HandoverTimeout: 100 * time.Millisecond,
		OnSession:       func(in mailedge.SessionInfo) { sessions <- in },
	})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	_, err = c.Write([]byte("EHLO client.test\r\nMAIL FROM:<a@example.net>\r\n"))
	require.NoError(t, err)
	select {
	case in := <-sessions:
		assert.Equal(t, mailedge.OutcomeHandover, in.Outcome)
		assert.ErrorIs(t, in.Err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the handover was not bounded")
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadAll(r) // the proxy's own 220 and EHLO answer, then the close
	assert.NoError(t, err)
}

// TestProxyComposesInspectorWithLimits: an SMTP inspector of the caller's
// own in Bridge.SMTP and InspectSMTP both apply, the Limiter's rates first,
// and the caller's inspector is not changed.
func TestProxyComposesInspectorWithLimits(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	own := &bridge.SMTPInspector{Check: func(c bridge.SMTPCommand) string {
		if c.Verb == "VRFY" {
			return "502 5.5.1 VRFY disabled here"
		}
		return ""
	}}
	p := &mailedge.Proxy{
		Server:      &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg, Hostname: "mx.example.com"},
		Backend:     &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
		Limiter:     &ratelimit.Limiter{Limits: ratelimit.Limits{RecipientRate: 1}},
		InspectSMTP: true,
		Bridge:      bridge.Options{SMTP: own},
	}
	addr := serve(t, p)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	reply := smtpReplies(t, c)
	require.True(t, strings.HasPrefix(reply(""), "220 "))
	require.True(t, strings.HasPrefix(reply("EHLO client.example"), "250 "))
	for _, tt := range []struct{ cmd, want string }{
		{"MAIL FROM:<a@example.net>", "250 "},
		{"RCPT TO:<demo@example.com>", "250 "},
		{"RCPT TO:<demo@example.com>", "450 4.7.1 "},  // the Limiter's recipient rate
		{"VRFY demo", "502 5.5.1 VRFY disabled here"}, // the caller's Check
	} {
		got := reply(tt.cmd)
		assert.True(t, strings.HasPrefix(got, tt.want), "%s: got %q; want %q...", tt.cmd, got, tt.want)
	}
	assert.Same(t, own, p.Bridge.SMTP)
	assert.Empty(t, own.Check(bridge.SMTPCommand{Verb: "RCPT"}), "the caller's Check was not replaced")
}

// TestProxyServeValidates: a Proxy missing a required field fails Serve at
// once with ErrConfig (it used to panic in a worker on the first
// connection), and ServeConn reports it on the session.
func TestProxyServeValidates(t *testing.T) {
	leaktest.Check(t)
	cfg := &tls.Config{}
	dialer := &backend.Dialer{Addr: "127.0.0.1:1"}
	for _, tt := range []struct {
		name string
		p    *mailedge.Proxy
	}{
		{"nil Server", &mailedge.Proxy{Backend: dialer}},
		{"nil Backend", &mailedge.Proxy{Server: &starttls.Server{TLSConfig: cfg}}},
		{"nil *backend.Pool", &mailedge.Proxy{Server: &starttls.Server{TLSConfig: cfg}, Backend: (*backend.Pool)(nil)}},
		{"Implicit without TLSConfig", &mailedge.Proxy{Server: &starttls.Server{}, Implicit: true, Backend: dialer}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			assert.ErrorIs(t, tt.p.Serve(context.Background(), l), mailedge.ErrConfig)
			_, err = l.Accept()
			assert.ErrorIs(t, err, net.ErrClosed, "Serve closes its listener")

			client, server := net.Pipe()
			defer client.Close()
			in := tt.p.ServeConn(context.Background(), server)
			assert.ErrorIs(t, in.Err, mailedge.ErrConfig)
			_, err = client.Read(make([]byte, 1))
			assert.ErrorIs(t, err, io.EOF, "ServeConn closes the conn")
		})
	}
}

// TestProxyServeCallsWaitForTheirOwnSessions: one Proxy serving two
// listeners; the Serve of one returns when its listener closes even while
// a session of the other is open (they shared one WaitGroup).
func TestProxyServeCallsWaitForTheirOwnSessions(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	p := &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg},
		Backend: &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
	}
	la, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	doneA := make(chan error, 1)
	go func() { doneA <- p.Serve(context.Background(), la) }()
	addrB := serve(t, p)

	c, err := net.Dial("tcp", addrB)
	require.NoError(t, err)
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "220 "), line)

	la.Close()
	assert.NoError(t, <-doneA, "Serve of A returned while B's session is open")
}

// TestProxyShutdown: Shutdown stops accepting at once and lets an open
// session finish; with a context that ends first, it cuts the session and
// returns the context's error. Serve after Shutdown fails.
func TestProxyShutdown(t *testing.T) {
	for _, tt := range []struct {
		name string
		cut  bool
	}{
		{"sessions finish", false},
		{"context ends first", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			f := newFixture(t)
			p := &mailedge.Proxy{
				Server:  &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg},
				Backend: &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			served := make(chan error, 1)
			go func() { served <- p.Serve(context.Background(), l) }()
			c, err := net.Dial("tcp", l.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(line, "220 "), line)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			shut := make(chan error, 1)
			go func() { shut <- p.Shutdown(ctx) }()
			require.Eventually(t, func() bool {
				nc, err := net.Dial("tcp", l.Addr().String())
				if err == nil {
					nc.Close()
				}
				return err != nil
			}, 10*time.Second, 5*time.Millisecond, "the listener is closed")

			_, err = io.WriteString(c, "NOOP\r\n")
			require.NoError(t, err)
			line, err = r.ReadString('\n')
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(line, "250"), "the open session still works: %q", line)
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned %v with a session open", err)
			default:
			}

			if tt.cut {
				cancel()
				assert.ErrorIs(t, <-shut, context.Canceled)
				_, err = io.ReadAll(r)
				assert.NoError(t, err, "the session was cut")
			} else {
				_, err = io.WriteString(c, "QUIT\r\n")
				require.NoError(t, err)
				assert.NoError(t, <-shut)
			}
			assert.NoError(t, <-served)

			l2, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			assert.ErrorIs(t, p.Serve(context.Background(), l2), mailedge.ErrProxyClosed)
		})
	}
}

// TestProxyBytesOutIsWhatClientReceived: on implicit-TLS listeners the
// backend greeting the handover relays is counted in
// Stats.ServerToClient, so it equals what the client read.
func TestProxyBytesOutIsWhatClientReceived(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	for _, tt := range []struct {
		name  string
		proto starttls.Protocol
		addr  string
		bye   string
	}{
		{"imaps", starttls.IMAP, f.addrs.IMAP, "a LOGOUT\r\n"},
		{"smtps", starttls.SMTP, f.addrs.MX, "QUIT\r\n"},
		{"pop3s", starttls.POP3, f.addrs.POP3, "QUIT\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sessions := make(chan mailedge.SessionInfo, 1)
			addr := serve(t, &mailedge.Proxy{
				Server:    &starttls.Server{Protocol: tt.proto, TLSConfig: f.cfg},
				Implicit:  true,
				Backend:   &backend.Dialer{Addr: tt.addr, Protocol: tt.proto},
				OnSession: func(in mailedge.SessionInfo) { sessions <- in },
			})
			c, err := tls.Dial("tcp", addr, f.roots)
			require.NoError(t, err)
			defer c.Close()
			r := bufio.NewReader(c)
			greeting, err := r.ReadString('\n')
			require.NoError(t, err)
			_, err = io.WriteString(c, tt.bye)
			require.NoError(t, err)
			rest, err := io.ReadAll(r) // the backend closed after its goodbye
			require.NoError(t, err)
			c.Close()
			in := <-sessions
			assert.Equal(t, mailedge.OutcomeOK, in.Outcome, "%v", in.Err)
			assert.Equal(t, int64(len(greeting)+len(rest)), in.Stats.ServerToClient, "bytes_out")
			assert.Equal(t, int64(len(tt.bye)), in.Stats.ClientToServer, "bytes_in")
		})
	}
}

// TestProxyImplicitHandshakeErrorSaysTLS: a failed handshake on an
// implicit-TLS listener is reported as such, not as a STARTTLS failure.
func TestProxyImplicitHandshakeErrorSaysTLS(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := newFixture(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	addr := serve(t, f.imaps(bridge.Options{}, func(in mailedge.SessionInfo) { sessions <- in }))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "a LOGIN demo demo\r\n") // plain text on 993
	require.NoError(t, err)
	io.ReadAll(c)
	in := <-sessions
	assert.Equal(t, mailedge.OutcomeClientError, in.Outcome)
	require.Error(t, in.Err)
	assert.True(t, strings.HasPrefix(in.Err.Error(), "tls handshake: "), "got %q", in.Err)
	assert.NotContains(t, in.Err.Error(), "starttls")
}

// TestProxyStoreFailureAtMailKeepsSession: a Limiter whose Store fails at
// MAIL or RCPT (a fleet's Redis down, fail-closed) refuses the command
// with 451 4.3.0, as Postfix answers a temporary lookup failure, and the
// session goes on; a 421 would have ended it.
func TestProxyStoreFailureAtMailKeepsSession(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	var mem ratelimit.MemoryStore
	store := ratelimit.StoreFunc(func(ctx context.Context, r ratelimit.Request) (ratelimit.Counts, error) {
		if r.Event == ratelimit.Message || r.Event == ratelimit.Recipient {
			return ratelimit.Counts{}, errors.New("redis: connection refused")
		}
		return mem.Record(ctx, r)
	})
	p := &mailedge.Proxy{
		Server:      &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: f.cfg, Hostname: "mx.example.com"},
		Backend:     &backend.Dialer{Addr: f.addrs.MX, Protocol: starttls.SMTP},
		Limiter:     &ratelimit.Limiter{Limits: ratelimit.Limits{MessageRate: 10}, Store: store},
		InspectSMTP: true,
	}
	addr := serve(t, p)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	reply := smtpReplies(t, c)
	require.True(t, strings.HasPrefix(reply(""), "220 "))
	require.True(t, strings.HasPrefix(reply("EHLO client.example"), "250 "))
	got := reply("MAIL FROM:<a@example.net>")
	assert.True(t, strings.HasPrefix(got, "451 4.3.0 "), "got %q", got)
	got = reply("NOOP")
	assert.True(t, strings.HasPrefix(got, "250"), "the session goes on: got %q", got)
	got = reply("QUIT")
	assert.True(t, strings.HasPrefix(got, "221"), "got %q", got)
}

// smtpReplies returns a function that sends cmd on c (nothing if empty)
// and returns the last line of the SMTP reply that follows.
func smtpReplies(t *testing.T, c net.Conn) func(cmd string) string {
	r := bufio.NewReader(c)
	return func(cmd string) string {
		t.Helper()
		if cmd != "" {
			_, err := io.WriteString(c, cmd+"\r\n")
			require.NoError(t, err)
		}
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			if len(line) < 4 || line[3] != '-' {
				return line
			}
		}
	}
}
