package backend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/mailedge/mailedge/internal/nbconn"
	"github.com/mailedge/mailedge/starttls"
)

// Errors callers branch on. Dial errors wrap one of these, a
// *GreetingError, a net.Error (refused, timeout) or the context's error.
var (
	// ErrNoBackend reports a Pool with no member to try: all down or
	// draining, or every one tried failed.
	ErrNoBackend = errors.New("backend: no healthy backend")
	// ErrRefused reports a backend that refused the session: a 4xx/5xx SMTP
	// greeting, an IMAP "* BYE", a POP3 "-ERR".
	ErrRefused = errors.New("backend: refused by backend")
	// ErrProtocol reports a backend answer that breaks the protocol, or an
	// IMAP "* PREAUTH" greeting (fail closed: the client never logged in).
	ErrProtocol = errors.New("backend: protocol error")
	// ErrLineTooLong reports a backend line over MaxLineLength. It is the
	// same value as starttls.ErrLineTooLong: every mail line in mailedge is
	// read by one function.
	ErrLineTooLong = mailwire.ErrLineTooLong
	// ErrIdentity reports that the client identity could not be passed on:
	// XCLIENT not advertised or answered with something other than 220, an
	// IMAP ID answered NO or BAD, or a value that cannot be sent safely.
	ErrIdentity = errors.New("backend: client identity not accepted")
	// ErrConfig reports an invalid Dialer or Pool configuration.
	ErrConfig = errors.New("backend: invalid configuration")
)

// ClientInfo describes the client a backend connection is made for, so the
// Dialer can pass its identity on (PROXY header, XCLIENT, IMAP ID).
type ClientInfo struct {
	// Src is the client's address. If nil (or not an IP address), the
	// source is unknown: PROXY v1 sends "UNKNOWN", v2 the LOCAL command,
	// XCLIENT "[UNAVAILABLE]", IMAP ID leaves the field out.
	Src net.Addr
	// Dst is the address the client connected to. If nil, PROXY sends the
	// unspecified address of Src's family with port 0.
	Dst net.Addr
	// TLS is the client side's TLS state, if the client uses TLS. PROXY v2
	// turns it into PP2_TYPE_SSL (version, cipher, certificate CN) and
	// PP2_TYPE_ALPN.
	TLS *tls.ConnectionState
	// ServerName is the name the client asked for (SNI). If empty, TLS's
	// ServerName is used. PROXY v2 sends it as PP2_TYPE_AUTHORITY.
	ServerName string
	// Helo is the client's EHLO/HELO argument, for XCLIENT HELO=. If empty,
	// "[UNAVAILABLE]".
	Helo string
	// HeloVerb is "EHLO" or "HELO" as the client used it, for XCLIENT
	// PROTO=ESMTP or SMTP. If empty, PROTO=[UNAVAILABLE].
	HeloVerb string
}

