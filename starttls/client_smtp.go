package starttls

import (
	"fmt"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// smtp runs the SMTP side of Upgrade (RFC 5321, RFC 3207): greeting, EHLO,
// STARTTLS. The greeting must be 220; any other code is a refusal. EHLO must
// succeed and list STARTTLS; STARTTLS must be answered 220.
func (c *Client) smtp(b *backendConn, up *Upgraded) error {
	greet, err := readSMTPReply(b.line)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if greet.Code != 220 {
		return fmt.Errorf("%w: greeting %s", ErrRefused, greet.String())
	}
	up.Greeting = greet.Raw
	if err := b.quiet("the greeting"); err != nil {
		return err
	}
	ehlo, err := exchangeSMTP(b, "EHLO "+c.hostname())
	if err != nil {
		return err
	}
	if ehlo.Code != 250 {
		return fmt.Errorf("%w: EHLO answered %s", ErrRefused, ehlo.String())
	}
	up.Capabilities = ehlo.Keywords()
	if !mailwire.HasKeyword(up.Capabilities, "STARTTLS") {
		return ErrNoStartTLS
	}
	if err := b.quiet("the EHLO reply"); err != nil {
		return err
	}
	st, err := exchangeSMTP(b, "STARTTLS")
	if err != nil {
		return err
	}
	if st.Code != 220 {
		return fmt.Errorf("%w: STARTTLS answered %s", ErrRefused, st.String())
	}
	return nil
}

// exchangeSMTP sends one command and reads its reply.
func exchangeSMTP(b *backendConn, cmd string) (mailwire.Reply, error) {
	if err := b.send(cmd); err != nil {
		return mailwire.Reply{}, fmt.Errorf("sending %s: %w", verbOf(cmd), err)
	}
	r, err := readSMTPReply(b.line)
	if err != nil {
		return r, fmt.Errorf("reply to %s: %w", verbOf(cmd), err)
	}
	return r, nil
}

// verbOf returns the command name of a command line, for error messages that
// must not echo arguments.
func verbOf(cmd string) string {
	v, _, _ := strings.Cut(cmd, " ")
	return v
}
