package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// The mechanisms a Request reports. IMAP LOGIN and POP3 USER/PASS report
// PLAIN, as nginx's auth_http does: the password reached the proxy in the
// clear either way.
const (
	// Plain is SASL PLAIN (RFC 4616), IMAP LOGIN or POP3 USER/PASS.
	Plain = "PLAIN"
	// Login is the SASL LOGIN mechanism (draft-murchison-sasl-login),
	// which Outlook and Exchange use.
	Login = "LOGIN"
	// External is SASL EXTERNAL (RFC 4422 appendix A): the identity is
	// the verified TLS client certificate.
	External = "EXTERNAL"
	// None is an SMTP session without AUTH (port 25), decided at its
	// first RCPT TO: User and Password are empty, MailFrom and RcptTo set.
	None = "NONE"
)

// Secret is a credential. It prints as "[redacted]" through fmt, log/slog
// and encoding/json, so that a Request or Result logged whole shows no
// password; convert it with string(s) where the value is needed.
type Secret string

// String returns "[redacted]", or "" for an empty Secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString returns the same as String, for %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue hides the value from log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the value from encoding/json and other encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Request is one login for an Authenticator to decide.
type Request struct {
	// Protocol is the client's protocol.
	Protocol starttls.Protocol
	// Mechanism is Plain, Login, External or None.
	Mechanism string
	// User is the user name the client gave (for External, the identity
	// it asked for, or the certificate's subject common name if it gave
	// none).
	User string
	// Password is the password the client gave; empty for External and
	// None. It never appears in a log line or an error of this package.
	Password Secret
	// AuthzID is the SASL authorization identity, when the client gave one
	// that differs from User (SASL PLAIN, EXTERNAL).
	AuthzID string
	// Attempt counts the logins of this session: 1 for the first.
	Attempt int
	// Client and Local are the addresses of the client connection: the
	// PROXY header's when the listener trusts one.
	Client, Local net.Addr
	// TLS is the client connection's TLS state, nil for a plain session.
	TLS *tls.ConnectionState
	// ServerName is the SNI name the client asked for, or "".
	ServerName string
	// ClientCert is the client's verified certificate (the first of its
	// verified chain), or nil.
	ClientCert *x509.Certificate
	// Helo, MailFrom and RcptTo are the SMTP client's EHLO/HELO name, MAIL
	// FROM and first RCPT TO addresses (without angle brackets) as far as
	// the session has given them; MailFrom and RcptTo only for None.
	Helo, MailFrom, RcptTo string
}

// LogValue is the request as a log group: everything but the password.
func (r *Request) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("protocol", r.Protocol.String()),
		slog.String("mechanism", r.Mechanism),
		slog.String("user", r.User),
		slog.Int("attempt", r.Attempt),
		slog.Any("client", r.Client),
	)
}

// Backend is where an allowed session goes: a *backend.Dialer, a
// *backend.Pool or anything that dials like them (mailedge.Backend).
type Backend interface {
	Dial(ctx context.Context, ci backend.ClientInfo) (*backend.Conn, error)
}

// Result is an Authenticator's decision. The zero Result refuses the login
// with the protocol's usual words.
type Result struct {
	// OK allows the login.
	OK bool
	// Message is the text the client sees with a refusal, in place of the
	// protocol's usual words ("Authentication failed"). Control characters
	// are removed before it is sent.
	Message string
	// Temporary makes a refusal temporary: SMTP 454 4.7.0, IMAP
	// [UNAVAILABLE], POP3 [SYS/TEMP]. A permanent refusal (the default) is
	// SMTP 535 5.7.8, IMAP [AUTHENTICATIONFAILED], POP3 [AUTH]. A temporary
	// refusal does not count as a failed login.
	Temporary bool
	// SMTPCode replaces the SMTP reply code and enhanced status code of a
	// refusal, as "535 5.7.8" or "454" (nginx's Auth-Error-Code). It is
	// used only when it is a valid 4xx or 5xx code.
	SMTPCode string
	// Wait delays the answer to the client by this much (nginx's
	// Auth-Wait): before a refusal, after the failed-login delay.
	Wait time.Duration
	// Close ends the session after a refusal instead of letting the client
	// try again.
	Close bool

	// Backend is where an allowed session goes. If nil, the backend named
	// by Pool, or the listener's own.
	Backend Backend
	// Pool names a backend the listener knows (mailedge.Proxy.Pools). It is
	// used when Backend is nil.
	Pool string

	// User and Password, when not empty, replace the client's credentials
	// for the login at the backend (nginx's Auth-User and Auth-Pass): a
	// rewritten user name, a token, or a Dovecot master user's password.
	User     string
	Password Secret
	// AuthzID, when not empty, logs in at the backend with SASL PLAIN as
	// this authorization identity: with a master user's credentials in
	// User and Password, the mailbox to open (Dovecot master users).
	AuthzID string
	// NoLogin sends no credentials to the backend, which trusts the proxy:
	// on SMTP the login is XCLIENT LOGIN= (the backend must offer it, as
	// Postfix does to smtpd_authorized_xclient_hosts). IMAP and POP3 have
	// no standard way to carry a login without credentials; NoLogin there
	// is refused with a temporary error.
	NoLogin bool
}

// Authenticator decides logins. Authenticate is called once per login
// attempt, concurrently for different sessions, within ctx (the session's,
// bounded by Server.AuthTimeout). An error means no decision could be
// made (the service is down): the client gets a temporary refusal and the
// error goes to Server.OnError; it is not a failed login.
type Authenticator interface {
	Authenticate(ctx context.Context, req *Request) (*Result, error)
}

// AuthenticatorFunc adapts a function to the Authenticator interface.
type AuthenticatorFunc func(ctx context.Context, req *Request) (*Result, error)

// Authenticate calls f(ctx, req).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req *Request) (*Result, error) {
	return f(ctx, req)
}

// Errors of a login session.
var (
	// ErrTooManyFailures ends a session after Server.MaxAttempts failed
	// logins, or one whose source or user is locked out.
	ErrTooManyFailures = errors.New("auth: too many failed logins")
	// ErrAuthService reports an Authenticator that returned an error.
	ErrAuthService = errors.New("auth: authentication service failed")
	// ErrBackendLogin reports a backend that refused or broke the login.
	ErrBackendLogin = errors.New("auth: backend login failed")
	// ErrProtocol reports a client that broke the protocol (for example
	// bytes after a command that waits for a continuation).
	ErrProtocol = errors.New("auth: protocol error")
)
