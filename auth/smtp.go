package auth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/mailwire"
)

// The SMTP login dialogue (RFC 5321, RFC 4954 AUTH, RFC 3463 enhanced
// status codes, RFC 5248 538/5.7.11).
//
// Submission (Server.Relay false): EHLO/HELO, AUTH with and without an
// initial response, RSET, NOOP, HELP and QUIT are answered here; MAIL,
// RCPT and DATA before AUTH get 530. Inbound relay (Server.Relay true, as
// nginx's smtp_auth none): AUTH is not offered, MAIL FROM is accepted here
// and the first RCPT TO asks the Authenticator (Mechanism None); the
// chosen backend is then greeted with the client's EHLO, MAIL and RCPT are
// replayed to it and its answer to RCPT goes to the client.

// defaultSMTPExtensions are advertised when the listener names none.
var defaultSMTPExtensions = []string{"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"}

type smtpHandler struct {
	mail     []byte // the MAIL command line of a relay session, as sent
	mailFrom string
}

func (smtpHandler) greet(d *dialogue) {
	text := d.ls.Greeting
	if text == "" {
		text = "ESMTP ready"
	}
	d.reply("220 ", d.hostname(), " ", sanitize(text))
}

func (smtpHandler) closing(d *dialogue, reason string) string {
	return "421 4.7.0 " + d.hostname() + " " + reason
}

func (smtpHandler) tooLong(*dialogue) string { return "500 5.5.6 Line too long" }

func (h *smtpHandler) handle(d *dialogue, line []byte) bool {
	verb, arg := mailwire.SplitVerb(line)
	switch strings.ToUpper(string(verb)) {
	case "EHLO", "HELO":
		if len(arg) == 0 {
			d.bad("501 5.5.4 Syntax: " + strings.ToUpper(string(verb)) + " hostname")
			return false
		}
		d.helo = string(arg)
		h.mail, h.mailFrom = nil, ""
		if strings.EqualFold(string(verb), "HELO") {
			d.reply("250 ", d.hostname())
			return false
		}
		h.ehlo(d)
	case "AUTH":
		if d.s.Relay {
			d.bad("503 5.5.1 AUTH not available")
			return false
		}
		return h.auth(d, arg)
	case "MAIL":
		if !d.s.Relay {
			d.bad("530 5.7.0 Authentication required")
			return false
		}
		if d.helo == "" {
			d.bad("503 5.5.1 EHLO or HELO first")
			return false
		}
		addr, ok := pathArg(arg, "FROM:")
		if !ok {
			d.bad("501 5.5.4 Syntax: MAIL FROM:<address>")
			return false
		}
		h.mail, h.mailFrom = bytes.Clone(line), addr
		d.reply("250 2.1.0 Ok")
	case "RCPT":
		if !d.s.Relay {
			d.bad("530 5.7.0 Authentication required")
			return false
		}
		if h.mail == nil {
			d.bad("503 5.5.1 MAIL first")
			return false
		}
		addr, ok := pathArg(arg, "TO:")
		if !ok || addr == "" {
			d.bad("501 5.5.4 Syntax: RCPT TO:<address>")
			return false
		}
		return h.relay(d, line, addr)
	case "DATA", "BDAT":
		if !d.s.Relay {
			d.bad("530 5.7.0 Authentication required")
		} else {
			d.bad("503 5.5.1 RCPT first")
		}
	case "VRFY", "EXPN", "ETRN":
		d.bad("502 5.5.1 Command not available")
	case "RSET":
		h.mail, h.mailFrom = nil, ""
		d.reply("250 2.0.0 Ok")
	case "NOOP":
		d.reply("250 2.0.0 Ok")
	case "HELP":
		d.reply("214 2.0.0 https://www.rfc-editor.org/rfc/rfc5321")
	case "QUIT":
		d.quit("221 2.0.0 Bye")
	case "STARTTLS":
		if d.sess.TLS {
			d.bad("503 5.5.1 TLS already active")
		} else {
			d.bad("454 4.7.0 TLS not available now")
		}
	default:
		d.bad("500 5.5.2 Command not recognized")
	}
	return false
}

