package monitor

import (
	"context"
	"errors"
	"time"
)

// DefaultTimeout bounds a probe whose context carries no deadline.
const DefaultTimeout = 2 * time.Second

// Result is the outcome of one probe.
type Result struct {
	// OK is true when the backend passed every step of the probe.
	OK bool
	// Latency is the time from the start of the probe to its end.
	Latency time.Duration
	// Err says why the probe failed; nil when OK. It is an [*Error] whose
	// Kind is one of the ErrX sentinels, so errors.Is(Err, ErrNoGreeting)
	// works, and whose text is a precise, human-readable reason.
	Err error
	// Detail is a short note on a success, such as the TLS version and the
	// days left on the certificate ("TLS1.3, certificate expires in 89 days").
	Detail string
	// Expires is the earliest NotAfter in the verified certificate chain, or
	// zero when the probe used no TLS.
	Expires time.Time
	// At is when the probe started.
	At time.Time
}

// Probe checks one backend address. Probe must return by the time ctx ends
// and must not keep the connection it opens.
type Probe interface {
	Probe(ctx context.Context, addr string) Result
}

// ProbeFunc adapts a function to the [Probe] interface.
type ProbeFunc func(ctx context.Context, addr string) Result

// Probe calls f(ctx, addr).
func (f ProbeFunc) Probe(ctx context.Context, addr string) Result { return f(ctx, addr) }

// The kinds of probe failure. A failed [Result] carries an [*Error] whose
// Kind is one of these, so callers can branch with errors.Is.
var (
	// ErrConnect: the TCP connection could not be made (refused, unreachable,
	// timeout).
	ErrConnect = errors.New("monitor: connect failed")
	// ErrNoGreeting: the server accepted but sent no greeting in time, or
	// closed the connection first.
	ErrNoGreeting = errors.New("monitor: no greeting")
	// ErrGreeting: the greeting was a refusal (421, 554, * BYE, -ERR), an
	// unexpected * PREAUTH, or not the protocol at all.
	ErrGreeting = errors.New("monitor: unexpected greeting")
	// ErrHello: the SMTP server refused EHLO (and HELO).
	ErrHello = errors.New("monitor: EHLO refused")
	// ErrStartTLS: STARTTLS (STLS) was not offered or was refused.
	ErrStartTLS = errors.New("monitor: STARTTLS failed")
	// ErrTLS: the TLS handshake failed, including certificate verification
	// (wrong name, expired, unknown authority).
	ErrTLS = errors.New("monitor: TLS failed")
	// ErrCertExpiring: the certificate verified but expires within the
	// probe's threshold.
	ErrCertExpiring = errors.New("monitor: certificate expires soon")
	// ErrAuth: authentication (SMTP AUTH, IMAP LOGIN, POP3 USER/PASS) failed.
	ErrAuth = errors.New("monitor: authentication failed")
	// ErrMailbox: the mailbox check after login (IMAP LIST or EXAMINE, POP3
	// STAT) failed.
	ErrMailbox = errors.New("monitor: mailbox check failed")
	// ErrProtocol: the server broke the protocol after the greeting
	// (a malformed reply, a timeout, a dropped connection).
	ErrProtocol = errors.New("monitor: protocol error")
	// ErrNoProbe: a Checker has no Probe.
	ErrNoProbe = errors.New("monitor: no probe configured")
)

// Error is a probe failure: a kind to branch on and a precise reason.
type Error struct {
	// Kind is one of the ErrX sentinels of this package.
	Kind error
	// Reason is the human-readable account, for example
	// "no greeting within 2s" or "wrong greeting: 554 5.3.2 not now".
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error returns the reason.
func (e *Error) Error() string { return e.Reason }

// Unwrap returns the kind and the underlying error, so errors.Is and
// errors.As see both.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// fail builds a failure of kind whose reason is reason, followed by ": " and
// err's text when err is not nil.
func fail(kind error, err error, reason string) *Error {
	if err != nil {
		reason += ": " + err.Error()
	}
	return &Error{Kind: kind, Reason: reason, Err: err}
}
