package adversarial_test

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// dialogue is one protocol's pre-TLS exchange as a client drives it.
type dialogue struct {
	proto    starttls.Protocol
	greeting string // first line's prefix
	hello    string // capability command
	helloEnd string // prefix of the last line of its answer
	starttls string // the upgrade command
	goAhead  string // prefix of the go-ahead answer
	inject   string // pipelined after the upgrade command (the attack)
	injected string // what an answer to inject would start with
}

var dialogues = map[starttls.Protocol]dialogue{
	starttls.SMTP: {starttls.SMTP, "220 ", "EHLO client.example\r\n", "250 ", "STARTTLS\r\n", "220 ", "EHLO evil\r\n", "250"},
	starttls.IMAP: {starttls.IMAP, "* OK", "a CAPABILITY\r\n", "a OK", "A STARTTLS\r\n", "A OK", "XYZ NOOP\r\n", "XYZ"},
	starttls.POP3: {starttls.POP3, "+OK", "CAPA\r\n", ".", "STLS\r\n", "+OK", "CAPA\r\n", "+OK"},
}

// beforeUpgrade reads the greeting and the capability answer.
func (d dialogue) beforeUpgrade(c *conv) {
	c.t.Helper()
	require.True(c.t, strings.HasPrefix(c.must(), d.greeting))
	c.send(d.hello)
	c.until(d.helloEnd)
}

// TestClientSide is class A: the proxy toward clients, the STARTTLS command
// injection of CVE-2011-0411 and the USENIX 2021 study, the TLS state
// after the upgrade, and the Require mode's refusals.
func TestClientSide(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto starttls.Protocol
	}{
		{"A1_SMTP_pipelined_injection_after_STARTTLS", starttls.SMTP},
		{"A2_IMAP_pipelined_injection_after_STARTTLS", starttls.IMAP},
		{"A3_POP3_pipelined_injection_after_STLS", starttls.POP3},
	} {
		t.Run(tc.name, func(t *testing.T) { testInjection(t, dialogues[tc.proto]) })
	}
	t.Run("A4_TLS_never_wraps_buffered_bytes", testBufferedClientHello)
	for _, tc := range []struct {
		name  string
		proto starttls.Protocol
	}{
		{"A5_SMTP_no_STARTTLS_after_TLS_through_Proxy", starttls.SMTP},
		{"A5_IMAP_no_STARTTLS_after_TLS_through_Proxy", starttls.IMAP},
		{"A5_POP3_no_STLS_after_TLS_through_Proxy", starttls.POP3},
	} {
		t.Run(tc.name, func(t *testing.T) { testNoStartTLSAfterTLS(t, tc.proto) })
	}
	t.Run("A6_STARTTLS_with_argument_refused", testStartTLSArgument)
	t.Run("A6_IMAP_STARTTLS_after_LOGIN_refused_through_Proxy", testIMAPStartTLSAfterLogin)
	t.Run("A6_POP3_STLS_in_TRANSACTION_refused_through_Proxy", testPOP3STLSInTransaction)
	t.Run("A7_Require_hides_and_refuses_AUTH_SMTP", testRequireSMTP)
	t.Run("A7_Require_hides_and_refuses_LOGIN_IMAP", testRequireIMAP)
	t.Run("A7_Require_hides_and_refuses_USER_POP3", testRequirePOP3)
}

