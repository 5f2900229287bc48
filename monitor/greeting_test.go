package monitor

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowly writes s one byte per write, as HAProxy's smtp-check.vtc does to
// prove a checker reassembles a greeting split across segments.
// Then it hands the connection to next, or waits for the client to leave.
func slowly(s string, next func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		for i := range len(s) {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				return
			}
			time.Sleep(time.Millisecond) // pacing, so segments really split
		}
		if next == nil {
			next = silent
		}
		next(c)
	}
}

// greets writes s and then waits for the client to leave.
func greets(s string) func(net.Conn) {
	return func(c net.Conn) {
		_, _ = io.WriteString(c, s)
		_, _ = io.Copy(io.Discard, c)
	}
}

// probeCtx returns a context with the budget a case needs: silentBudget
// when the reason quotes a timeout, else okBudget.
func probeCtx(t *testing.T, reason string) context.Context {
	t.Helper()
	d := okBudget
	if strings.Contains(reason, "within") {
		d = silentBudget
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestGreetingProbe(t *testing.T) {
	tests := []struct {
		name   string
		proto  starttls.Protocol
		handle func(net.Conn)
		kind   error  // nil: the probe must pass
		reason string // exact reason
	}{
		{name: "smtp ok", proto: starttls.SMTP, handle: greets("220 mx.example.test ESMTP\r\n")},
		{name: "smtp multi-line ok", proto: starttls.SMTP, handle: greets("220-mx.example.test\r\n220-welcome\r\n220 ESMTP\r\n")},
		{name: "smtp slow greeting", proto: starttls.SMTP, handle: slowly("220 slow.example.test ESMTP\r\n", nil)},
		{name: "imap ok", proto: starttls.IMAP, handle: greets("* OK [CAPABILITY IMAP4rev1] ready\r\n")},
		{name: "pop3 ok", proto: starttls.POP3, handle: greets("+OK POP3 ready\r\n")},
		{name: "silent", proto: starttls.SMTP, handle: silent,
			kind: ErrNoGreeting, reason: "no greeting within 300ms"},
		{name: "closed without greeting", proto: starttls.SMTP, handle: func(net.Conn) {},
			kind: ErrNoGreeting, reason: "connection closed without greeting"},
		{name: "smtp 421", proto: starttls.SMTP, handle: greets("421 4.3.2 mx busy, try later\r\n"),
			kind: ErrGreeting, reason: "wrong greeting: 421 4.3.2 mx busy, try later"},
		{name: "smtp 554", proto: starttls.SMTP, handle: greets("554 5.7.1 no service for you\r\n"),
			kind: ErrGreeting, reason: "wrong greeting: 554 5.7.1 no service for you"},
		{name: "smtp garbage", proto: starttls.SMTP, handle: greets("SSH-2.0-OpenSSH_9.6\r\n"),
			kind: ErrGreeting, reason: `wrong greeting: not SMTP: malformed reply: reply line "SSH-2.0-OpenSSH_9.6" has no code`},
		{name: "smtp mixed codes", proto: starttls.SMTP, handle: greets("220-hello\r\n554 no\r\n"),
			kind: ErrGreeting, reason: `wrong greeting: not SMTP: malformed reply: reply code changed from 220 to 554`},
		{name: "imap bye", proto: starttls.IMAP, handle: greets("* BYE too many connections\r\n"),
			kind: ErrGreeting, reason: "server said BYE: too many connections"},
		{name: "imap preauth", proto: starttls.IMAP, handle: greets("* PREAUTH logged in as root\r\n"),
			kind: ErrGreeting, reason: "unexpected PREAUTH greeting: logged in as root"},
		{name: "imap garbage", proto: starttls.IMAP, handle: greets("220 smtp here\r\n"),
			kind: ErrGreeting, reason: `wrong greeting: not IMAP: "220 smtp here"`},
		{name: "pop3 err", proto: starttls.POP3, handle: greets("-ERR maildrop busy\r\n"),
			kind: ErrGreeting, reason: "wrong greeting: -ERR maildrop busy"},
		{name: "pop3 garbage", proto: starttls.POP3, handle: greets("* OK imap\r\n"),
			kind: ErrGreeting, reason: `wrong greeting: not POP3: "* OK imap"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			addr := serveFunc(t, nil, tt.handle)
			r := Greeting{Protocol: tt.proto}.Probe(probeCtx(t, tt.reason), addr)
			checkResult(t, r, tt.kind, tt.reason)
		})
	}
}

// checkResult asserts a passing result when kind is nil, else the kind and
// the exact reason.
func checkResult(t *testing.T, r Result, kind error, reason string) {
	t.Helper()
	if kind == nil {
		assert.True(t, r.OK, "probe failed: %v", r.Err)
		assert.NoError(t, r.Err)
		return
	}
	assert.False(t, r.OK)
	assert.ErrorIs(t, r.Err, kind)
	if r.Err == nil {
		return
	}
	// "no greeting within 300ms": the budget is what is left of the
	// context's deadline when the probe starts, a few milliseconds less
	// than the test's on a loaded machine; the words must match exactly.
	got := r.Err.Error()
	if head, want, ok := strings.Cut(reason, " within "); ok {
		ghead, gdur, gok := strings.Cut(got, " within ")
		wd, werr := time.ParseDuration(want)
		gd, gerr := time.ParseDuration(gdur)
		if gok && werr == nil && gerr == nil && ghead == head && gd <= wd && gd > wd/2 {
			return
		}
	}
	assert.Equal(t, reason, got)
}

func TestGreetingConnectRefused(t *testing.T) {
	addr := closedAddr(t)
	r := Greeting{}.Probe(probeCtx(t, ""), addr)
	assert.False(t, r.OK)
	assert.ErrorIs(t, r.Err, ErrConnect)
	assert.Contains(t, r.Err.Error(), "connect: dial tcp "+addr)
	assert.Contains(t, r.Err.Error(), "connection refused")
}

func TestGreetingNoContextDeadline(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	addr := serveFunc(t, nil, greets("220 ok\r\n"))
	r := Greeting{}.Probe(context.Background(), addr)
	assert.True(t, r.OK, "%v", r.Err)
}

func TestGreetingCancelled(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	addr := serveFunc(t, nil, silent)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Greeting{}.Probe(ctx, addr)
	assert.False(t, r.OK)
}

func TestGreetingImplicitTLS(t *testing.T) {
	good := newPKI(t, nil)
	expired := newPKI(t, func(ca *mailtest.CA) (*mailtest.Leaf, error) { return ca.Expired(mailtest.ECDSA, testHost) })
	tests := []struct {
		name   string
		server pki
		sni    string
		roots  bool
		kind   error
		substr string
	}{
		{name: "ok", server: good, sni: testHost, roots: true},
		{name: "wrong name", server: good, sni: "other.example.test", roots: true,
			kind: ErrTLS, substr: "TLS verify failed: x509: certificate is valid for mail.example.test, not other.example.test"},
		{name: "expired", server: expired, sni: testHost, roots: true,
			kind: ErrTLS, substr: "TLS verify failed: x509: certificate has expired or is not yet valid"},
		{name: "unknown authority", server: good, sni: testHost, roots: false,
			kind: ErrTLS, substr: "TLS verify failed: x509: certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			addr := serveFunc(t, tt.server.server, greets("220 tls ok\r\n"))
			cfg := tt.server.client(tt.sni)
			if !tt.roots {
				cfg.RootCAs = newPKI(t, nil).roots // another CA
			}
			r := Greeting{Security: starttls.TLS, TLSConfig: cfg}.Probe(probeCtx(t, ""), addr)
			if tt.kind == nil {
				require.True(t, r.OK, "%v", r.Err)
				assert.Regexp(t, `^TLS 1\.3, certificate expires in (89|90) days$`, r.Detail)
				assert.False(t, r.Expires.IsZero())
				return
			}
			assert.False(t, r.OK)
			assert.ErrorIs(t, r.Err, tt.kind)
			require.Error(t, r.Err)
			assert.Contains(t, r.Err.Error(), tt.substr)
		})
	}
}

// realProbe says how runRealProbe starts its server: with implicit TLS,
// offering STARTTLS, and whether it accepts logins in clear text.
type realProbe struct{ implicit, starttls, insecure bool }

// runRealProbe starts a real server with start (given srvCfg when it speaks
// TLS), runs probe against it and checks the verdict and reason; a
// successful TLS probe must report its certificate's expiry.
func runRealProbe(t *testing.T, start func(*testing.T, *tls.Config, bool, bool) string, srvCfg *tls.Config,
	how realProbe, probe Probe, sec starttls.Security, kind error, reason string) {
	t.Helper()
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	var cfg *tls.Config
	if how.starttls || how.implicit {
		cfg = srvCfg
	}
	addr := start(t, cfg, how.implicit, how.insecure)
	r := probe.Probe(probeCtx(t, reason), addr)
	checkResult(t, r, kind, reason)
	if kind == nil && sec != starttls.Plain {
		assert.True(t, strings.HasPrefix(r.Detail, "TLS 1.3, certificate expires in"), r.Detail)
	}
}
