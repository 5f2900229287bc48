package starttls

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// Protocol names the mail protocol spoken on a connection.
type Protocol int

const (
	// SMTP is RFC 5321 with STARTTLS from RFC 3207 (ports 25, 587; 465 implicit).
	SMTP Protocol = iota
	// IMAP is RFC 9051/3501 with STARTTLS (port 143; 993 implicit).
	IMAP
	// POP3 is RFC 1939 with STLS from RFC 2595 (port 110; 995 implicit).
	POP3
)

// String returns "smtp", "imap" or "pop3", the ALPN identifiers.
func (p Protocol) String() string {
	switch p {
	case SMTP:
		return "smtp"
	case IMAP:
		return "imap"
	case POP3:
		return "pop3"
	}
	return "unknown"
}

// Security is how a connection to a mail server gets TLS: a backend leg
// (backend.Dialer) or a health probe (package monitor). The zero value is
// Plain.
type Security int

const (
	// Plain is clear text (ports 25, 143, 110). For a backend leg it is TLS
	// offload: TLS ends at the proxy.
	Plain Security = iota
	// TLS is implicit TLS from the first byte (ports 465, 993, 995). For a
	// backend leg it is SSL bridging.
	TLS
	// STARTTLS is a clear-text greeting, the protocol's upgrade command
	// (STARTTLS, or STLS for POP3) and then the handshake (ports 25, 587,
	// 143, 110): bridging to a server that only offers STARTTLS.
	STARTTLS
)

// String returns "plain", "tls" or "starttls".
func (s Security) String() string {
	switch s {
	case Plain:
		return "plain"
	case TLS:
		return "tls"
	case STARTTLS:
		return "starttls"
	}
	return "unknown"
}

// Mode is the STARTTLS activation mode of a listener, as BIG-IP's SMTPS
// profile names them. The zero value is Require, the safe default.
type Mode int

const (
	// Require offers STARTTLS and refuses everything but the few commands
	// allowed before TLS (EHLO/HELO/NOOP/RSET/QUIT/HELP, CAPABILITY/NOOP/LOGOUT,
	// CAPA/NOOP/QUIT) until the client has switched to TLS.
	Require Mode = iota
	// Allow offers STARTTLS but lets a client that declines continue in plain
	// text; the session is then handed to a backend unencrypted.
	Allow
	// Disallow never offers STARTTLS and refuses it; sessions stay plain.
	Disallow
)

// String returns "require", "allow" or "disallow".
func (m Mode) String() string {
	switch m {
	case Require:
		return "require"
	case Allow:
		return "allow"
	case Disallow:
		return "disallow"
	}
	return "unknown"
}

// Errors callers branch on.
var (
	// ErrInjection reports bytes sent after a STARTTLS/STLS command (by a
	// client) or after the go-ahead answer (by a backend) and before the TLS
	// handshake: the CVE-2011-0411 class. The connection must be closed.
	ErrInjection = errors.New("starttls: data sent before the TLS handshake")
	// ErrNoStartTLS reports a backend that does not advertise STARTTLS/STLS.
	ErrNoStartTLS = errors.New("starttls: backend does not offer STARTTLS")
	// ErrRefused reports a peer that refused STARTTLS or greeted with a refusal.
	ErrRefused = errors.New("starttls: refused by peer")
	// ErrTooManyErrors reports a client closed after too many bad commands.
	ErrTooManyErrors = errors.New("starttls: too many errors")
	// ErrLineTooLong reports a line over the configured limit. It is the
	// same value as backend.ErrLineTooLong: every mail line in mailedge is
	// read by one function.
	ErrLineTooLong = mailwire.ErrLineTooLong
	// ErrClientQuit reports a client that ended the dialogue with QUIT/LOGOUT
	// before reaching a backend; it is not a failure.
	ErrClientQuit = errors.New("starttls: client quit")
	// ErrForeignProtocol is returned by Serve when the client speaks
	// another protocol before TLS: an HTTP request line (a browser made to
	// talk to a mail port, the ALPACA attacks' application layer) or a TLS
	// ClientHello on a STARTTLS port. The connection is closed at once and
	// nothing of the line is answered or echoed, as Postfix does for
	// smtpd_forbidden_commands.
	// It is the same value as bridge.ErrForeignProtocol.
	ErrForeignProtocol = mailwire.ErrForeignProtocol
)

// Session is what a client-side dialogue hands to the next stage: the
// connection in its current state and what was learnt on it.
type Session struct {
	// Protocol is the protocol spoken.
	Protocol Protocol
	// Conn is the client connection: a *tls.Conn once TLS is on, the raw
	// conn when the client declined STARTTLS in Allow mode or Mode is Disallow.
	// The session owns it until handed over.
	Conn net.Conn
	// TLS reports whether TLS is established on Conn.
	TLS bool
	// Implicit reports TLS from the first byte (993/465/995): the client has
	// not been greeted yet.
	Implicit bool
	// State is the negotiated TLS state; valid when TLS is true.
	State tls.ConnectionState
	// ServerName is the SNI name the client asked for, or "".
	ServerName string
	// Helo is the EHLO/HELO argument the client gave (SMTP). After STARTTLS
	// it is the pre-TLS name and must not be trusted; it is kept so that a
	// plain Allow-mode session can be replayed to the backend.
	Helo string
	// HeloVerb is "EHLO" or "HELO" as the client used it, or "".
	HeloVerb string
	// Pending holds bytes already read from the client and not yet answered
	// (the first command of a plain session in Allow mode and anything
	// pipelined after it). The handover forwards them to the backend first,
	// in order.
	Pending []byte
}
