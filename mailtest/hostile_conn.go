package mailtest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// hostileMessage is the one message in a hostile server's mailbox.
var hostileMessage = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hostile\r\n\r\n" +
	strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 24)

// errHangUp ends a hostile dialogue without an error worth reporting.
var errHangUp = errors.New("mailtest: hostile server hangs up")

// hostileConn is one connection to a Hostile: an ordinary small dialogue
// in IMAP, POP3 or SMTP, with the kind's fault worked in.
type hostileConn struct {
	h        *Hostile
	raw      net.Conn // the TCP connection, for the reset
	c        net.Conn // raw, or TLS over it
	r        *bufio.Reader
	upgraded bool
}

// maxHostileLine bounds a client's command line.
const maxHostileLine = 8192

func newHostileConn(c net.Conn, h *Hostile) *hostileConn {
	return &hostileConn{h: h, raw: c, c: c, r: bufio.NewReaderSize(c, maxHostileLine)}
}

// run serves the connection until the client leaves or the fault ends it.
func (hc *hostileConn) run() {
	opt := hc.h.opt
	if opt.Kind == Mute {
		io.Copy(io.Discard, hc.c)
		return
	}
	if opt.Kind == WrongCertificate && opt.ImplicitTLS {
		if hc.upgrade(hc.h.bad) != nil {
			return
		}
	}
	if hc.write(hc.greeting()) != nil {
		return
	}
	for {
		line, err := hc.r.ReadSlice('\n')
		if err != nil {
			return
		}
		f := strings.Fields(string(line))
		if len(f) == 0 {
			continue
		}
		if hc.command(f) != nil {
			return
		}
	}
}

// greeting returns the protocol's greeting, bent by the kind.
func (hc *hostileConn) greeting() string {
	var g string
	switch hc.h.opt.Protocol {
	case IMAP:
		g = "* OK hostile IMAP ready"
		if hc.h.opt.Kind == PreAuth {
			g = "* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hostile IMAP ready"
		}
	case POP3:
		g = "+OK hostile POP3 ready"
	default:
		g = "220 " + hc.h.ServerName + " ESMTP hostile"
	}
	if hc.h.opt.Kind == LongLines && len(g) < hc.h.opt.lineLength() {
		g += " " + strings.Repeat("x", hc.h.opt.lineLength()-len(g)-1)
	}
	return g + "\r\n"
}

// command answers one command line, split into words.
func (hc *hostileConn) command(f []string) error {
	switch hc.h.opt.Protocol {
	case IMAP:
		if len(f) < 2 {
			return hc.write("* BAD missing command\r\n")
		}
		return hc.imap(f[0], strings.ToUpper(f[1]), f[2:])
	case POP3:
		return hc.pop3(strings.ToUpper(f[0]))
	default:
		return hc.smtp(strings.ToUpper(f[0]), f[1:])
	}
}

// write writes s, a byte at a time with a pause before each for Slow.
func (hc *hostileConn) write(s string) error {
	if hc.h.opt.Kind != Slow {
		_, err := io.WriteString(hc.c, s)
		return err
	}
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i := range len(s) {
		t.Reset(hc.h.opt.delay())
		select {
		case <-t.C:
		case <-hc.h.done:
			return net.ErrClosed
		}
		if _, err := hc.c.Write([]byte{s[i]}); err != nil {
			return err
		}
	}
	return nil
}

// startTLS answers a STARTTLS or STLS command with goAhead (and, for
// StartTLSInjection, inject in the same write), then handshakes.
func (hc *hostileConn) startTLS(goAhead, inject string) error {
	if hc.h.opt.Kind != StartTLSInjection {
		inject = ""
	}
	if err := hc.write(goAhead + inject); err != nil {
		return err
	}
	cfg := hc.h.good
	if hc.h.opt.Kind == WrongCertificate {
		cfg = hc.h.bad
	}
	return hc.upgrade(cfg)
}

