package mailtest

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"
)

// HostileKind is a way for a mail server to misbehave toward its client:
// the cases of the adversarial suite (internal/adversarial) that a gateway
// must survive from a backend.
type HostileKind int

const (
	// StartTLSInjection answers STARTTLS (STLS) with the go-ahead and, in
	// the same write, more plain-text response lines, which a client that
	// keeps its read buffer across the upgrade takes as answers from
	// inside TLS (CVE-2021-38371, the USENIX 2021 STARTTLS study's
	// response injection). If the client goes on, the handshake is
	// completed with a valid certificate, so that the injection is the
	// only fault.
	StartTLSInjection HostileKind = iota + 1
	// PreAuth greets an IMAP client with "* PREAUTH", skipping the
	// not-authenticated state in which STARTTLS is allowed (RFC 9051
	// §7.1.4, the USENIX 2021 study's PREAUTH downgrade). IMAP only.
	PreAuth
	// LongLines greets with a single line of HostileOptions.LineLength
	// octets before its CRLF.
	LongLines
	// Mute accepts the connection and never writes a byte; it reads and
	// discards until the client closes or the test ends.
	Mute
	// Slow serves the ordinary dialogue one byte per write, waiting
	// HostileOptions.Delay before each byte.
	Slow
	// ResetMidMessage serves the ordinary dialogue and resets the
	// connection (TCP RST) halfway through a message: while receiving
	// SMTP DATA, or while sending a POP3 RETR or an IMAP FETCH BODY[]
	// answer.
	ResetMidMessage
	// WrongCertificate serves TLS (after STARTTLS, or at once with
	// HostileOptions.ImplicitTLS) with a certificate signed by the CA for
	// HostileOptions.WrongName instead of the server's name.
	WrongCertificate
)

// String returns the kind's name, such as "StartTLSInjection".
func (k HostileKind) String() string {
	names := map[HostileKind]string{StartTLSInjection: "StartTLSInjection", PreAuth: "PreAuth",
		LongLines: "LongLines", Mute: "Mute", Slow: "Slow", ResetMidMessage: "ResetMidMessage",
		WrongCertificate: "WrongCertificate"}
	if n, ok := names[k]; ok {
		return n
	}
	return fmt.Sprintf("HostileKind(%d)", int(k))
}

// HostileOptions configure a hostile server. Kind is required; the other
// fields have defaults.
type HostileOptions struct {
	// Kind is the misbehaviour.
	Kind HostileKind
	// Protocol is the dialogue spoken around it. If zero, IMAP.
	// Submission and MX both speak SMTP.
	Protocol Protocol
	// CA signs the server's certificates. If nil, a new one
	// (Hostile.CA).
	CA *CA
	// Names are the names in the server's valid certificate. If nil,
	// mail.example.com, localhost and 127.0.0.1.
	Names []string
	// WrongName is the only name in WrongCertificate's certificate. If
	// empty, wrong.example.invalid.
	WrongName string
	// ImplicitTLS makes WrongCertificate handshake at once instead of
	// after STARTTLS. Other kinds speak plain text first.
	ImplicitTLS bool
	// LineLength is the length of LongLines's greeting line, CRLF not
	// counted. If zero, 65536.
	LineLength int
	// Delay is Slow's pause before each byte. If zero, 20ms.
	Delay time.Duration
}

func (o HostileOptions) lineLength() int {
	if o.LineLength > 0 {
		return o.LineLength
	}
	return 65536
}

func (o HostileOptions) delay() time.Duration {
	if o.Delay > 0 {
		return o.Delay
	}
	return 20 * time.Millisecond
}

func (o HostileOptions) wrongName() string {
	if o.WrongName != "" {
		return o.WrongName
	}
	return "wrong.example.invalid"
}

// Hostile is a misbehaving mail server on 127.0.0.1, started by
// NewHostile and stopped when the test ends.
type Hostile struct {
	*Fake
	// CA signed the server's certificates; ClientTLSConfig trusts it.
	CA *CA
	// ServerName is the first of HostileOptions.Names: the name a client
	// expects.
	ServerName string
	opt        HostileOptions
	good, bad  *tls.Config
	done       chan struct{} // closed when the test ends, to stop Slow's pauses
}

// NewHostile starts a hostile server of opt.Kind for the test tb. It fails
// tb on an unknown kind or on PreAuth for a protocol other than IMAP.
func NewHostile(tb testing.TB, opt HostileOptions) *Hostile {
	tb.Helper()
	if opt.Kind < StartTLSInjection || opt.Kind > WrongCertificate {
		tb.Fatalf("mailtest: unknown hostile kind %v", opt.Kind)
	}
	if opt.Kind == PreAuth && opt.Protocol != IMAP {
		tb.Fatalf("mailtest: PreAuth is an IMAP greeting")
	}
	h := &Hostile{CA: opt.CA, opt: opt, done: make(chan struct{})}
	if h.CA == nil {
		h.CA = NewCA(tb)
	}
	names := opt.Names
	if names == nil {
		names = []string{"mail.example.com", "localhost"}
	}
	h.ServerName = names[0]
	ip := []net.IP{net.IPv4(127, 0, 0, 1)}
	good := h.CA.MustIssue(tb, CertOptions{IPs: ip}, names...)
	bad := h.CA.MustIssue(tb, CertOptions{}, opt.wrongName())
	h.good = &tls.Config{Certificates: []tls.Certificate{good.TLS}}
	h.bad = &tls.Config{Certificates: []tls.Certificate{bad.TLS}}
	h.Fake = NewFake(tb, h.serve)
	// Registered after the Fake's cleanup, so it runs first.
	tb.Cleanup(func() { close(h.done) })
	return h
}

// ClientTLSConfig returns a client configuration that trusts Hostile.CA
// and expects ServerName: the configuration a correct client uses.
func (h *Hostile) ClientTLSConfig() *tls.Config { return h.CA.ClientConfig(h.ServerName) }

// serve runs one connection; the Fake closes it afterwards.
func (h *Hostile) serve(c net.Conn) {
	hc := newHostileConn(c, h)
	hc.run()
}
