package adversarial_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

var smtpCaps = "250-fake.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"

// TestBackendSide is class B: the proxy as a client of STARTTLS-only
// backends, replaying fake-mail-server's malicious server behaviours
// (USENIX 2021) and CVE-2021-38371's response injection. Every case fails
// closed with a sentinel error: never a plain-text session.
func TestBackendSide(t *testing.T) {
	p := newPKI(t)
	imapCaps := "* CAPABILITY IMAP4rev1 STARTTLS\r\n%s OK done\r\n"
	popCaps := "+OK caps\r\nUSER\r\nSTLS\r\n.\r\n"
	for _, tc := range []struct {
		name  string
		proto starttls.Protocol
		s     script
		want  []error // any of these
	}{
		{"B0_SMTP_control_valid_backend", starttls.SMTP, script{"220 fake ESMTP\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "220 go ahead\r\n"}, p.server}, nil},
		{"B0_IMAP_control_valid_backend", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK begin\r\n"}, p.server}, nil},
		{"B0_POP3_control_valid_backend", starttls.POP3, script{"+OK fake\r\n", map[string]string{"CAPA": popCaps, "STLS": "+OK begin\r\n"}, p.server}, nil},

		{"B1_SMTP_response_injection_after_go_ahead", starttls.SMTP, script{"220 fake\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "220 Ready\r\n250-x\r\n250 AUTH LOGIN\r\n"}, nil}, []error{starttls.ErrInjection}},
		{"B1_IMAP_response_injection_after_go_ahead", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK begin\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"}, nil}, []error{starttls.ErrInjection}},
		{"B1_POP3_response_injection_after_go_ahead", starttls.POP3, script{"+OK fake\r\n", map[string]string{"CAPA": popCaps, "STLS": "+OK begin\r\n+OK injected\r\n"}, nil}, []error{starttls.ErrInjection}},

		{"B2_SMTP_STARTTLS_hidden", starttls.SMTP, script{"220 fake\r\n", map[string]string{"EHLO": "250-fake\r\n250 AUTH PLAIN\r\n"}, nil}, []error{starttls.ErrNoStartTLS}},
		{"B2_IMAP_STARTTLS_hidden", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n%s OK\r\n"}, nil}, []error{starttls.ErrNoStartTLS}},
		{"B2_POP3_STLS_hidden", starttls.POP3, script{"+OK fake\r\n", map[string]string{"CAPA": "+OK\r\nUSER\r\n.\r\n"}, nil}, []error{starttls.ErrNoStartTLS}},
		{"B2_IMAP_STARTTLS_only_in_greeting_code_hidden", starttls.IMAP, script{"* OK [CAPABILITY IMAP4rev1] fake\r\n", map[string]string{"CAPABILITY": "* CAPABILITY IMAP4rev1\r\n%s OK\r\n"}, nil}, []error{starttls.ErrNoStartTLS}},

		{"B3_SMTP_STARTTLS_answered_454", starttls.SMTP, script{"220 fake\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "454 4.7.0 TLS not available\r\n"}, nil}, []error{starttls.ErrRefused}},
		{"B3_SMTP_STARTTLS_answered_501", starttls.SMTP, script{"220 fake\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "501 5.5.4 syntax\r\n"}, nil}, []error{starttls.ErrRefused}},
		{"B3_SMTP_STARTTLS_answered_554", starttls.SMTP, script{"220 fake\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "554 5.7.0 no\r\n"}, nil}, []error{starttls.ErrRefused}},
		{"B3_SMTP_STARTTLS_answered_250", starttls.SMTP, script{"220 fake\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "250 ok\r\n"}, nil}, []error{starttls.ErrRefused, starttls.ErrBadResponse}},
		{"B3_IMAP_STARTTLS_answered_BAD", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s BAD no\r\n"}, nil}, []error{starttls.ErrRefused}},
		{"B3_IMAP_STARTTLS_answered_NO", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s NO no\r\n"}, nil}, []error{starttls.ErrRefused}},
		{"B3_IMAP_STARTTLS_answered_continuation", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "+ continue\r\n"}, nil}, []error{starttls.ErrRefused, starttls.ErrBadResponse}},
		{"B3_POP3_STLS_answered_ERR", starttls.POP3, script{"+OK fake\r\n", map[string]string{"CAPA": popCaps, "STLS": "-ERR no\r\n"}, nil}, []error{starttls.ErrRefused}},

		{"B4_IMAP_PREAUTH_greeting", starttls.IMAP, script{"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK begin\r\n"}, p.server}, []error{starttls.ErrPreAuth}},

		{"B5_IMAP_ALERT_in_greeting", starttls.IMAP, script{"* OK [ALERT] visit evil.example\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK begin\r\n"}, p.server}, []error{starttls.ErrBadResponse}},
		{"B5_IMAP_REFERRAL_in_greeting", starttls.IMAP, script{"* OK [REFERRAL imap://evil.example/] hi\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK begin\r\n"}, p.server}, []error{starttls.ErrBadResponse}},
		{"B5_IMAP_ALERT_in_CAPABILITY_answer", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": "* OK [ALERT] evil\r\n" + imapCaps, "STARTTLS": "%s OK begin\r\n"}, p.server}, []error{starttls.ErrBadResponse}},
		{"B5_IMAP_ALERT_in_STARTTLS_answer", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK [ALERT] evil\r\n"}, p.server}, []error{starttls.ErrBadResponse}},
		{"B5_IMAP_REFERRAL_in_STARTTLS_answer", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s NO [REFERRAL imap://evil.example/] go\r\n"}, p.server}, []error{starttls.ErrBadResponse, starttls.ErrRefused}},

		{"B6_IMAP_untagged_before_greeting", starttls.IMAP, script{"* CAPABILITY IMAP4rev1 STARTTLS\r\n* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "%s OK begin\r\n"}, p.server}, []error{starttls.ErrBadResponse}},
		{"B6_IMAP_untagged_before_STARTTLS_answer", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "* 1 EXISTS\r\n%s OK begin\r\n"}, p.server}, []error{starttls.ErrBadResponse}},
		{"B6_IMAP_BYE_before_STARTTLS_answer", starttls.IMAP, script{"* OK fake\r\n", map[string]string{"CAPABILITY": imapCaps, "STARTTLS": "* BYE going\r\n%s OK begin\r\n"}, p.server}, []error{starttls.ErrBadResponse, starttls.ErrRefused}},

		{"B7_IMAP_tagged_greeting", starttls.IMAP, script{"a1 OK fake\r\n", map[string]string{"CAPABILITY": imapCaps}, nil}, []error{starttls.ErrBadResponse}},
		{"B7_SMTP_greeting_421", starttls.SMTP, script{"421 4.3.2 busy\r\n", map[string]string{"EHLO": smtpCaps}, nil}, []error{starttls.ErrRefused}},
		{"B7_SMTP_greeting_554", starttls.SMTP, script{"554 5.3.2 no service\r\n", map[string]string{"EHLO": smtpCaps}, nil}, []error{starttls.ErrRefused}},
		{"B7_SMTP_greeting_221", starttls.SMTP, script{"221 bye\r\n", map[string]string{"EHLO": smtpCaps}, nil}, []error{starttls.ErrRefused, starttls.ErrBadResponse}},
		{"B7_SMTP_greeting_garbage", starttls.SMTP, script{"SSH-2.0-OpenSSH_9.6\r\n", map[string]string{"EHLO": smtpCaps}, nil}, []error{starttls.ErrBadResponse}},
		{"B7_POP3_greeting_ERR", starttls.POP3, script{"-ERR no\r\n", map[string]string{"CAPA": popCaps}, nil}, []error{starttls.ErrRefused}},
		{"B7_IMAP_greeting_BYE", starttls.IMAP, script{"* BYE no\r\n", map[string]string{"CAPABILITY": imapCaps}, nil}, []error{starttls.ErrRefused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaktest.Check(t)
			f := newFake(t, tc.s.Serve)
			conn, err := net.Dial("tcp", f.Addr())
			require.NoError(t, err)
			c := &starttls.Client{Protocol: tc.proto, TLSConfig: p.client, Timeout: ioWait}
			up, err := c.Upgrade(context.Background(), conn)
			if tc.want == nil {
				require.NoError(t, err)
				up.Conn.Close()
				return
			}
			require.Error(t, err, "a plain or injected session was accepted")
			assert.Nil(t, up)
			assert.True(t, isAny(err, tc.want...), "got %v; want one of %v", err, tc.want)
			assert.False(t, isTimeout(err), "failed by timeout, not by refusal: %v", err)
		})
	}
	t.Run("B5_stale_greeting_code_never_replayed_by_Handover", testHandoverStripsCodes)
	t.Run("B7_Dialer_refusal_greetings", testDialerGreetings)
	t.Run("B8_backend_certificates_refused", testBackendCertificates)
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// testHandoverStripsCodes: a greeting read before a STARTTLS upgrade is
// replayed to an implicit-TLS client without its response code, so a
// [REFERRAL] or [ALERT] planted by a man in the middle never reaches it.
func testHandoverStripsCodes(t *testing.T) {
	leaktest.Check(t)
	for _, greeting := range []string{
		"* OK [REFERRAL imap://evil.example/] hi\r\n",
		"* OK [ALERT] enter your password at evil.example\r\n",
		"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n",
	} {
		clientEnd, proxyClient := net.Pipe()
		proxyServer, serverEnd := net.Pipe()
		sess := &starttls.Session{Protocol: starttls.IMAP, Conn: proxyClient, TLS: true, Implicit: true}
		type out struct {
			c, s net.Conn
			err  error
		}
		done := make(chan out, 1)
		go func() {
			c, s, err := starttls.Handover(context.Background(), sess, starttls.Backend{Conn: proxyServer, Greeting: []byte(greeting), Upgraded: true})
			done <- out{c, s, err}
		}()
		clientEnd.SetDeadline(time.Now().Add(ioWait))
		serverEnd.SetDeadline(time.Now().Add(ioWait))
		cr := bufio.NewReader(clientEnd)
		replayed, err := cr.ReadString('\n')
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(replayed, "* OK"), replayed)
		assert.NotContains(t, replayed, "[", "a pre-TLS response code was replayed: %q", replayed)
		io.WriteString(clientEnd, "a NOOP\r\n")
		o := <-done
		require.NoError(t, o.err)
		// The NOOP is not a capability command: Handover leaves it for the
		// copy, and the returned client conn yields it first.
		got, err := bufio.NewReader(o.c).ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "a NOOP\r\n", got)
		o.c.Close()
		o.s.Close()
		clientEnd.Close()
		serverEnd.Close()
	}
}

// testDialerGreetings: backend.Dialer refuses what it reads as a greeting.
func testDialerGreetings(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct {
		proto    starttls.Protocol
		greeting string
		code     int
		want     error
	}{
		{starttls.SMTP, "421 4.3.2 busy\r\n", 421, backend.ErrRefused},
		{starttls.SMTP, "554 5.3.2 no\r\n", 554, backend.ErrRefused},
		{starttls.SMTP, "221 bye\r\n", 0, nil},
		{starttls.SMTP, "HTTP/1.1 400 Bad Request\r\n", 0, backend.ErrProtocol},
		{starttls.IMAP, "* BYE no\r\n", 0, backend.ErrRefused},
		{starttls.IMAP, "* PREAUTH hi\r\n", 0, backend.ErrProtocol},
		{starttls.IMAP, "a1 OK hi\r\n", 0, backend.ErrProtocol},
		{starttls.POP3, "-ERR no\r\n", 0, backend.ErrRefused},
	} {
		f := newFake(t, script{Greeting: tc.greeting}.Serve)
		d := &backend.Dialer{Addr: f.Addr(), Protocol: tc.proto, HandshakeTimeout: ioWait}
		conn, err := d.Dial(context.Background(), backend.ClientInfo{})
		if conn != nil {
			conn.Close()
		}
		require.Error(t, err, "%s %q accepted", tc.proto, tc.greeting)
		var ge *backend.GreetingError
		if assert.ErrorAs(t, err, &ge, tc.greeting) && tc.code != 0 {
			assert.Equal(t, tc.code, ge.Code)
		}
		if tc.want != nil {
			assert.ErrorIs(t, err, tc.want, tc.greeting)
		}
	}
}
