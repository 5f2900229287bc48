package authhttp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// decision is what one answer of the auth service says.
type decision struct {
	// result is the decision, nil when retry is set.
	result *auth.Result
	// retry is "Auth-Status: WAIT": ask again after wait, telling the
	// client nothing.
	retry bool
	wait  time.Duration
}

// The headers of an answer that this package reads; others are ignored,
// as nginx ignores them.
var answerHeaders = []string{"Auth-Status", "Auth-Server", "Auth-Port", "Auth-User", "Auth-Pass", "Auth-Wait", "Auth-Error-Code"}

// parseResponse turns the header of a 2xx answer to req into a decision,
// as nginx's ngx_mail_auth_http_process_headers does, with these checks
// nginx does not make:
//
//   - a control character (other than HTAB) in any header it reads rejects
//     the answer, so that no value can add a line to the mail dialogue;
//   - an Auth-Wait over MaxWait is cut to MaxWait;
//   - an empty Auth-Status refuses the login (nginx lets an SMTP login
//     through, and refuses IMAP and POP3).
//
// Where nginx reads a header given twice, the last one counts; every
// Auth-Status counts, and any that is not "OK" or "WAIT" refuses. The error
// never quotes Auth-Pass, Auth-User or Auth-Status.
func parseResponse(h http.Header, req *auth.Request, tmpl *backend.Dialer) (decision, error) {
	for _, k := range answerHeaders {
		for _, v := range h[k] {
			if hasCTL(v) {
				return decision{}, fmt.Errorf("control character in %s", k)
			}
		}
	}
	var (
		refused, waitStatus bool
		message             string
	)
	for _, s := range h["Auth-Status"] {
		switch s {
		case "OK":
		case "WAIT":
			waitStatus = true
		default:
			refused, message = true, s
		}
	}
	// nginx takes the last Auth-Wait that is a number; one that is not
	// (a sign, a fraction) is ignored.
	var wait time.Duration
	for _, v := range h["Auth-Wait"] {
		if d, ok := parseWait(v); ok {
			wait = d
		}
	}

	switch {
	case refused:
		code := last(h, "Auth-Error-Code")
		return decision{result: &auth.Result{
			Message:   message,
			SMTPCode:  code,
			Temporary: isTemporary(code),
			Wait:      wait,
			// nginx closes the session after a refusal without Auth-Wait.
			Close: wait == 0,
		}}, nil
	case waitStatus:
		return decision{retry: true, wait: wait}, nil
	}

	// Allowed: "Auth-Status: OK", or no Auth-Status at all (nginx needs
	// only Auth-Server and Auth-Port).
	server, port := last(h, "Auth-Server"), last(h, "Auth-Port")
	if server == "" || port == "" {
		return decision{}, errors.New("no Auth-Server or Auth-Port")
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(server, "["), "]"))
	if err != nil || ip.Zone() != "" {
		return decision{}, fmt.Errorf("Auth-Server %q is not an IP address", truncate(server))
	}
	if !validPort(port) {
		return decision{}, fmt.Errorf("Auth-Port %q is not a port", truncate(port))
	}
	_, hasPass := h["Auth-Pass"]
	if !hasPass && req.Password == "" && req.Protocol != starttls.SMTP {
		// As nginx: an IMAP or POP3 backend needs a password, and the
		// client gave none (EXTERNAL).
		return decision{}, fmt.Errorf("no Auth-Pass, and the %s client gave no password", req.Protocol)
	}
	d := backend.Dialer{}
	if tmpl != nil {
		d = *tmpl
	}
	d.Addr = net.JoinHostPort(ip.String(), port)
	d.Protocol = req.Protocol
	return decision{result: &auth.Result{
		OK:       true,
		Backend:  &d,
		User:     last(h, "Auth-User"),
		Password: auth.Secret(last(h, "Auth-Pass")),
	}}, nil
}

// last is the last value of h[k], or "".
func last(h http.Header, k string) string {
	if vs := h[k]; len(vs) > 0 {
		return vs[len(vs)-1]
	}
	return ""
}

// hasCTL reports a control character other than HTAB.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return true
		}
	}
	return false
}

// parseWait reads Auth-Wait: decimal seconds, digits only as nginx's
// ngx_atoi takes them, cut to MaxWait.
func parseWait(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		if n <= int(MaxWait/time.Second) {
			n = n*10 + int(s[i]-'0')
		}
	}
	return min(time.Duration(n)*time.Second, MaxWait), true
}

// validPort reports a decimal port from 1 to 65535, digits only.
func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n >= 1 && n <= 65535
}

// isTemporary reports an Auth-Error-Code of the 4xx class ("451 4.3.0").
func isTemporary(code string) bool {
	return len(code) >= 3 && code[0] == '4' && isDigit(code[1]) && isDigit(code[2]) &&
		(len(code) == 3 || code[3] == ' ')
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// truncate shortens a value quoted in an error.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