// upgrade runs the server side of a TLS handshake with cfg.
func (hc *hostileConn) upgrade(cfg *tls.Config) error {
	tc := tls.Server(hc.raw, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	hc.c, hc.r, hc.upgraded = tc, bufio.NewReaderSize(tc, maxHostileLine), true
	return nil
}

// message sends head, then the message (or, for ResetMidMessage, half of
// it followed by a reset), then tail.
func (hc *hostileConn) message(head, tail string) error {
	if hc.h.opt.Kind == ResetMidMessage {
		hc.write(head + hostileMessage[:len(hostileMessage)/2])
		hc.reset()
		return errHangUp
	}
	return hc.write(head + hostileMessage + tail)
}

// reset closes the TCP connection with an RST instead of a FIN.
func (hc *hostileConn) reset() {
	if tc, ok := hc.raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	hc.raw.Close()
}

// imap answers one IMAP command.
func (hc *hostileConn) imap(tag, verb string, args []string) error {
	switch verb {
	case "CAPABILITY":
		caps := "IMAP4rev1 AUTH=PLAIN"
		if !hc.upgraded {
			caps += " STARTTLS"
		}
		return hc.write("* CAPABILITY " + caps + "\r\n" + tag + " OK CAPABILITY completed\r\n")
	case "STARTTLS":
		return hc.startTLS(tag+" OK Begin TLS negotiation now\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
	case "LOGIN", "AUTHENTICATE":
		if verb == "AUTHENTICATE" && len(args) < 2 {
			if err := hc.write("+ \r\n"); err != nil {
				return err
			}
			if _, err := hc.r.ReadSlice('\n'); err != nil {
				return err
			}
		}
		return hc.write(tag + " OK " + verb + " completed\r\n")
	case "SELECT", "EXAMINE":
		return hc.write("* 1 EXISTS\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 2] Predicted next UID\r\n" +
			"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" + tag + " OK [READ-WRITE] " + verb + " completed\r\n")
	case "FETCH", "UID":
		head := fmt.Sprintf("* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[] {%d}\r\n", len(hostileMessage))
		return hc.message(head, ")\r\n"+tag+" OK FETCH completed\r\n")
	case "NOOP", "CHECK", "CLOSE":
		return hc.write(tag + " OK " + verb + " completed\r\n")
	case "LOGOUT":
		hc.write("* BYE hostile IMAP logging out\r\n" + tag + " OK LOGOUT completed\r\n")
		return errHangUp
	}
	return hc.write(tag + " BAD unknown command\r\n")
}

// pop3 answers one POP3 command.
func (hc *hostileConn) pop3(verb string) error {
	n := len(hostileMessage)
	switch verb {
	case "CAPA":
		caps := "USER\r\nUIDL\r\n"
		if !hc.upgraded {
			caps += "STLS\r\n"
		}
		return hc.write("+OK capability list follows\r\n" + caps + ".\r\n")
	case "STLS":
		return hc.startTLS("+OK Begin TLS negotiation\r\n", "+OK injected\r\n")
	case "USER", "PASS", "DELE", "NOOP", "RSET":
		return hc.write("+OK\r\n")
	case "STAT":
		return hc.write(fmt.Sprintf("+OK 1 %d\r\n", n))
	case "LIST":
		return hc.write(fmt.Sprintf("+OK 1 messages\r\n1 %d\r\n.\r\n", n))
	case "UIDL":
		return hc.write("+OK\r\n1 hostile-1\r\n.\r\n")
	case "RETR", "TOP":
		return hc.message(fmt.Sprintf("+OK %d octets\r\n", n), ".\r\n")
	case "QUIT":
		hc.write("+OK bye\r\n")
		return errHangUp
	}
	return hc.write("-ERR unknown command\r\n")
}

// smtp answers one SMTP command.
func (hc *hostileConn) smtp(verb string, args []string) error {
	switch verb {
	case "EHLO":
		ext := "250-PIPELINING\r\n"
		if !hc.upgraded {
			ext += "250-STARTTLS\r\n"
		}
		return hc.write("250-" + hc.h.ServerName + "\r\n" + ext + "250 AUTH PLAIN LOGIN\r\n")
	case "HELO":
		return hc.write("250 " + hc.h.ServerName + "\r\n")
	case "STARTTLS":
		return hc.startTLS("220 2.0.0 Ready to start TLS\r\n", "250-injected\r\n250 AUTH LOGIN\r\n")
	case "AUTH":
		return hc.smtpAuth(args)
	case "MAIL", "RCPT", "RSET", "NOOP":
		return hc.write("250 2.0.0 Ok\r\n")
	case "DATA":
		return hc.smtpData()
	case "QUIT":
		hc.write("221 2.0.0 Bye\r\n")
		return errHangUp
	}
	return hc.write("502 5.5.2 Error: command not recognized\r\n")
}

// smtpAuth accepts any credentials after the mechanism's challenges.
func (hc *hostileConn) smtpAuth(args []string) error {
	steps := 0
	switch {
	case len(args) == 1 && strings.EqualFold(args[0], "LOGIN"):
		steps = 2
	case len(args) == 1:
		steps = 1
	case len(args) >= 2 && strings.EqualFold(args[0], "LOGIN"):
		steps = 1
	}
	for range steps {
		if err := hc.write("334 \r\n"); err != nil {
			return err
		}
		if _, err := hc.r.ReadSlice('\n'); err != nil {
			return err
		}
	}
	return hc.write("235 2.7.0 Authentication successful\r\n")
}

// smtpData receives a message up to its "." line, or resets after its
// first line for ResetMidMessage.
func (hc *hostileConn) smtpData() error {
	if err := hc.write("354 End data with <CR><LF>.<CR><LF>\r\n"); err != nil {
		return err
	}
	for {
		line, err := hc.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if hc.h.opt.Kind == ResetMidMessage {
			hc.reset()
			return errHangUp
		}
		if string(line) == ".\r\n" || string(line) == ".\n" {
			return hc.write("250 2.0.0 Ok: queued\r\n")
		}
	}
}
