package auth

import (
	"bytes"
	"errors"
	"strings"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// The POP3 login dialogue (RFC 1939 §7, RFC 2449 CAPA and response codes,
// RFC 5034 SASL with initial response, RFC 3206 [AUTH] and [SYS/TEMP]).
//
// Answered here: CAPA, USER, PASS, AUTH (with and without a mechanism),
// NOOP and QUIT. APOP, STLS and everything else get -ERR. Commands the
// client pipelines after a successful PASS or AUTH go to the backend.

type pop3Handler struct {
	user string // from USER, waiting for PASS
}

func (pop3Handler) greet(d *dialogue) {
	text := d.ls.Greeting
	if text == "" {
		text = d.hostname() + " POP3 ready"
	}
	d.reply("+OK ", sanitize(text))
}

func (pop3Handler) closing(_ *dialogue, reason string) string { return "-ERR " + reason }

func (pop3Handler) tooLong(*dialogue) string { return "-ERR Line too long" }

func (h *pop3Handler) handle(d *dialogue, line []byte) bool {
	verb, arg := mailwire.SplitVerb(line)
	plain := d.sess.TLS || d.s.AllowPlaintext
	switch strings.ToUpper(string(verb)) {
	case "CAPA":
		d.reply("+OK Capability list follows")
		if plain {
			d.reply("USER")
		}
		if mechs := h.mechanisms(d); mechs != "" {
			d.reply("SASL ", mechs)
		}
		d.reply("RESP-CODES")
		d.reply("AUTH-RESP-CODE")
		d.reply("PIPELINING")
		for _, c := range d.ls.POP3Capabilities {
			if !strings.EqualFold(c, "STLS") && !strings.EqualFold(c, "USER") {
				d.reply(sanitize(c))
			}
		}
		d.reply(".")
	case "NOOP":
		d.reply("+OK")
	case "QUIT":
		d.quit("+OK Bye")
	case "USER":
		if len(arg) == 0 || bytes.ContainsAny(arg, "\x00") {
			d.bad("-ERR Invalid arguments")
			return false
		}
		if !plain {
			d.reply("-ERR [AUTH] TLS is required to log in")
			return false
		}
		h.user = string(arg)
		d.reply("+OK")
	case "PASS":
		if h.user == "" {
			d.bad("-ERR USER first")
			return false
		}
		req := d.baseRequest(Plain)
		req.User, req.Password = h.user, Secret(arg)
		h.user = ""
		return h.answer(d, d.try(req))
	case "AUTH":
		return h.auth(d, arg)
	case "APOP":
		d.bad("-ERR APOP not supported")
	case "STLS":
		d.bad("-ERR STLS not available now")
	default:
		d.bad("-ERR Command not valid before login")
	}
	return false
}

// mechanisms returns the SASL mechanisms offered, space-separated.
func (pop3Handler) mechanisms(d *dialogue) string {
	plain := d.sess.TLS || d.s.AllowPlaintext
	var out []string
	for _, m := range d.s.mechanisms(d.cert != nil) {
		if plain || m == External {
			out = append(out, m)
		}
	}
	return strings.Join(out, " ")
}

// auth runs AUTH, or lists the mechanisms for a bare AUTH (as many
// servers do for clients from before RFC 2449).
func (h *pop3Handler) auth(d *dialogue, arg []byte) bool {
	h.user = ""
	if len(arg) == 0 {
		d.reply("+OK")
		for _, m := range strings.Fields(h.mechanisms(d)) {
			d.reply(m)
		}
		d.reply(".")
		return false
	}
	mechb, ir := mailwire.SplitVerb(arg)
	mech := strings.ToUpper(string(mechb))
	if !d.s.offers(mech, d.cert != nil) {
		d.reply("-ERR Unsupported authentication mechanism")
		return false
	}
	if len(ir) == 0 {
		ir = nil
	}
	req, err := d.saslExchange(mech, ir,
		func(c []byte) { d.reply("+ ", encodeSASL(c)) },
		d.readLine)
	switch {
	case errors.Is(err, errSASLAbort):
		d.reply("-ERR Authentication aborted")
		return false
	case errors.Is(err, errSASLBase64), errors.Is(err, errSASLBad), errors.Is(err, errSASLTooLong):
		d.bad("-ERR Invalid SASL response")
		return false
	case err != nil:
		d.err = err
		return false
	}
	return h.answer(d, d.try(req))
}

func (pop3Handler) answer(d *dialogue, v verdict) bool {
	switch {
	case v.ok:
		d.reply("+OK ", orText(sanitize(v.up.Text), "Logged in"))
		return true
	case v.privacy:
		d.reply("-ERR [AUTH] TLS is required to log in")
	case v.temporary:
		d.reply("-ERR [SYS/TEMP] ", orText(v.message, "Temporary authentication failure, try again later"))
	default:
		d.reply("-ERR [AUTH] ", orText(v.message, "Authentication failed."))
	}
	return false
}
