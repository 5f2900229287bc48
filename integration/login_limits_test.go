//go:build unix

package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// TestLoginBackendRefusalCountsAsFailedLogin: auth's package doc says
// failed logins are "delayed (growing with each failure), limited per
// session, and counted per source and per user", and Server.MaxAttempts
// closes a session after that many refused logins. A login the
// Authenticator allows and the backend refuses is, to the client, a
// refused login like any other ([AUTHENTICATIONFAILED], 535 5.7.8): with
// an Authenticator that only routes (the backend checks the password, as
// a Dovecot or Postfix behind the proxy does), it is the only kind there
// is, and a client that may retry without limit can guess passwords on one
// connection. With MaxAttempts 1, one refusal must end the session, as it
// does when the Authenticator refuses (the control).
//
// This test fails against auth as of this commit: Server.try counts only
// the Authenticator's refusals (dialogue.failures in refused), not a
// backend's (the upstreamRefusal branch after connect): no failure delay,
// no MaxAttempts, no Limiter.LoginFailed, and LoginError.Failures is 0.
func TestLoginBackendRefusalCountsAsFailedLogin(t *testing.T) {
	e := need(t)
	maxOne := func(p *mailedge.Proxy) { p.Login.MaxAttempts = 1 }
	route := func(be auth.Backend) auth.Authenticator {
		return auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
			return &auth.Result{OK: true, Backend: be}, nil
		})
	}
	refuse := auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
		return &auth.Result{}, nil
	})
	imapBE := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", e.dovecot.IMAPProxy), Protocol: starttls.IMAP, Proxy: backend.ProxyV2}
	smtpBE := &backend.Dialer{Addr: fmt.Sprintf("127.0.0.1:%d", e.postfix.Plain), Protocol: starttls.SMTP, XCLIENT: true}

	for _, tt := range []struct {
		name  string
		authn auth.Authenticator
		src   string
	}{
		{"control: refused by the Authenticator", refuse, "127.0.0.110"},
		{"refused by Dovecot", route(imapBE), "127.0.0.111"},
	} {
		t.Run("IMAP "+tt.name, func(t *testing.T) {
			ed := startEdge(t, e, starttls.IMAP, true, tt.authn, maxOne)
			w := dialWire(t, ed.addr, edgeName, tt.src)
			require.True(t, strings.HasPrefix(w.line(), "* OK"))
			w.send("a LOGIN " + user + " wrong-" + pass)
			require.Equal(t, "a NO [AUTHENTICATIONFAILED] Authentication failed.", last(w.until("a ")))
			// The session must be over: a NOOP gets no answer but the BYE.
			w.send("b NOOP")
			next := lineOrEnd(w)
			assert.Equal(t, "* BYE Too many failed logins", next, "after MaxAttempts (1) refused logins the edge must close the session")
			w.close()
			in := ed.session(t, tt.src)
			assert.Equal(t, mailedge.OutcomeAuthFailed, in.Outcome, "%v", in)
		})
	}

	for _, tt := range []struct {
		name  string
		authn auth.Authenticator
		src   string
	}{
		{"control: refused by the Authenticator", refuse, "127.0.0.112"},
		{"refused by Postfix", route(smtpBE), "127.0.0.113"},
	} {
		t.Run("SMTP "+tt.name, func(t *testing.T) {
			ed := startEdge(t, e, starttls.SMTP, true, tt.authn, maxOne)
			w := dialWire(t, ed.addr, edgeName, tt.src)
			require.True(t, strings.HasPrefix(w.line(), "220"))
			w.ehlo("client.example")
			w.expect("AUTH PLAIN "+b64("\x00"+user+"\x00wrong-"+pass), "535 5.7.8")
			w.send("NOOP")
			next := lineOrEnd(w)
			assert.Equal(t, "421 4.7.0 mail.example.com Too many failed logins", next, "after MaxAttempts (1) refused logins the edge must close the session")
			w.close()
			in := ed.session(t, tt.src)
			assert.Equal(t, mailedge.OutcomeAuthFailed, in.Outcome, "%v", in)
		})
	}
}

// lineOrEnd returns the next line from w, or "(closed)" if the connection
// ended, or "(nothing)" if nothing came within 3 seconds.
func lineOrEnd(w *wire) string {
	w.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer w.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := w.r.ReadString('\n')
	switch {
	case err == nil:
		return strings.TrimRight(l, "\r\n")
	case strings.Contains(err.Error(), "timeout"):
		return "(nothing)"
	}
	return "(closed)"
}
