package starttls

import (
	"fmt"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// pop3Dialogue runs the POP3 side of Upgrade (RFC 1939, RFC 2449, RFC 2595):
// +OK greeting, CAPA listing STLS, STLS answered +OK.
//
// A backend that answers CAPA with -ERR is treated as one without STLS
// (ErrNoStartTLS) rather than sent STLS blindly: RFC 2595 section 4 makes
// CAPA the way STLS is announced, and failing closed keeps one predictable
// rule for "not offered" whoever removed the offer.
func pop3Dialogue(b *backendConn, up *Upgraded) error {
	raw, err := b.line()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	switch mailwire.POP3Status(mailwire.TrimEOL(raw)) {
	case -1:
		return fmt.Errorf("%w: greeting %q", ErrRefused, mailwire.TrimEOL(raw))
	case 0:
		return fmt.Errorf("%w: greeting %q", ErrBadResponse, mailwire.TrimEOL(raw))
	}
	up.Greeting = raw
	if err := b.quiet("the greeting"); err != nil {
		return err
	}
	ok, err := pop3Command(b, "CAPA")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: CAPA refused", ErrNoStartTLS)
	}
	if _, up.Capabilities, err = readPOP3Multi(b.line); err != nil {
		return fmt.Errorf("CAPA list: %w", err)
	}
	if !mailwire.HasKeyword(up.Capabilities, "STLS") {
		return ErrNoStartTLS
	}
	if err := b.quiet("the CAPA list"); err != nil {
		return err
	}
	if ok, err = pop3Command(b, "STLS"); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: STLS answered -ERR", ErrRefused)
	}
	return nil
}

// pop3Command sends cmd and reads its status line: true for +OK, false for
// -ERR, ErrBadResponse for anything else.
func pop3Command(b *backendConn, cmd string) (bool, error) {
	if err := b.send(cmd); err != nil {
		return false, fmt.Errorf("sending %s: %w", cmd, err)
	}
	raw, err := b.line()
	if err != nil {
		return false, fmt.Errorf("answer to %s: %w", cmd, err)
	}
	switch mailwire.POP3Status(mailwire.TrimEOL(raw)) {
	case 1:
		return true, nil
	case -1:
		return false, nil
	}
	return false, fmt.Errorf("%w: %q in answer to %s", ErrBadResponse, mailwire.TrimEOL(raw), cmd)
}
