package monitor

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
	"github.com/stretchr/testify/assert"
)

const testUser, testPass = "alice", "s3cret"

// smtpBackend is a go-smtp backend that accepts AUTH PLAIN and LOGIN for
// testUser and nothing else.
type smtpBackend struct{}

func (smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{}, nil }

type smtpSession struct{}

func (*smtpSession) Reset()                               {}
func (*smtpSession) Logout() error                        { return nil }
func (*smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*smtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (*smtpSession) AuthMechanisms() []string             { return []string{sasl.Plain, sasl.Login} }
func (*smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech == sasl.Login {
		return &loginServer{}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error { return checkCreds(user, pass) }), nil
}

func checkCreds(user, pass string) error {
	if user != testUser || pass != testPass {
		return smtp.ErrAuthFailed
	}
	return nil
}

// loginServer is the server side of the LOGIN mechanism, which go-sasl
// does not provide: Username:, then Password:.
type loginServer struct {
	user string
	step int
}

func (s *loginServer) Next(resp []byte) ([]byte, bool, error) {
	s.step++
	switch {
	case s.step == 1 && resp == nil:
		s.step = 0
		return []byte("Username:"), false, nil
	case s.step == 1:
		s.user = string(resp)
		return []byte("Password:"), false, nil
	default:
		return nil, true, checkCreds(s.user, string(resp))
	}
}

// smtpServer starts go-smtp on loopback. starttls offers STARTTLS with cfg;
// implicit wraps the listener in TLS instead.
func smtpServer(t *testing.T, cfg *tls.Config, implicit, insecureAuth bool) string {
	t.Helper()
	s := smtp.NewServer(smtpBackend{})
	s.Domain = testHost
	s.AllowInsecureAuth = insecureAuth
	s.ErrorLog = quietLog()
	ln := listen(t)
	if implicit {
		ln = tls.NewListener(ln, cfg)
	} else {
		s.TLSConfig = cfg
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		_ = ln.Close() // Close misses a listener Serve has not registered yet
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestSMTPProbeRealServer(t *testing.T) {
	p := newPKI(t, nil)
	tests := []struct {
		name     string
		implicit bool
		starttls bool // server offers STARTTLS
		insecure bool // server allows AUTH in cleartext
		probe    SMTP
		kind     error
		reason   string
	}{
		{name: "plain no auth", probe: SMTP{Hostname: "probe.example.test"}},
		{name: "plain auth plain", insecure: true, probe: SMTP{Username: testUser, Password: testPass}},
		{name: "plain auth login", insecure: true, probe: SMTP{Username: testUser, Password: testPass, Mechanism: "LOGIN"}},
		{name: "starttls auth plain", starttls: true,
			probe: SMTP{Security: starttls.STARTTLS, TLSConfig: p.client(testHost), Username: testUser, Password: testPass}},
		{name: "implicit tls auth login", implicit: true,
			probe: SMTP{Security: starttls.TLS, TLSConfig: p.client(testHost), Username: testUser, Password: testPass, Mechanism: "login"}},
		{name: "custom sasl", insecure: true,
			probe: SMTP{SASL: func() sasl.Client { return sasl.NewPlainClient("", testUser, testPass) }}},
		{name: "wrong password plain", insecure: true, probe: SMTP{Username: testUser, Password: "nope"},
			kind: ErrAuth, reason: "AUTH failed: 535 5.7.8 Authentication failed"},
		{name: "wrong password login", starttls: true,
			probe: SMTP{Security: starttls.STARTTLS, TLSConfig: p.client(testHost), Username: "bob", Password: "x", Mechanism: "LOGIN"},
			kind:  ErrAuth, reason: "AUTH failed: 535 5.7.8 Authentication failed"},
		{name: "auth not offered in cleartext", probe: SMTP{Username: testUser, Password: testPass},
			kind: ErrAuth, reason: "AUTH not offered"},
		{name: "unknown mechanism", probe: SMTP{Username: testUser, Mechanism: "CRAM-MD5"},
			kind: ErrAuth, reason: `AUTH: monitor: unsupported SASL mechanism "CRAM-MD5"`},
		{name: "starttls not offered", probe: SMTP{Security: starttls.STARTTLS, TLSConfig: p.client(testHost)},
			kind: ErrStartTLS, reason: "STARTTLS not offered"},
		{name: "starttls wrong name", starttls: true, probe: SMTP{Security: starttls.STARTTLS, TLSConfig: p.client("other.example.test")},
			kind: ErrTLS, reason: "TLS verify failed: x509: certificate is valid for mail.example.test, not other.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runRealProbe(t, smtpServer, p.server, realProbe{tt.implicit, tt.starttls, tt.insecure}, tt.probe, tt.probe.Security, tt.kind, tt.reason)
		})
	}
}

func TestSMTPProbeExpiredStartTLS(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	p := newPKI(t, func(ca *mailtest.CA) (*mailtest.Leaf, error) { return ca.Expired(mailtest.ECDSA, testHost) })
	addr := smtpServer(t, p.server, false, false)
	r := SMTP{Security: starttls.STARTTLS, TLSConfig: p.client(testHost)}.Probe(probeCtx(t, ""), addr)
	assert.ErrorIs(t, r.Err, ErrTLS)
	assert.Contains(t, r.Err.Error(), "TLS verify failed: x509: certificate has expired")
}

// smtpFake greets (if greeting is not empty) and answers EHLO and STARTTLS
// as told, everything else with 250.
func smtpFake(greeting, ehlo, starttls string) func(net.Conn) {
	return script(greeting, func(line string) string {
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			return ehlo
		case "HELO":
			return "502 5.5.1 no HELO either\r\n"
		case "STARTTLS":
			return starttls
		case "QUIT":
			return "221 bye\r\n"
		}
		return "250 ok\r\n"
	})
}

const fakeGreeting = "220 fake.example.test ESMTP\r\n"

func TestSMTPProbeMisbehaving(t *testing.T) {
	tests := []struct {
		name   string
		handle func(net.Conn)
		probe  SMTP
		kind   error
		reason string
	}{
		{name: "silent", handle: silent, kind: ErrNoGreeting, reason: "no greeting within 300ms"},
		{name: "slow greeting is still up", handle: slowly("220-slow.example.test\r\n220 ESMTP\r\n", smtpFake("", "250 ok\r\n", ""))},
		{name: "554 greeting", handle: greets("554 5.3.2 not accepting mail\r\n"),
			kind: ErrGreeting, reason: "wrong greeting: 554 5.3.2 not accepting mail"},
		{name: "EHLO 550", handle: smtpFake(fakeGreeting, "550 5.7.1 go away\r\n", ""),
			kind: ErrHello, reason: "EHLO refused: 550 5.7.1 go away"},
		{name: "EHLO 502 falls back to HELO, refused too", handle: smtpFake(fakeGreeting, "502 5.5.2 what?\r\n", ""),
			kind: ErrHello, reason: "EHLO refused: 502 5.5.1 no HELO either"},
		{name: "EHLO refused before STARTTLS", handle: smtpFake(fakeGreeting, "554 5.7.1 not you\r\n", ""), probe: SMTP{Security: starttls.STARTTLS},
			kind: ErrHello, reason: "EHLO refused: 554 5.7.1 not you"},
		{name: "STARTTLS refused", handle: smtpFake(fakeGreeting, "250-fake\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n"),
			probe: SMTP{Security: starttls.STARTTLS}, kind: ErrStartTLS, reason: "STARTTLS refused: 454 4.7.0 TLS not available"},
		{name: "STARTTLS response injection", handle: smtpFake(fakeGreeting, "250-fake\r\n250 STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n"),
			probe: SMTP{Security: starttls.STARTTLS}, kind: ErrStartTLS,
			reason: "STARTTLS: server sent 14 bytes before the TLS handshake (response injection)"},
		{name: "EHLO reply never comes", handle: smtpFake(fakeGreeting, "", ""), probe: SMTP{Security: starttls.STARTTLS},
			kind: ErrHello, reason: "EHLO: no reply within 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			addr := serveFunc(t, nil, tt.handle)
			checkResult(t, tt.probe.Probe(probeCtx(t, tt.reason), addr), tt.kind, tt.reason)
		})
	}
}

func TestSMTPProbeConnectRefused(t *testing.T) {
	r := SMTP{}.Probe(probeCtx(t, ""), closedAddr(t))
	assert.ErrorIs(t, r.Err, ErrConnect)
	assert.Contains(t, r.Err.Error(), "connection refused")
}
