package monitor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailedge/mailedge/starttls"
)

// IMAP probes an IMAP server (RFC 9051, RFC 3501) with go-imap v2's
// imapclient: greeting "* OK", optionally STARTTLS, CAPABILITY, and with
// credentials LOGIN followed by a LIST (or EXAMINE) of a mailbox, then
// LOGOUT: the "IMAP login and folder listing" that validates an IMAPS
// offload to Dovecot on a NetScaler.
type IMAP struct {
	// Security is starttls.Plain (port 143), TLS (993) or STARTTLS (143).
	// If zero, Plain.
	Security starttls.Security
	// TLSConfig is used for TLS and STARTTLS. If nil, TLS 1.2 or later
	// with the system roots and the host of the address as server name.
	TLSConfig *tls.Config
	// Username and Password, when Username is not empty, are sent with
	// LOGIN. If Username is empty the probe stops after CAPABILITY.
	Username, Password string
	// Mailbox is the mailbox checked after login. If empty, "INBOX".
	Mailbox string
	// Examine opens the mailbox read-only (EXAMINE) instead of listing it
	// (LIST), which also proves the mail store can be read. If false, LIST.
	Examine bool
	// Dial, if not nil, opens the probe's TCP connection instead of a
	// plain dial: for a member that accepts only a balancer's connections,
	// it can write a PROXY header (LOCAL) first. If nil, net.Dialer.
	Dial DialFunc
}

func (p IMAP) mailbox() string {
	if p.Mailbox == "" {
		return "INBOX"
	}
	return p.Mailbox
}

// Probe runs the IMAP dialogue against addr.
func (p IMAP) Probe(ctx context.Context, addr string) Result {
	s := begin(ctx)
	s.dialFn = p.Dial
	return s.end(p.run(s, addr))
}

func (p IMAP) run(s *session, addr string) *Error {
	c, e := p.open(s, addr)
	if e != nil {
		return e
	}
	// Close ends imapclient's reader goroutine and waits for it.
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		return imapFail(s, ErrProtocol, "CAPABILITY", err)
	}
	if p.Username != "" {
		if e := p.login(s, c, caps); e != nil {
			return e
		}
		if e := p.checkMailbox(s, c); e != nil {
			return e
		}
	}
	// The verdict is in; a server that fumbles LOGOUT is still serving.
	_ = c.Logout().Wait()
	return nil
}

// open connects, reads the greeting, does STARTTLS if asked, and returns an
// imapclient that gets the greeting replayed.
func (p IMAP) open(s *session, addr string) (*imapclient.Client, *Error) {
	br, greeting, e := s.greeted(addr, p.Security, p.TLSConfig, starttls.IMAP)
	if e != nil {
		return nil, e
	}
	r := io.MultiReader(strings.NewReader(greeting), br)
	if p.Security == starttls.STARTTLS {
		if e := s.imapStartTLS(br); e != nil {
			return nil, e
		}
		if e := s.handshake(s.tlsConfig(p.TLSConfig, addr, starttls.IMAP)); e != nil {
			return nil, e
		}
		// imapclient expects a greeting; give it one without the stale
		// pre-TLS capabilities (RFC 9051 §6.2.1: discard them).
		r = io.MultiReader(strings.NewReader("* OK TLS active\r\n"), s.conn)
	}
	return imapclient.New(replayConn{Conn: s.conn, r: r}, nil), nil
}

func (p IMAP) login(s *session, c *imapclient.Client, caps imap.CapSet) *Error {
	if caps.Has(imap.CapLoginDisabled) {
		return &Error{Kind: ErrAuth, Reason: "login failed: server advertises LOGINDISABLED (TLS required)"}
	}
	if err := c.Login(p.Username, p.Password).Wait(); err != nil {
		return imapFail(s, ErrAuth, "login", err)
	}
	return nil
}

func (p IMAP) checkMailbox(s *session, c *imapclient.Client) *Error {
	mbox := p.mailbox()
	if p.Examine {
		if _, err := c.Select(mbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return imapFail(s, ErrMailbox, "EXAMINE "+mbox, err)
		}
		return nil
	}
	list, err := c.List("", mbox, nil).Collect()
	if err != nil {
		return imapFail(s, ErrMailbox, "LIST "+mbox, err)
	}
	if len(list) == 0 {
		return &Error{Kind: ErrMailbox, Reason: fmt.Sprintf("LIST %s failed: no such mailbox", mbox)}
	}
	return nil
}

// imapFail describes a failed imapclient step: a tagged NO or BAD is quoted
// as the server sent it ("login failed: NO [AUTHENTICATIONFAILED] ...").
func imapFail(s *session, kind error, step string, err error) *Error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		t := string(ie.Type)
		if ie.Code != "" {
			t += " [" + string(ie.Code) + "]"
		}
		return &Error{Kind: kind, Reason: fmt.Sprintf("%s failed: %s %s", step, t, ie.Text), Err: err}
	}
	return s.ioFail(kind, step, err)
}
