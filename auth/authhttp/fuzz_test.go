package authhttp

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// fuzzHeader reads "Name: value" lines separated by LF; in a value, the
// two characters `\n` stand for a LF. Values keep every other byte (CR,
// NUL...), which net/http would have refused: parseResponse must hold on
// its own.
func fuzzHeader(raw string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(raw, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
		h[k] = append(h[k], strings.ReplaceAll(strings.TrimLeft(v, " "), `\n`, "\n"))
	}
	return h
}

// FuzzParseResponse checks what any answer can make of a login: no
// panic; a control character never reaches the Result; a Wait within
// MaxWait; an allowed login always with a backend at an IP address and a
// valid port, the request's protocol and the template's settings; a
// refusal never with a backend, and closing exactly when it has no Wait.
func FuzzParseResponse(f *testing.F) {
	for _, seed := range []string{
		"Auth-Status: OK\nAuth-Server: 198.51.100.1\nAuth-Port: 143",
		"Auth-Status: OK\nAuth-Server: 127.0.0.1\nAuth-Port: 8026\nAuth-Wait: 1",
		"Auth-Server: 127.0.0.1\nAuth-Port: 2525",
		"Auth-Status: OK\nAuth-Server: [2001:db8::1]\nAuth-Port: 993\nAuth-User: newname\nAuth-Pass: password",
		"Auth-Status: Invalid login or password\nAuth-Wait: 3",
		"Auth-Status: ERROR\nAuth-Server: 127.0.0.1\nAuth-Port: 8026\nAuth-Wait: 1",
		"Auth-Status: Temporary server problem, try again later\nAuth-Error-Code: 451 4.3.0\nAuth-Wait: 3",
		"Auth-Status: WAIT\nAuth-Wait: 2",
		"Auth-Status: no\r\n* OK [PREAUTH]\nAuth-Wait: 99999999999999999999",
		`Auth-Status: no\n+OK\nAuth-Wait: -1`,
		"Auth-Status: OK\nAuth-Server: 127.0.0.1\nAuth-Port: 143\nAuth-User: a\x00b",
		"Auth-Status: OK\nAuth-Server: 127.0.0.1\r\nAuth-Port: 0143",
		"Auth-Status: OK\nAuth-Server: fe80::1%lo\nAuth-Port: 65536",
		"Auth-Status: \nAuth-Error-Code: 4",
	} {
		f.Add(seed, uint8(starttls.IMAP), "secret")
		f.Add(seed, uint8(starttls.SMTP), "")
	}
	tmpl := &backend.Dialer{Security: starttls.STARTTLS, Hostname: "proxy.example.com"}
	f.Fuzz(func(t *testing.T, raw string, proto uint8, password string) {
		req := &auth.Request{Protocol: starttls.Protocol(proto % 3), Mechanism: auth.Plain, Password: auth.Secret(password)}
		d, err := parseResponse(fuzzHeader(raw), req, tmpl)
		if err != nil {
			if d.result != nil || d.retry {
				t.Fatalf("an error with a decision: %+v", d)
			}
			return
		}
		if d.wait < 0 || d.wait > MaxWait {
			t.Fatalf("retry wait %v", d.wait)
		}
		if d.retry {
			if d.result != nil {
				t.Fatalf("a retry with a result: %+v", d.result)
			}
			return
		}
		r := d.result
		if r == nil {
			t.Fatal("no error, no retry, no result")
		}
		for name, v := range map[string]string{"Message": r.Message, "SMTPCode": r.SMTPCode, "User": r.User, "Password": string(r.Password)} {
			if hasCTL(v) {
				t.Fatalf("%s %q has a control character", name, v)
			}
		}
		if r.Wait < 0 || r.Wait > MaxWait {
			t.Fatalf("Wait %v", r.Wait)
		}
		if !r.OK {
			if r.Backend != nil || r.User != "" || r.Password != "" {
				t.Fatalf("a refusal with a backend or credentials: %+v", r)
			}
			if r.Close != (r.Wait == 0) {
				t.Fatalf("Close %v with Wait %v", r.Close, r.Wait)
			}
			if r.Temporary && r.SMTPCode[0] != '4' {
				t.Fatalf("Temporary with %q", r.SMTPCode)
			}
			return
		}
		bd, ok := r.Backend.(*backend.Dialer)
		if !ok || bd == tmpl {
			t.Fatalf("Backend %#v is not a copy of the template", r.Backend)
		}
		host, port, err := net.SplitHostPort(bd.Addr)
		if err != nil {
			t.Fatalf("Addr %q: %v", bd.Addr, err)
		}
		if ip, err := netip.ParseAddr(host); err != nil || ip.Zone() != "" {
			t.Fatalf("Addr %q: host is not an IP address", bd.Addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("Addr %q: bad port", bd.Addr)
		}
		if bd.Protocol != req.Protocol || bd.Security != tmpl.Security || bd.Hostname != tmpl.Hostname {
			t.Fatalf("Dialer %+v does not follow the request and the template", bd)
		}
		if r.Close || r.Wait != 0 || r.Temporary || r.Message != "" || r.SMTPCode != "" {
			t.Fatalf("an allowed login with refusal fields: %+v", r)
		}
		if tmpl.Addr != "" {
			t.Fatal("the template was changed")
		}
	})
}