// testInjection sends the upgrade command and a second command in one
// write, first to a starttls.Server, then through a whole mailedge.Proxy.
// Nothing sent before TLS may be answered, inside TLS or out.
func testInjection(t *testing.T, d dialogue) {
	leaktest.Check(t)
	p := newPKI(t)
	srv := &starttls.Server{Protocol: d.proto, TLSConfig: p.server}
	addr, results := serveStartTLS(t, srv, false)
	c := dialConv(t, addr)
	d.beforeUpgrade(c)
	c.send(d.starttls + d.inject)
	rest := c.rest()
	r := result(t, results)
	require.Error(t, r.err, "Serve accepted a session after an injection")
	if assert.ErrorIs(t, r.err, starttls.ErrInjection) {
		assert.Empty(t, rest, "the upgrade command was answered although bytes followed it")
	}
	assert.NotContains(t, rest, "\n"+d.injected, "the injected command was answered")

	// The same through the whole path: the session never reaches a backend.
	be := newFake(t, func(net.Conn) {})
	sessions := make(chan mailedge.SessionInfo, 1)
	paddr := serveProxy(t, &mailedge.Proxy{
		Server:    srv,
		Backend:   &backend.Dialer{Addr: be.Addr(), Protocol: d.proto},
		OnSession: func(in mailedge.SessionInfo) { sessions <- in },
	})
	c = dialConv(t, paddr)
	d.beforeUpgrade(c)
	c.send(d.starttls + d.inject)
	rest = c.rest()
	in := <-sessions
	assert.Equal(t, mailedge.OutcomeClientError, in.Outcome)
	assert.ErrorIs(t, in.Err, starttls.ErrInjection)
	assert.Empty(t, rest)
	assert.Zero(t, be.Accepted(), "a backend was dialled for an injected session")
}

// testBufferedClientHello pipelines a real ClientHello right behind the
// STARTTLS line. A server that fed its read buffer to the TLS layer (the
// go-imap way) would answer with a ServerHello; the connection must be
// closed instead (docs/architecture.md, the client side).
func testBufferedClientHello(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	for _, proto := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		d := dialogues[proto]
		addr, results := serveStartTLS(t, &starttls.Server{Protocol: proto, TLSConfig: p.server}, false)
		c := dialConv(t, addr)
		d.beforeUpgrade(c)
		c.send(d.starttls + string(clientHello(t, p.client)))
		rest := c.rest()
		r := result(t, results)
		assert.ErrorIs(t, r.err, starttls.ErrInjection, proto.String())
		assert.NotContains(t, rest, "\x16\x03", "%s: a ServerHello was sent for buffered bytes", proto)
	}
}

// testNoStartTLSAfterTLS goes through STARTTLS with the proxy to a demo
// backend that itself offers STARTTLS (it was not told it sits behind a TLS
// proxy), then asks for capabilities twice and tries a second STARTTLS.
func testNoStartTLSAfterTLS(t *testing.T, proto starttls.Protocol) {
	leaktest.Check(t)
	p := newPKI(t)
	addrs := startDemo(t, p.server)
	target := map[starttls.Protocol]string{starttls.SMTP: addrs.MX, starttls.IMAP: addrs.IMAP, starttls.POP3: addrs.POP3}[proto]
	paddr := serveProxy(t, &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: proto, TLSConfig: p.server},
		Backend: &backend.Dialer{Addr: target, Protocol: proto},
	})
	d := dialogues[proto]
	c := dialConv(t, paddr)
	d.beforeUpgrade(c)
	c.send(d.starttls)
	require.True(t, strings.HasPrefix(c.must(), d.goAhead))
	c.upgrade(p.client)

	word := map[starttls.Protocol]string{starttls.SMTP: "STARTTLS", starttls.IMAP: "STARTTLS", starttls.POP3: "STLS"}[proto]
	caps := func(tag string) string {
		switch proto {
		case starttls.SMTP:
			c.send("EHLO client.example\r\n")
			return strings.Join(c.until("250 "), "")
		case starttls.IMAP:
			c.send(tag + " CAPABILITY\r\n")
			return strings.Join(c.until(tag+" "), "")
		default:
			c.send("CAPA\r\n")
			return strings.Join(c.until("."), "")
		}
	}
	first := caps("c1")
	assert.NotContains(t, first, word, "first capability answer after TLS")
	second := caps("c2")
	var again string
	switch proto {
	case starttls.SMTP:
		c.send("STARTTLS\r\n")
		again = c.must()
	case starttls.IMAP:
		c.send("s2 STARTTLS\r\n")
		again = strings.Join(c.until("s2 "), "")
	default:
		c.send("STLS\r\n")
		again = c.must()
	}
	t.Logf("second capability answer: %q; second %s answered: %q", second, word, again)
	assert.NotContains(t, second, word, "second capability answer after TLS: the backend's %s reached the client", word)
	if proto == starttls.IMAP {
		assert.NotContains(t, first+second, "LOGINDISABLED", "LOGINDISABLED after TLS")
	}
	refused := !strings.HasPrefix(again, map[starttls.Protocol]string{starttls.SMTP: "220", starttls.IMAP: "* OK", starttls.POP3: "+OK"}[proto]) &&
		!strings.Contains(again, "s2 OK")
	assert.True(t, refused, "a second %s inside TLS was accepted: %q", word, again)
	// The refusal is the protocol's own: 454 from the SMTP inspector, the
	// backend's tagged BAD/NO or -ERR to the renamed command for IMAP/POP3.
	want := map[starttls.Protocol]string{starttls.SMTP: "454 ", starttls.IMAP: "s2 ", starttls.POP3: "-ERR"}[proto]
	assert.True(t, strings.HasPrefix(again, want), "second %s answered %q; want %q...", word, again, want)
	if proto == starttls.IMAP {
		// go-imap's server ends a session after an unknown command before
		// authentication (its cross-protocol mitigation); Dovecot goes on.
		return
	}
	// The session goes on in the same TLS after the refusal.
	assert.NotContains(t, caps("c3"), word, "capability answer after the refused %s", word)
}