// ehlo answers EHLO with the listener's extensions and AUTH.
func (h *smtpHandler) ehlo(d *dialogue) {
	exts := d.ls.SMTPExtensions
	if exts == nil {
		exts = defaultSMTPExtensions
	}
	lines := []string{d.hostname()}
	for _, e := range exts {
		kw, _, _ := strings.Cut(e, " ")
		if strings.EqualFold(kw, "AUTH") || strings.EqualFold(kw, "STARTTLS") || e == "" {
			continue
		}
		lines = append(lines, sanitize(e))
	}
	if !d.s.Relay {
		plain := d.sess.TLS || d.s.AllowPlaintext
		var mechs []string
		for _, m := range d.s.mechanisms(d.cert != nil) {
			if plain || m == External {
				mechs = append(mechs, m)
			}
		}
		if len(mechs) > 0 {
			lines = append(lines, "AUTH "+strings.Join(mechs, " "))
		}
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		d.reply("250", sep, l)
	}
}

// auth runs AUTH mech [initial-response] (RFC 4954 §4).
func (h *smtpHandler) auth(d *dialogue, arg []byte) bool {
	if d.helo == "" {
		d.bad("503 5.5.1 EHLO first")
		return false
	}
	mechb, ir := mailwire.SplitVerb(arg)
	if len(mechb) == 0 {
		d.bad("501 5.5.4 Syntax: AUTH mechanism")
		return false
	}
	mech := strings.ToUpper(string(mechb))
	if !d.s.offers(mech, d.cert != nil) {
		d.bad("504 5.5.4 Unrecognized authentication type")
		return false
	}
	if len(ir) == 0 {
		ir = nil
	}
	req, err := d.saslExchange(mech, ir,
		func(c []byte) { d.reply("334 ", encodeSASL(c)) },
		d.readLine)
	switch {
	case errors.Is(err, errSASLAbort):
		d.reply("501 5.7.0 Authentication aborted")
		return false
	case errors.Is(err, errSASLBase64), errors.Is(err, errSASLBad):
		d.bad("501 5.5.2 Cannot decode response")
		return false
	case errors.Is(err, errSASLTooLong):
		d.bad("500 5.5.6 Authentication exchange line is too long")
		return false
	case err != nil:
		d.err = err
		return false
	}
	v := d.try(req)
	switch {
	case v.ok:
		d.reply("235 2.7.0 Authentication successful")
		return true
	case v.privacy:
		d.reply("538 5.7.11 Encryption required for requested authentication mechanism")
	case v.smtpCode != "":
		d.reply(v.smtpCode, " ", orText(v.message, "Authentication failed"))
	case v.temporary:
		d.reply("454 4.7.0 ", orText(v.message, "Temporary authentication failure"))
	default:
		d.reply("535 5.7.8 ", orText(v.message, "Authentication credentials invalid"))
	}
	if d.err != nil && errors.Is(d.err, ErrTooManyFailures) {
		d.reply(h.closing(d, "Too many failed logins"))
	}
	return false
}