// Dialer connects to one backend server. Its zero value plus Addr dials a
// plain SMTP backend. A Dialer is safe for concurrent use; do not change
// its fields while it is in use.
type Dialer struct {
	// Addr is the backend's host:port.
	Addr string
	// Protocol is the protocol the backend speaks. If zero, SMTP.
	Protocol starttls.Protocol
	// Security is how the connection is protected: starttls.Plain (TLS
	// offload), TLS or STARTTLS (SSL bridging). If zero, Plain.
	Security starttls.Security
	// TLSConfig configures TLS and STARTTLS. If nil, the system roots are
	// used. If its ServerName is empty, the host part of Addr is used, so
	// the certificate is always verified unless InsecureSkipVerify is set.
	// If its MinVersion is zero, TLS 1.2.
	TLSConfig *tls.Config
	// Proxy selects the PROXY header written first, once, before TLS. If
	// zero, none.
	Proxy ProxyProtocol
	// XCLIENT sends Postfix's XCLIENT (ADDR, PORT, DESTADDR, DESTPORT,
	// HELO, PROTO, as far as the backend advertises them) after the
	// greeting, and the 220 answer becomes the Conn's Greeting. SMTP only.
	// A backend that does not advertise XCLIENT fails the Dial with
	// ErrIdentity unless IdentityBestEffort is set: an operator who asks
	// for the client's address to reach the backend should learn at once
	// when it does not (the backend would otherwise log and rate-limit the
	// proxy's address).
	XCLIENT bool
	// IMAPID sends Dovecot's ID ("x-originating-ip" ... "x-originating-port"
	// ... "x-connected-ip" ... "x-connected-port" ...) after the greeting
	// and reads its answer. IMAP only. The ID capability is checked first,
	// in the greeting's [CAPABILITY] code or with a CAPABILITY command (always
	// the command after STARTTLS). A backend without ID, or a NO or BAD
	// answer, fails the Dial with ErrIdentity unless IdentityBestEffort is
	// set. Dovecot honours the fields only from login_trusted_networks.
	IMAPID bool
	// IdentityBestEffort makes a backend that does not take XCLIENT or ID
	// usable anyway, without the client's identity. If false, it is an
	// error.
	IdentityBestEffort bool
	// Hostname is the name given in EHLO. If empty, "localhost".
	Hostname string
	// ConnectTimeout bounds the TCP connect. If zero, 10 seconds.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds everything after the connect: PROXY header,
	// TLS handshake, greeting, STARTTLS, XCLIENT or ID. If zero, 15
	// seconds. The context's deadline applies too; the earlier one wins.
	HandshakeTimeout time.Duration
	// MaxLineLength bounds each line read from the backend, terminator
	// included. If zero, 4096.
	MaxLineLength int
	// Passthrough says the backend terminates the client's TLS itself (SNI
	// passthrough: the proxy forwards the client's ClientHello and every
	// byte after it unread): Dial connects and writes the PROXY header,
	// reads no greeting and does no TLS, and the Conn has no Greeting.
	// Security must be Plain, and XCLIENT and IMAPID unset: the mail
	// dialogue is inside the client's TLS. The health probe of such a
	// member is a TLS handshake or a TCP connect.
	Passthrough bool
}

func (d *Dialer) connectTimeout() time.Duration {
	if d.ConnectTimeout > 0 {
		return d.ConnectTimeout
	}
	return 10 * time.Second
}

func (d *Dialer) handshakeTimeout() time.Duration {
	if d.HandshakeTimeout > 0 {
		return d.HandshakeTimeout
	}
	return 15 * time.Second
}

func (d *Dialer) maxLineLength() int {
	if d.MaxLineLength > 0 {
		return d.MaxLineLength
	}
	return 4096
}

func (d *Dialer) hostname() string {
	if d.Hostname != "" {
		return d.Hostname
	}
	return "localhost"
}

// tlsConfig returns a copy of TLSConfig with the defaults applied.
func (d *Dialer) tlsConfig() *tls.Config {
	cfg := &tls.Config{}
	if d.TLSConfig != nil {
		cfg = d.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(d.Addr); err == nil {
			cfg.ServerName = host
		}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// validate reports a configuration Dial cannot work with.
func (d *Dialer) validate() error {
	switch {
	case d.Addr == "":
		return fmt.Errorf("%w: empty Addr", ErrConfig)
	case d.Protocol < starttls.SMTP || d.Protocol > starttls.POP3:
		return fmt.Errorf("%w: unknown protocol %d", ErrConfig, int(d.Protocol))
	case d.Security < starttls.Plain || d.Security > starttls.STARTTLS:
		return fmt.Errorf("%w: unknown security %d", ErrConfig, int(d.Security))
	case d.Proxy < NoProxy || d.Proxy > ProxyV2:
		return fmt.Errorf("%w: unknown PROXY version %d", ErrConfig, int(d.Proxy))
	case d.XCLIENT && d.Protocol != starttls.SMTP:
		return fmt.Errorf("%w: XCLIENT needs SMTP, not %v", ErrConfig, d.Protocol)
	case d.IMAPID && d.Protocol != starttls.IMAP:
		return fmt.Errorf("%w: IMAPID needs IMAP, not %v", ErrConfig, d.Protocol)
	case d.Passthrough && (d.Security != starttls.Plain || d.XCLIENT || d.IMAPID):
		return fmt.Errorf("%w: Passthrough forwards the client's TLS: no Security, XCLIENT or IMAPID", ErrConfig)
	}
	return nil
}

// Dial connects to the backend, writes the PROXY header, does TLS or
// STARTTLS, reads and checks the greeting, sends XCLIENT or ID, and returns
// the connection with no deadline set. With Passthrough it stops after the
// PROXY header. The caller owns the Conn and must
// Close it.
//
// The connect is bounded by ConnectTimeout and the whole exchange after it
// by HandshakeTimeout, each cut short by ctx's deadline or cancellation.
// A backend that accepts and never greets thus fails after
// HandshakeTimeout (or ctx's deadline, if earlier).
func (d *Dialer) Dial(ctx context.Context, ci ClientInfo) (*Conn, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	nd := net.Dialer{Timeout: d.connectTimeout()}
	raw, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("backend: %s: %w", d.Addr, err)
	}
	if d.Passthrough && d.Proxy == NoProxy {
		// Nothing to say before the client's bytes: no deadline or
		// cancellation to arm for an exchange that does not happen.
		return &Conn{Conn: raw, Member: d.Addr}, nil
	}
	c, err := d.handshake(ctx, raw, ci)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("backend: %s: %w", d.Addr, err)
	}
	return c, nil
}

