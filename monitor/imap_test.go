package monitor

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
	"github.com/stretchr/testify/require"
)

// imapServer starts go-imap's imapserver over an imapmemserver holding
// testUser with an INBOX. starttls offers STARTTLS with cfg; implicit wraps
// the listener in TLS instead; insecure allows LOGIN in cleartext.
func imapServer(t *testing.T, cfg *tls.Config, implicit, insecure bool) string {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPass)
	require.NoError(t, u.Create("INBOX", nil))
	mem.AddUser(u)
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: insecure,
		Logger:       quietLog(),
	}
	ln := listen(t)
	if implicit {
		ln = tls.NewListener(ln, cfg)
	} else {
		opts.TLSConfig = cfg
	}
	s := imapserver.New(opts)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestIMAPProbeRealServer(t *testing.T) {
	p := newPKI(t, nil)
	tests := []struct {
		name     string
		implicit bool
		starttls bool
		insecure bool
		probe    IMAP
		kind     error
		reason   string
	}{
		{name: "plain no login", probe: IMAP{}},
		{name: "plain login list", insecure: true, probe: IMAP{Username: testUser, Password: testPass}},
		{name: "plain login examine", insecure: true, probe: IMAP{Username: testUser, Password: testPass, Examine: true}},
		{name: "starttls login", starttls: true,
			probe: IMAP{Security: starttls.STARTTLS, TLSConfig: p.client(testHost), Username: testUser, Password: testPass}},
		{name: "implicit tls login", implicit: true,
			probe: IMAP{Security: starttls.TLS, TLSConfig: p.client(testHost), Username: testUser, Password: testPass, Examine: true}},
		{name: "wrong password", insecure: true, probe: IMAP{Username: testUser, Password: "nope"},
			kind: ErrAuth, reason: "login failed: NO [AUTHENTICATIONFAILED] Authentication failed"},
		{name: "login disabled in cleartext", probe: IMAP{Username: testUser, Password: testPass},
			kind: ErrAuth, reason: "login failed: server advertises LOGINDISABLED (TLS required)"},
		{name: "LIST of a missing mailbox", insecure: true, probe: IMAP{Username: testUser, Password: testPass, Mailbox: "Archive"},
			kind: ErrMailbox, reason: "LIST Archive failed: no such mailbox"},
		{name: "EXAMINE of a missing mailbox", insecure: true,
			probe: IMAP{Username: testUser, Password: testPass, Mailbox: "Archive", Examine: true},
			kind:  ErrMailbox, reason: "EXAMINE Archive failed: NO [NONEXISTENT] No such mailbox"},
		{name: "starttls not supported", probe: IMAP{Security: starttls.STARTTLS, TLSConfig: p.client(testHost)},
			kind: ErrStartTLS, reason: "STARTTLS refused: NO STARTTLS not supported"},
		{name: "starttls wrong name", starttls: true, probe: IMAP{Security: starttls.STARTTLS, TLSConfig: p.client("other.example.test")},
			kind: ErrTLS, reason: "TLS verify failed: x509: certificate is valid for mail.example.test, not other.example.test"},
		{name: "implicit tls wrong name", implicit: true, probe: IMAP{Security: starttls.TLS, TLSConfig: p.client("other.example.test")},
			kind: ErrTLS, reason: "TLS verify failed: x509: certificate is valid for mail.example.test, not other.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runRealProbe(t, imapServer, p.server, realProbe{tt.implicit, tt.starttls, tt.insecure}, tt.probe, tt.probe.Security, tt.kind, tt.reason)
		})
	}
}

func TestIMAPProbeMisbehaving(t *testing.T) {
	tests := []struct {
		name   string
		handle func(net.Conn)
		probe  IMAP
		kind   error
		reason string
	}{
		{name: "silent", handle: silent, kind: ErrNoGreeting, reason: "no greeting within 300ms"},
		{name: "bye", handle: greets("* BYE server shutting down\r\n"),
			kind: ErrGreeting, reason: "server said BYE: server shutting down"},
		{name: "unexpected preauth", handle: greets("* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n"),
			kind: ErrGreeting, reason: "unexpected PREAUTH greeting: [CAPABILITY IMAP4rev1] welcome"},
		{name: "slow greeting is still up", handle: slowly("* OK slow but sure\r\n", script("", func(line string) string {
			tag, cmd, _ := strings.Cut(line, " ")
			switch strings.ToUpper(cmd) {
			case "CAPABILITY":
				return "* CAPABILITY IMAP4rev1\r\n" + tag + " OK done\r\n"
			case "LOGOUT":
				return "* BYE\r\n" + tag + " OK bye\r\n"
			}
			return tag + " BAD what\r\n"
		}))},
		{name: "starttls response injection", probe: IMAP{Security: starttls.STARTTLS},
			handle: script("* OK hi\r\n", func(line string) string { return "m1 OK go\r\n* OK injected\r\n" }),
			kind:   ErrStartTLS, reason: "STARTTLS: server sent 15 bytes before the TLS handshake (response injection)"},
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