// relay asks the Authenticator about the first recipient of an inbound
// session and, if allowed, replays the transaction to the backend.
func (h *smtpHandler) relay(d *dialogue, rcpt []byte, addr string) bool {
	req := d.baseRequest(None)
	req.MailFrom, req.RcptTo = h.mailFrom, addr
	d.attempts++
	req.Attempt = d.attempts
	res := d.ask(req)
	if res == nil {
		d.reply("451 4.3.0 Temporary failure, try again later")
		return false
	}
	if !res.OK {
		if !d.pause(res.Wait) {
			return false
		}
		code := smtpCode(res.SMTPCode)
		switch {
		case code != "":
		case res.Temporary:
			code = "450 4.7.1"
		default:
			code = "554 5.7.1"
		}
		d.bad(code + " " + orText(sanitize(res.Message), "<"+addr+">: Relay access denied"))
		if res.Close && d.err == nil {
			d.reply(h.closing(d, "Closing connection"))
			d.err = fmt.Errorf("%w: recipient refused", ErrTooManyFailures)
		}
		return false
	}
	ctx, cancel := context.WithTimeout(d.ctx, orDefault(d.s.BackendTimeout, defaultBackendTimeout))
	defer cancel()
	be, err := d.dial(ctx, req, res)
	if err != nil {
		d.onError(fmt.Errorf("auth: backend: %w", err))
		d.reply("451 4.3.0 Temporary failure, try again later")
		return false
	}
	reply, err := replayRelay(ctx, be, d.helo, h.mail, rcpt)
	if err != nil {
		be.Close()
		d.onError(fmt.Errorf("%w: %w", ErrBackendLogin, err))
		d.reply("451 4.3.0 Temporary failure, try again later")
		return false
	}
	d.out = append(d.out, reply...)
	d.done = &Session{Backend: be, Request: *req, Result: *res}
	return true
}

// pause flushes what the client is owed and waits (at most a minute, and
// only while ctx lasts); it reports whether the dialogue goes on.
func (d *dialogue) pause(wait time.Duration) bool {
	if wait <= 0 {
		return true
	}
	if err := d.flush(); err != nil {
		d.err = err
		return false
	}
	t := time.NewTimer(min(wait, time.Minute))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		d.err = d.ctx.Err()
		return false
	}
}

// replayRelay greets the backend with EHLO (HELO if it refuses EHLO), then
// sends the MAIL and RCPT lines the client sent and returns the backend's
// answer to RCPT, or its refusal of MAIL, as the client's answer.
func replayRelay(ctx context.Context, be *backend.Conn, helo string, mail, rcpt []byte) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		be.SetDeadline(dl)
		defer be.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { be.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	br := bufpool.Get(be, bufpool.Small)
	defer bufpool.Put(br)
	read := func() (mailwire.Reply, error) {
		return mailwire.ReadReply(func() ([]byte, error) { return mailwire.ReadLine(br, 8192) }, 64)
	}
	send := func(parts ...[]byte) error {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		_, err := be.Write(append(b, "\r\n"...))
		return err
	}
	if err := send([]byte("EHLO "), []byte(helo)); err != nil {
		return nil, err
	}
	rp, err := read()
	if err != nil {
		return nil, err
	}
	if rp.Code != 250 {
		if err := send([]byte("HELO "), []byte(helo)); err != nil {
			return nil, err
		}
		if rp, err = read(); err != nil {
			return nil, err
		}
		if rp.Code != 250 {
			return nil, fmt.Errorf("backend refused HELO: %d", rp.Code)
		}
	}
	if err := send(mail); err != nil {
		return nil, err
	}
	if rp, err = read(); err != nil {
		return nil, err
	}
	if rp.Code/100 != 2 {
		return rp.Raw, keepUnread(be, br)
	}
	if err := send(rcpt); err != nil {
		return nil, err
	}
	if rp, err = read(); err != nil {
		return nil, err
	}
	return rp.Raw, keepUnread(be, br)
}

// keepUnread gives be back what br read past the last reply.
func keepUnread(be *backend.Conn, br *bufio.Reader) error {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		be.Unread(bytes.Clone(b))
	}
	return nil
}

// pathArg returns the address of "FROM:<addr> params" or "TO:<addr>",
// without its angle brackets. A missing "<" is accepted as Postfix does.
func pathArg(arg []byte, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(string(arg[:len(prefix)]), prefix) {
		return "", false
	}
	rest := bytes.TrimLeft(arg[len(prefix):], " ")
	if len(rest) > 0 && rest[0] == '<' {
		end := bytes.IndexByte(rest, '>')
		if end < 0 {
			return "", false
		}
		return string(rest[1:end]), true
	}
	addr, _, _ := bytes.Cut(rest, []byte(" "))
	return string(addr), len(addr) > 0
}