// handshake runs converse under the handshake deadline and ctx, and clears
// the deadline afterwards. raw is a connection only this call has seen, so
// there is no caller deadline to preserve.
func (d *Dialer) handshake(ctx context.Context, raw net.Conn, ci ClientInfo) (*Conn, error) {
	deadline := time.Now().Add(d.handshakeTimeout())
	ctxDeadline := false
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline, ctxDeadline = dl, true
	}
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// Cancellation without a deadline: unblock the I/O at once.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	c, err := d.converse(ctx, raw, ci, deadline)
	if !stop() {
		// The AfterFunc ran or runs: its deadline may land after any reset.
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, err
	}
	if err != nil {
		if ctxDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			// The caller's deadline, not ours: say so, so a Pool stops.
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// converse does everything between the TCP connect and the handover.
func (d *Dialer) converse(ctx context.Context, raw net.Conn, ci ClientInfo, deadline time.Time) (*Conn, error) {
	if d.Proxy != NoProxy {
		h, err := proxyHeader(d.Proxy, ci)
		if err != nil {
			return nil, fmt.Errorf("PROXY header: %w", err)
		}
		if _, err := h.WriteTo(raw); err != nil {
			return nil, fmt.Errorf("PROXY header: %w", err)
		}
	}
	c := &Conn{Conn: raw, Member: d.Addr}
	switch d.Proxy {
	case ProxyV1:
		c.Identity = append(c.Identity, "proxy-v1")
	case ProxyV2:
		c.Identity = append(c.Identity, "proxy-v2")
	}
	if d.Passthrough {
		return c, nil // the client's TLS and the greeting inside it are the backend's and the client's
	}
	switch d.Security {
	case starttls.TLS:
		tc := tls.Client(nbconn.Wrap(raw), d.tlsConfig()) // so the bridge can park an idle session
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c.Conn = tc
	case starttls.STARTTLS:
		if err := d.startTLS(ctx, c, deadline); err != nil {
			return nil, err
		}
	}
	br := bufpool.Get(c.Conn, bufpool.Small)
	defer bufpool.Put(br)
	if !c.Upgraded {
		g, err := readGreeting(br, d.Protocol, d.maxLineLength())
		if err != nil {
			return nil, err
		}
		c.Greeting = g
	}
	if err := d.identify(br, c, ci); err != nil {
		return nil, err
	}
	if n := br.Buffered(); n > 0 {
		buf, _ := br.Peek(n)
		c.pending.Set(bytes.Clone(buf)) // br goes back to the pool
	}
	return c, nil
}

// identify sends XCLIENT or ID as configured.
func (d *Dialer) identify(br *bufio.Reader, c *Conn, ci ClientInfo) error {
	switch {
	case d.XCLIENT:
		g, err := xclient(br, c.Conn, d.hostname(), ci, d.maxLineLength(), d.IdentityBestEffort)
		if err != nil {
			return err
		}
		if g != nil {
			c.Greeting = g
			c.Identity = append(c.Identity, "xclient")
		}
	case d.IMAPID:
		g := c.Greeting
		if c.Upgraded {
			g = nil // pre-TLS capabilities are not to be trusted: ask again
		}
		sent, err := imapID(br, c.Conn, g, ci, d.maxLineLength(), d.IdentityBestEffort)
		if sent {
			c.Identity = append(c.Identity, "id")
		}
		return err
	}
	return nil
}
