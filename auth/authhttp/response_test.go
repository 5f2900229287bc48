package authhttp

import (
	"crypto/tls"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// hdr builds an answer header from "Name: value" lines, names
// canonicalised as net/http does, values kept as they are.
func hdr(lines ...string) http.Header {
	h := http.Header{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ":")
		h.Add(k, strings.TrimLeft(v, " "))
	}
	return h
}

func TestParseResponse(t *testing.T) {
	tmpl := &backend.Dialer{Security: starttls.TLS, TLSConfig: &tls.Config{ServerName: "imap.internal"}, IMAPID: true}
	imap := imapLogin("test@example.com", "secret")
	external := &auth.Request{Protocol: starttls.IMAP, Mechanism: auth.External, User: "alice"}
	smtpExternal := &auth.Request{Protocol: starttls.SMTP, Mechanism: auth.External, User: "alice"}

	dialer := func(addr string, p starttls.Protocol) *backend.Dialer {
		d := *tmpl
		d.Addr, d.Protocol = addr, p
		return &d
	}
	for _, tt := range []struct {
		name  string
		req   *auth.Request
		h     http.Header
		want  *auth.Result
		retry time.Duration // want a retry after this
		err   string        // want an error containing this
	}{
		{
			name: "ok",
			req:  imap,
			h:    hdr("Auth-Status: OK", "Auth-Server: 198.51.100.1", "Auth-Port: 143"),
			want: &auth.Result{OK: true, Backend: dialer("198.51.100.1:143", starttls.IMAP)},
		},
		{
			name: "ok as nginx-tests answers, with Auth-Wait",
			req:  imap,
			h:    hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 8026", "Auth-Wait: 1"),
			want: &auth.Result{OK: true, Backend: dialer("127.0.0.1:8026", starttls.IMAP)},
		},
		{
			name: "ok without Auth-Status",
			req:  imap,
			h:    hdr("Auth-Server: 127.0.0.1", "Auth-Port: 2525"),
			want: &auth.Result{OK: true, Backend: dialer("127.0.0.1:2525", starttls.IMAP)},
		},
		{
			name: "ok ipv6, user and password replaced, taken as they are",
			req:  imap,
			h:    hdr("Auth-Status: OK", "Auth-Server: 2001:db8::1", "Auth-Port: 993", "Auth-User: master%20user", "Auth-Pass: pa ss"),
			want: &auth.Result{OK: true, Backend: dialer("[2001:db8::1]:993", starttls.IMAP), User: "master%20user", Password: "pa ss"},
		},
		{
			name: "ok bracketed ipv6",
			req:  imap,
			h:    hdr("Auth-Status: OK", "Auth-Server: [2001:db8::1]", "Auth-Port: 993"),
			want: &auth.Result{OK: true, Backend: dialer("[2001:db8::1]:993", starttls.IMAP)},
		},
		{
			name: "external imap with Auth-Pass",
			req:  external,
			h:    hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143", "Auth-Pass: token"),
			want: &auth.Result{OK: true, Backend: dialer("127.0.0.1:143", starttls.IMAP), Password: "token"},
		},
		{
			name: "external smtp needs no Auth-Pass",
			req:  smtpExternal,
			h:    hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 25"),
			want: &auth.Result{OK: true, Backend: dialer("127.0.0.1:25", starttls.SMTP)},
		},
		{
			name: "refused with Auth-Wait",
			req:  imap,
			h:    hdr("Auth-Status: Invalid login or password", "Auth-Wait: 3", "Auth-Server: 127.0.0.1", "Auth-Port: 143"),
			want: &auth.Result{Message: "Invalid login or password", Wait: 3 * time.Second},
		},
		{
			name: "refused without Auth-Wait closes",
			req:  imap,
			h:    hdr("Auth-Status: Invalid login or password"),
			want: &auth.Result{Message: "Invalid login or password", Close: true},
		},
		{
			name: "refused with Auth-Wait 0 closes",
			req:  imap,
			h:    hdr("Auth-Status: ERROR", "Auth-Wait: 0"),
			want: &auth.Result{Message: "ERROR", Close: true},
		},
		{
			name: "temporary smtp problem",
			req:  smtpExternal,
			h:    hdr("Auth-Status: Temporary server problem, try again later", "Auth-Error-Code: 451 4.3.0", "Auth-Wait: 3"),
			want: &auth.Result{Message: "Temporary server problem, try again later", SMTPCode: "451 4.3.0", Temporary: true, Wait: 3 * time.Second},
		},
		{
			name: "permanent smtp code",
			req:  smtpExternal,
			h:    hdr("Auth-Status: Invalid login or password", "Auth-Error-Code: 535 5.7.0"),
			want: &auth.Result{Message: "Invalid login or password", SMTPCode: "535 5.7.0", Close: true},
		},
		{
			name: "huge Auth-Wait is cut",
			req:  imap,
			h:    hdr("Auth-Status: no", "Auth-Wait: 99999999999999999999999999"),
			want: &auth.Result{Message: "no", Wait: MaxWait},
		},
		{
			name: "61 s is cut",
			req:  imap,
			h:    hdr("Auth-Status: no", "Auth-Wait: 61"),
			want: &auth.Result{Message: "no", Wait: MaxWait},
		},
		{
			name: "negative Auth-Wait is not a number: closes, as nginx",
			req:  imap,
			h:    hdr("Auth-Status: no", "Auth-Wait: -5"),
			want: &auth.Result{Message: "no", Close: true},
		},
		{
			name: "last valid Auth-Wait counts",
			req:  imap,
			h:    hdr("Auth-Status: no", "Auth-Wait: 2", "Auth-Wait: x"),
			want: &auth.Result{Message: "no", Wait: 2 * time.Second},
		},
		{
			name: "empty Auth-Status refuses",
			req:  imap,
			h:    hdr("Auth-Status: ", "Auth-Server: 127.0.0.1", "Auth-Port: 143"),
			want: &auth.Result{Close: true},
		},
		{
			name: "ok in lower case refuses, as nginx",
			req:  imap,
			h:    hdr("Auth-Status: ok", "Auth-Server: 127.0.0.1", "Auth-Port: 143"),
			want: &auth.Result{Message: "ok", Close: true},
		},
		{
			name: "a refusal anywhere wins over OK",
			req:  imap,
			h:    hdr("Auth-Status: OK", "Auth-Status: denied", "Auth-Server: 127.0.0.1", "Auth-Port: 143"),
			want: &auth.Result{Message: "denied", Close: true},
		},
		{
			name: "a refusal wins over WAIT",
			req:  imap,
			h:    hdr("Auth-Status: WAIT", "Auth-Status: denied", "Auth-Wait: 1"),
			want: &auth.Result{Message: "denied", Wait: time.Second},
		},
		{
			name:  "WAIT",
			req:   imap,
			h:     hdr("Auth-Status: WAIT", "Auth-Wait: 2"),
			retry: 2 * time.Second,
		},
		{name: "nothing", req: imap, h: hdr(), err: "no Auth-Server or Auth-Port"},
		{name: "no port", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1"), err: "no Auth-Server or Auth-Port"},
		{name: "host name", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: imap.example.com", "Auth-Port: 143"), err: `Auth-Server "imap.example.com" is not an IP address`},
		{name: "zone", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: fe80::1%eth0", "Auth-Port: 143"), err: "not an IP address"},
		{name: "host:port", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1:143", "Auth-Port: 143"), err: "not an IP address"},
		{name: "port 0", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 0"), err: `Auth-Port "0" is not a port`},
		{name: "port 65536", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 65536"), err: "is not a port"},
		{name: "port +80", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: +80"), err: "is not a port"},
		{name: "port name", req: imap, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: imap"), err: "is not a port"},
		{name: "external imap without Auth-Pass", req: external, h: hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 143"), err: "no Auth-Pass, and the imap client gave no password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseResponse(tt.h, tt.req, tmpl)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			case tt.retry != 0:
				if !d.retry || d.wait != tt.retry || d.result != nil {
					t.Fatalf("got %+v, want a retry after %v", d, tt.retry)
				}
				return
			}
			if d.retry || !reflect.DeepEqual(d.result, tt.want) {
				t.Fatalf("got %+v (retry %v)\nwant %+v", d.result, d.retry, tt.want)
			}
		})
	}
	if tmpl.Addr != "" || tmpl.Protocol != starttls.SMTP {
		t.Errorf("the template Dialer was changed: %+v", tmpl)
	}
}

func TestParseResponseNilDialer(t *testing.T) {
	d, err := parseResponse(hdr("Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: 110"), &auth.Request{Protocol: starttls.POP3, Password: "p"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := d.result.Backend.(*backend.Dialer)
	if !ok || !reflect.DeepEqual(*got, backend.Dialer{Addr: "127.0.0.1:110", Protocol: starttls.POP3}) {
		t.Fatalf("Backend = %#v", d.result.Backend)
	}
}

// TestParseResponseControlCharacters: a CR, LF, NUL or other control
// character in any header read rejects the answer, whatever the status,
// so that nothing of it reaches the mail dialogue; the error does not
// quote the value.
func TestParseResponseControlCharacters(t *testing.T) {
	base := map[string]string{
		"Auth-Status":     "OK",
		"Auth-Server":     "127.0.0.1",
		"Auth-Port":       "143",
		"Auth-User":       "user",
		"Auth-Pass":       "master-secret",
		"Auth-Wait":       "1",
		"Auth-Error-Code": "535 5.7.8",
	}
	for _, k := range answerHeaders {
		for _, bad := range []string{"\r", "\n", "\x00", "\x1b", "\x7f", "\r\n* OK [PREAUTH]"} {
			h := http.Header{}
			for bk, bv := range base {
				h[bk] = []string{bv}
			}
			h[k] = []string{"master-secret" + bad + "x"}
			d, err := parseResponse(h, imapLogin("u", "p"), nil)
			if err == nil {
				t.Errorf("%s with %q: accepted: %+v", k, bad, d.result)
				continue
			}
			if strings.Contains(err.Error(), "master-secret") {
				t.Errorf("%s with %q: the error quotes the value: %v", k, bad, err)
			}
		}
	}
	// HTAB is not a line break: it is let through, as HTTP allows it.
	d, err := parseResponse(hdr("Auth-Status: no\tway"), imapLogin("u", "p"), nil)
	if err != nil || d.result.Message != "no\tway" {
		t.Fatalf("HTAB: %+v, %v", d.result, err)
	}
}
