package starttls

import (
	"fmt"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// imapDialogue runs the IMAP side of Upgrade (RFC 9051 sections 6.2.1 and
// 7.1). The greeting must be an untagged OK: BYE is a refusal, PREAUTH fails
// closed (ErrPreAuth), anything else is ErrBadResponse. The capabilities come
// from a [CAPABILITY ...] greeting code, else from a CAPABILITY command.
//
// The rule for untagged responses before a tagged answer: only * CAPABILITY
// is tolerated. Its atoms are used when answering CAPABILITY and thrown away
// when answering STARTTLS (never carried past TLS). * BYE is a refusal; any
// other untagged response, a continuation request, a foreign tag, or an
// [ALERT] or [REFERRAL] code anywhere before TLS is ErrBadResponse, since it
// is either a confused backend or text injected for the client to see.
func imapDialogue(b *backendConn, up *Upgraded) error {
	raw, err := b.line()
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	g, err := parseIMAPLine(mailwire.TrimEOL(raw))
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if err := imapGreetingOK(g, raw); err != nil {
		return err
	}
	up.Greeting = raw
	if err := b.quiet("the greeting"); err != nil {
		return err
	}
	caps := capsOf(g)
	if caps == nil {
		if caps, err = imapCommand(b, "A1", "CAPABILITY"); err != nil {
			return err
		}
		if err := b.quiet("the CAPABILITY answer"); err != nil {
			return err
		}
	}
	up.Capabilities = caps
	if !hasCap(caps, "STARTTLS") {
		return ErrNoStartTLS
	}
	_, err = imapCommand(b, "A2", "STARTTLS")
	return err
}

// imapGreetingOK classifies a parsed greeting.
func imapGreetingOK(g imapResp, raw []byte) error {
	switch {
	case g.tag != "*":
		return fmt.Errorf("%w: greeting is not untagged: %q", ErrBadResponse, mailwire.TrimEOL(raw))
	case g.kind == "BYE":
		return fmt.Errorf("%w: greeting %q", ErrRefused, mailwire.TrimEOL(raw))
	case g.kind == "PREAUTH":
		return fmt.Errorf("%w: %q", ErrPreAuth, mailwire.TrimEOL(raw))
	case g.kind != "OK":
		return fmt.Errorf("%w: greeting %q", ErrBadResponse, mailwire.TrimEOL(raw))
	}
	return untrustedCode(g, raw)
}

// untrustedCode rejects response codes that carry text or directions meant
// for the end user. Before TLS they could be injected by anyone on the path,
// and a proxy can neither follow a referral nor show an alert.
func untrustedCode(r imapResp, raw []byte) error {
	switch r.code {
	case "ALERT", "REFERRAL":
		return fmt.Errorf("%w: [%s] before TLS: %q", ErrBadResponse, r.code, mailwire.TrimEOL(raw))
	}
	return nil
}

// imapCommand sends "tag cmd" and reads up to the tagged answer, following
// the rule on untagged responses described at imapDialogue. It returns the
// capabilities seen (from * CAPABILITY or a [CAPABILITY] code of the OK).
func imapCommand(b *backendConn, tag, cmd string) ([]string, error) {
	if err := b.send(tag + " " + cmd); err != nil {
		return nil, fmt.Errorf("sending %s: %w", cmd, err)
	}
	var caps []string
	for n := 0; n < maxReplyLines; n++ {
		raw, err := b.line()
		if err != nil {
			return nil, fmt.Errorf("answer to %s: %w", cmd, err)
		}
		r, err := parseIMAPLine(mailwire.TrimEOL(raw))
		if err != nil {
			return nil, fmt.Errorf("answer to %s: %w", cmd, err)
		}
		if err := untrustedCode(r, raw); err != nil {
			return nil, err
		}
		done, err := imapStep(r, raw, tag, cmd)
		if err != nil {
			return nil, err
		}
		caps = append(caps, capsOf(r)...)
		if done {
			return caps, nil
		}
	}
	return nil, fmt.Errorf("%w: more than %d responses to %s", ErrBadResponse, maxReplyLines, cmd)
}

// imapStep judges one response to cmd; done is true at its tagged OK.
func imapStep(r imapResp, raw []byte, tag, cmd string) (done bool, err error) {
	line := mailwire.TrimEOL(raw)
	switch {
	case r.tag == tag && r.kind == "OK":
		return true, nil
	case r.tag == tag && (r.kind == "NO" || r.kind == "BAD"):
		return false, fmt.Errorf("%w: %s answered %q", ErrRefused, cmd, line)
	case r.tag == "*" && r.kind == "CAPABILITY":
		return false, nil
	case r.tag == "*" && r.kind == "BYE":
		return false, fmt.Errorf("%w: %q while waiting for %s", ErrRefused, line, cmd)
	}
	return false, fmt.Errorf("%w: %q while waiting for %s", ErrBadResponse, line, cmd)
}