// testStartTLSArgument: the upgrade commands take no argument.
func testStartTLSArgument(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	for _, tc := range []struct {
		proto   starttls.Protocol
		cmd     string
		refusal string
	}{
		{starttls.SMTP, "STARTTLS now\r\n", "501"},
		{starttls.IMAP, "A STARTTLS now\r\n", "A BAD"},
		{starttls.POP3, "STLS now\r\n", "-ERR"},
	} {
		d := dialogues[tc.proto]
		addr, results := serveStartTLS(t, &starttls.Server{Protocol: tc.proto, TLSConfig: p.server}, false)
		c := dialConv(t, addr)
		d.beforeUpgrade(c)
		c.send(tc.cmd)
		assert.True(t, strings.HasPrefix(c.must(), tc.refusal), tc.proto.String())
		c.c.Close()
		r := result(t, results)
		assert.Error(t, r.err)
	}
}

// testIMAPStartTLSAfterLogin: in Allow mode a plain client logs in through
// the proxy; STARTTLS afterwards is the backend's to refuse (RFC 9051
// §6.2.1: only in the not authenticated state).
func testIMAPStartTLSAfterLogin(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addrs := startDemo(t, p.server)
	paddr := serveProxy(t, &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.IMAP, Mode: starttls.Allow, TLSConfig: p.server},
		Backend: &backend.Dialer{Addr: addrs.IMAP, Protocol: starttls.IMAP},
	})
	c := dialConv(t, paddr)
	c.must()
	c.send("a LOGIN demo@example.com demo\r\n")
	require.Contains(t, strings.Join(c.until("a "), ""), "a OK")
	c.send("b STARTTLS\r\n")
	answer := strings.Join(c.until("b "), "")
	assert.NotContains(t, answer, "b OK")
}

// testPOP3STLSInTransaction: STLS in the TRANSACTION state is refused.
func testPOP3STLSInTransaction(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addrs := startDemo(t, p.server)
	paddr := serveProxy(t, &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.POP3, Mode: starttls.Allow, TLSConfig: p.server},
		Backend: &backend.Dialer{Addr: addrs.POP3, Protocol: starttls.POP3},
	})
	c := dialConv(t, paddr)
	c.must()
	c.send("USER demo@example.com\r\n")
	require.True(t, strings.HasPrefix(c.must(), "+OK"))
	c.send("PASS demo\r\n")
	require.True(t, strings.HasPrefix(c.must(), "+OK"))
	c.send("STLS\r\n")
	assert.True(t, strings.HasPrefix(c.must(), "-ERR"))
}

// testRequireSMTP: before TLS in Require mode no AUTH is offered and AUTH
// and MAIL are refused with 530 5.7.0 (RFC 3207 §4).
func testRequireSMTP(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{TLSConfig: p.server, SMTPExtensions: []string{"AUTH PLAIN LOGIN", "SIZE 1000"}}, false)
	c := dialConv(t, addr)
	c.must()
	c.send("EHLO client.example\r\n")
	ehlo := strings.Join(c.until("250 "), "")
	assert.Contains(t, ehlo, "STARTTLS")
	hidden := !strings.Contains(ehlo, "AUTH")
	for _, cmd := range []string{"AUTH PLAIN AGRlbW8AZGVtbw==\r\n", "AUTH LOGIN\r\n", "MAIL FROM:<a@example.com>\r\n"} {
		c.send(cmd)
		assert.True(t, strings.HasPrefix(c.must(), "530 5.7.0"), cmd)
	}
	c.send("QUIT\r\n")
	c.rest()
	assert.ErrorIs(t, result(t, results).err, starttls.ErrClientQuit)
	knownFailure(t, hidden, "starttls.Server in Require mode advertises the AUTH extension of SMTPExtensions in its EHLO reply before TLS")
}

// testRequireIMAP: LOGINDISABLED, no AUTH=, LOGIN and AUTHENTICATE refused
// with NO [PRIVACYREQUIRED] (RFC 9051 §6.2.3, RFC 5530).
func testRequireIMAP(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.IMAP, TLSConfig: p.server,
		IMAPCapabilities: []string{"AUTH=PLAIN", "SASL-IR", "IDLE"}}, false)
	c := dialConv(t, addr)
	greeting := c.must()
	c.send("a CAPABILITY\r\n")
	caps := strings.Join(c.until("a "), "")
	assert.Contains(t, caps, "LOGINDISABLED")
	assert.Contains(t, caps, "STARTTLS")
	hidden := !strings.Contains(greeting+caps, "AUTH=")
	c.send("b LOGIN demo demo\r\n")
	assert.True(t, strings.HasPrefix(c.must(), "b NO [PRIVACYREQUIRED]"))
	c.send("d AUTHENTICATE PLAIN AGRlbW8AZGVtbw==\r\n")
	assert.True(t, strings.HasPrefix(c.must(), "d NO"))
	c.send("e LOGOUT\r\n")
	c.rest()
	assert.ErrorIs(t, result(t, results).err, starttls.ErrClientQuit)
	knownFailure(t, hidden, "starttls.Server in Require mode advertises AUTH= atoms of IMAPCapabilities in the greeting and CAPABILITY before TLS")
}

// testRequirePOP3: no USER or SASL in CAPA; USER, PASS, APOP and AUTH
// refused with -ERR.
func testRequirePOP3(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.POP3, TLSConfig: p.server,
		POP3Capabilities: []string{"SASL PLAIN", "TOP"}}, false)
	c := dialConv(t, addr)
	c.must()
	c.send("CAPA\r\n")
	caps := strings.Join(c.until("."), "")
	assert.Contains(t, caps, "STLS")
	assert.NotContains(t, caps, "USER")
	hidden := !strings.Contains(caps, "SASL")
	for _, cmd := range []string{"USER demo\r\n", "PASS demo\r\n", "APOP demo 0123456789abcdef0123456789abcdef\r\n", "AUTH PLAIN\r\n"} {
		c.send(cmd)
		assert.True(t, strings.HasPrefix(c.must(), "-ERR"), cmd)
	}
	c.send("QUIT\r\n")
	c.rest()
	assert.ErrorIs(t, result(t, results).err, starttls.ErrClientQuit)
	knownFailure(t, hidden, "starttls.Server in Require mode advertises the SASL line of POP3Capabilities in CAPA before TLS")
}
