package auth_test

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// Hash generators in Dovecot's encodings, for the test files.

func staticSHA256(pw string) []byte { d := sha256.Sum256([]byte(pw)); return d[:] }
func staticSHA512(pw string) []byte { d := sha512.Sum512([]byte(pw)); return d[:] }

func staticSSHA256(pw string, salt []byte) []byte {
	d := sha256.Sum256(append([]byte(pw), salt...))
	return append(d[:], salt...)
}

func staticSSHA512(pw string, salt []byte) []byte {
	d := sha512.Sum512(append([]byte(pw), salt...))
	return append(d[:], salt...)
}

func staticB64(b []byte) string    { return base64.StdEncoding.EncodeToString(b) }
func staticRawB64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
func staticHex(b []byte) string    { return hex.EncodeToString(b) }

func staticParse(t testing.TB, file string) *auth.Static {
	t.Helper()
	s, err := auth.ParseStatic(strings.NewReader(file))
	if err != nil {
		t.Fatalf("ParseStatic: %v", err)
	}
	return s
}

func staticPlain(user, pw string) *auth.Request {
	return &auth.Request{Protocol: starttls.IMAP, Mechanism: auth.Plain, User: user, Password: auth.Secret(pw), Attempt: 1}
}

func staticAuth(t testing.TB, s *auth.Static, req *auth.Request) *auth.Result {
	t.Helper()
	res, err := s.Authenticate(context.Background(), req)
	if err != nil {
		t.Fatalf("Authenticate(%s %q): error %v", req.Mechanism, req.User, err)
	}
	if res == nil {
		t.Fatalf("Authenticate(%s %q): nil Result", req.Mechanism, req.User)
	}
	return res
}

// staticRefused fails unless res is the zero Result: the refusal that does
// not say what was wrong.
func staticRefused(t testing.TB, what string, res *auth.Result) {
	t.Helper()
	if *res != (auth.Result{}) {
		t.Errorf("%s: got %+v, want the zero Result", what, *res)
	}
}

func TestStaticSchemes(t *testing.T) {
	const pw = "c0rrect horse:#{}" // a space needs .HEX or .B64; the others use pwNS
	const pwNS = "c0rrect-horse:#{}*"
	salt := []byte{0x01, 0xfe, 'a', 0x00}
	longSalt := []byte("a salt of sixteen")
	tests := []struct {
		name, field, pw string
	}{
		{"PLAIN", "{PLAIN}" + pwNS, pwNS},
		{"plain lower case", "{plain}" + pwNS, pwNS},
		{"CLEARTEXT", "{CLEARTEXT}" + pwNS, pwNS},
		{"PLAIN.HEX", "{PLAIN.HEX}" + staticHex([]byte(pw)), pw},
		{"PLAIN.B64", "{PLAIN.B64}" + staticB64([]byte(pw)), pw},
		{"PLAIN.BASE64", "{PLAIN.BASE64}" + staticB64([]byte(pw)), pw},
		{"SHA256 base64", "{SHA256}" + staticB64(staticSHA256(pw)), pw},
		{"SHA256 base64 unpadded", "{SHA256}" + staticRawB64(staticSHA256(pw)), pw},
		{"SHA256 hex guessed", "{SHA256}" + staticHex(staticSHA256(pw)), pw},
		{"SHA256.HEX", "{SHA256.HEX}" + staticHex(staticSHA256(pw)), pw},
		{"SHA256.B64", "{SHA256.b64}" + staticB64(staticSHA256(pw)), pw},
		{"SHA512 base64", "{SHA512}" + staticB64(staticSHA512(pw)), pw},
		{"SHA512 hex guessed", "{SHA512}" + staticHex(staticSHA512(pw)), pw},
		{"SSHA256", "{SSHA256}" + staticB64(staticSSHA256(pw, salt)), pw},
		{"SSHA256 long salt", "{SSHA256}" + staticB64(staticSSHA256(pw, longSalt)), pw},
		{"SSHA256.HEX", "{SSHA256.HEX}" + staticHex(staticSSHA256(pw, salt)), pw},
		{"SSHA512", "{SSHA512}" + staticB64(staticSSHA512(pw, salt)), pw},
		{"SSHA512 long salt", "{ssha512}" + staticB64(staticSSHA512(pw, longSalt)), pw},
		{"SSHA512.HEX", "{SSHA512.HEX}" + staticHex(staticSSHA512(pw, salt)), pw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := staticParse(t, "u@example.com "+tt.field+"\n")
			for _, mech := range []string{auth.Plain, auth.Login} {
				req := staticPlain("u@example.com", tt.pw)
				req.Mechanism = mech
				if res := staticAuth(t, s, req); !res.OK {
					t.Errorf("%s with the right password: refused (%+v)", mech, *res)
				}
			}
			for _, wrong := range []string{"", tt.pw[:len(tt.pw)-1], tt.pw + "x", strings.ToUpper(tt.pw), "c0rrect"} {
				staticRefused(t, fmt.Sprintf("password %q", wrong), staticAuth(t, s, staticPlain("u@example.com", wrong)))
			}
			staticRefused(t, "another user", staticAuth(t, s, staticPlain("v@example.com", tt.pw)))
		})
	}
}

// TestStaticDovecotVector checks a hash made by doveadm pw rather than by
// this test: doveadm pw -s SSHA256 -p password prints fields of this form
// (a 4-byte salt); this one is built the same way with a fixed salt, and
// the SHA512 one is the well-known digest of "password".
func TestStaticDovecotVector(t *testing.T) {
	const sha512OfPassword = "b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86"
	raw, _ := hex.DecodeString(sha512OfPassword)
	s := staticParse(t, ""+
		"a {SHA512}"+staticB64(raw)+"\n"+
		"b {SHA512.HEX}"+sha512OfPassword+"\n")
	for _, u := range []string{"a", "b"} {
		if !staticAuth(t, s, staticPlain(u, "password")).OK {
			t.Errorf("%s: refused", u)
		}
	}
}

func TestStaticDomainLines(t *testing.T) {
	file := `
# example.com: a shared password for everyone, alice has her own
*@example.com {PLAIN}shared host=imap-a.internal:143 user=%n
alice@example.com {PLAIN}alice-pw user=alice.a
carol@example.com - pool=vip

# example.net: users need lines of their own
*@Example.NET - host=imap-b.internal:143 pass=backend-pw
bob@example.net {PLAIN}bob-pw
dan@example.net - nologin

# a user without a domain line, and one without a domain at all
eve@example.org {PLAIN}eve-pw
frank {PLAIN}frank-pw
`
	s := staticParse(t, file)
	type want struct {
		ok               bool
		host, pool, user string
		pass             string
		nologin          bool
	}
	tests := []struct {
		user, pw string
		want     want
	}{
		// example.com: the shared password logs in anybody without a line.
		{"zed@example.com", "shared", want{ok: true, host: "imap-a.internal:143", user: "zed"}},
		{"zed@EXAMPLE.com", "shared", want{ok: true, host: "imap-a.internal:143", user: "zed"}},
		{"zed@example.com", "alice-pw", want{}},
		// alice has her own password; the shared one is not hers. Her
		// user= overrides the domain's, the host is inherited.
		{"alice@example.com", "alice-pw", want{ok: true, host: "imap-a.internal:143", user: "alice.a"}},
		{"alice@example.com", "shared", want{}},
		{"alice@Example.Com", "alice-pw", want{ok: true, host: "imap-a.internal:143", user: "alice.a"}},
		// The local part is exact: Alice is not alice, and has no line,
		// so the shared password is hers.
		{"Alice@example.com", "alice-pw", want{}},
		{"Alice@example.com", "shared", want{ok: true, host: "imap-a.internal:143", user: "Alice"}},
		// carol takes the domain's password ("-") and her own routing.
		{"carol@example.com", "shared", want{ok: true, pool: "vip", user: "carol"}},
		// A domain line does not log in a name with an empty local part.
		{"@example.com", "shared", want{}},
		{"a b@example.com", "shared", want{}},

		// example.net has no shared password: only its users with lines.
		{"bob@example.net", "bob-pw", want{ok: true, host: "imap-b.internal:143", pass: "backend-pw"}},
		{"bob@EXAMPLE.NET", "bob-pw", want{ok: true, host: "imap-b.internal:143", pass: "backend-pw"}},
		{"Bob@example.net", "bob-pw", want{}},
		{"zed@example.net", "", want{}},
		{"zed@example.net", "-", want{}},
		// dan has "-" on a domain line with "-": no password at all.
		{"dan@example.net", "", want{}},
		{"dan@example.net", "-", want{}},

		{"eve@example.org", "eve-pw", want{ok: true}},
		{"eve@EXAMPLE.ORG", "eve-pw", want{ok: true}},
		{"zed@example.org", "eve-pw", want{}},
		{"frank", "frank-pw", want{ok: true}},
		{"Frank", "frank-pw", want{}},
		{"frank@example.org", "frank-pw", want{}},
	}
	for _, tt := range tests {
		res := staticAuth(t, s, staticPlain(tt.user, tt.pw))
		if !tt.want.ok {
			staticRefused(t, tt.user+" "+tt.pw, res)
			continue
		}
		var host string
		if d, ok := res.Backend.(*backend.Dialer); ok {
			host = d.Addr
		} else if res.Backend != nil {
			t.Errorf("%s: Backend %T, want *backend.Dialer", tt.user, res.Backend)
		}
		got := want{ok: res.OK, host: host, pool: res.Pool, user: res.User, pass: string(res.Password), nologin: res.NoLogin}
		if got != tt.want {
			t.Errorf("%s %s: got %+v, want %+v", tt.user, tt.pw, got, tt.want)
		}
	}

	// dan exists (for EXTERNAL) and carries the nologin flag.
	req := &auth.Request{Protocol: starttls.SMTP, Mechanism: auth.External, User: "dan@example.net", ClientCert: &x509.Certificate{}}
	if res := staticAuth(t, s, req); !res.OK || !res.NoLogin || string(res.Password) != "backend-pw" {
		t.Errorf("EXTERNAL dan: got %+v", *res)
	}
}

func TestStaticResult(t *testing.T) {
	s := staticParse(t, ""+
		"master@example.com {PLAIN}pw host=[2001:db8::1]:993 user=master@%d authz=%u pass=masterpw\n"+
		"pct {PLAIN}pw user=100%%-%n-%d authz=%n\n"+
		"nl@example.com {PLAIN}pw nologin pool=smtp-trusting\n")
	tmpl := &backend.Dialer{
		Addr:      "template:1",
		Protocol:  starttls.SMTP,
		Security:  starttls.TLS,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13},
		Proxy:     backend.ProxyV2,
		XCLIENT:   true,
		IMAPID:    true,
	}
	s.Dialer = tmpl

	for _, p := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		req := staticPlain("master@Example.com", "pw")
		req.Protocol = p
		res := staticAuth(t, s, req)
		d, ok := res.Backend.(*backend.Dialer)
		if !ok || !res.OK {
			t.Fatalf("%v: got %+v", p, *res)
		}
		if d == tmpl {
			t.Fatalf("%v: the template itself was returned", p)
		}
		if d.Addr != "[2001:db8::1]:993" || d.Protocol != p || d.Security != starttls.TLS ||
			d.TLSConfig != tmpl.TLSConfig || d.Proxy != backend.ProxyV2 ||
			d.XCLIENT != (p == starttls.SMTP) || d.IMAPID != (p == starttls.IMAP) {
			t.Errorf("%v: Dialer %+v", p, *d)
		}
		if res.User != "master@example.com" || res.AuthzID != "master@Example.com" ||
			string(res.Password) != "masterpw" || res.Pool != "" || res.NoLogin {
			t.Errorf("%v: got %+v", p, *res)
		}
	}
	if tmpl.Addr != "template:1" || tmpl.Protocol != starttls.SMTP || !tmpl.XCLIENT || !tmpl.IMAPID {
		t.Errorf("the template changed: %+v", *tmpl)
	}

	res := staticAuth(t, s, staticPlain("pct", "pw"))
	if res.User != "100%-pct-" || res.AuthzID != "pct" {
		t.Errorf("%% expansion without a domain: User %q AuthzID %q", res.User, res.AuthzID)
	}
	res = staticAuth(t, s, staticPlain("nl@example.com", "pw"))
	if !res.OK || !res.NoLogin || res.Pool != "smtp-trusting" || res.Backend != nil {
		t.Errorf("nologin: got %+v", *res)
	}

	// A nil Dialer template is the zero Dialer.
	s = staticParse(t, "u {PLAIN}pw host=10.0.0.1:143\n")
	res = staticAuth(t, s, staticPlain("u", "pw"))
	if d, ok := res.Backend.(*backend.Dialer); !ok || *d != (backend.Dialer{Addr: "10.0.0.1:143", Protocol: starttls.IMAP}) {
		t.Errorf("nil template: got %+v", res.Backend)
	}
}

func TestStaticStarAndExternal(t *testing.T) {
	s := staticParse(t, ""+
		"certonly@example.com * pool=p1\n"+
		"both@example.com {PLAIN}pw\n"+
		"*@certs.example * host=mx.certs.example:25\n"+
		"*@routing.example - pool=r\n")
	cert := &x509.Certificate{}
	ext := func(user, authz string, c *x509.Certificate) *auth.Request {
		return &auth.Request{Protocol: starttls.SMTP, Mechanism: auth.External, User: user, AuthzID: authz, ClientCert: c}
	}
	tests := []struct {
		name string
		req  *auth.Request
		ok   bool
	}{
		{"star refuses PLAIN", staticPlain("certonly@example.com", "*"), false},
		{"star refuses empty PLAIN", staticPlain("certonly@example.com", ""), false},
		{"star refuses LOGIN", &auth.Request{Mechanism: auth.Login, User: "certonly@example.com", Password: "*"}, false},
		{"star domain refuses PLAIN", staticPlain("x@certs.example", "*"), false},
		{"EXTERNAL with a star", ext("certonly@example.com", "", cert), true},
		{"EXTERNAL with a password", ext("both@example.com", "", cert), true},
		{"EXTERNAL domain case", ext("both@EXAMPLE.com", "", cert), true},
		{"EXTERNAL local case", ext("Both@example.com", "", cert), false},
		{"EXTERNAL via a star domain line", ext("anyone@certs.example", "", cert), true},
		{"EXTERNAL via a dash domain line", ext("anyone@routing.example", "", cert), false},
		{"EXTERNAL without a certificate", ext("certonly@example.com", "", nil), false},
		{"EXTERNAL unknown user", ext("nobody@example.com", "", cert), false},
		{"EXTERNAL empty user", ext("", "", cert), false},
		{"EXTERNAL authz itself", ext("both@example.com", "both@example.com", cert), true},
		{"EXTERNAL authz another", ext("both@example.com", "certonly@example.com", cert), false},
		{"PLAIN authz another", &auth.Request{Mechanism: auth.Plain, User: "both@example.com", Password: "pw", AuthzID: "certonly@example.com"}, false},
		{"PLAIN authz itself", &auth.Request{Mechanism: auth.Plain, User: "both@example.com", Password: "pw", AuthzID: "both@example.com"}, true},
		{"unknown mechanism", &auth.Request{Mechanism: "CRAM-MD5", User: "both@example.com", Password: "pw"}, false},
		{"empty mechanism", &auth.Request{User: "both@example.com", Password: "pw"}, false},
	}
	for _, tt := range tests {
		res := staticAuth(t, s, tt.req)
		if !tt.ok {
			staticRefused(t, tt.name, res)
		} else if !res.OK {
			t.Errorf("%s: refused (%+v)", tt.name, *res)
		}
	}
	if res := staticAuth(t, s, ext("certonly@example.com", "", cert)); res.Pool != "p1" {
		t.Errorf("EXTERNAL certonly: Pool %q", res.Pool)
	}
	res := staticAuth(t, s, ext("anyone@certs.example", "", cert))
	if d, ok := res.Backend.(*backend.Dialer); !ok || d.Addr != "mx.certs.example:25" || d.Protocol != starttls.SMTP {
		t.Errorf("EXTERNAL via domain line: Backend %+v", res.Backend)
	}
}

func TestStaticNone(t *testing.T) {
	s := staticParse(t, ""+
		"*@example.com {PLAIN}shared host=mx-a.internal:25 user=u pass=p nologin\n"+
		"*@example.net - pool=mx-b\n"+
		"vip@example.net {PLAIN}pw host=mx-vip.internal:25\n"+
		"solo@example.org * pool=solo\n")
	relay := func(rcpt string) *auth.Request {
		return &auth.Request{Protocol: starttls.SMTP, Mechanism: auth.None, Helo: "client.example", MailFrom: "from@elsewhere.example", RcptTo: rcpt}
	}
	tests := []struct {
		rcpt       string
		host, pool string // want; both empty: refused
	}{
		{"anyone@example.com", "mx-a.internal:25", ""},
		{"Anyone@EXAMPLE.COM", "mx-a.internal:25", ""},
		{"anyone@example.net", "", "mx-b"}, // a "-" domain line routes mail too
		{"vip@example.net", "mx-vip.internal:25", ""},
		{"vip@Example.Net", "mx-vip.internal:25", ""},
		{"solo@example.org", "", "solo"},
		{"other@example.org", "", ""},
		{"anyone@example.edu", "", ""},
		{"example.com", "", ""},
		{"anyone@", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		res := staticAuth(t, s, relay(tt.rcpt))
		if tt.host == "" && tt.pool == "" {
			want := auth.Result{Message: "<" + tt.rcpt + ">: Relay access denied", SMTPCode: "554 5.7.1"}
			if tt.rcpt == "" {
				want.Message = "Relay access denied"
			}
			if *res != want {
				t.Errorf("%q: got %+v, want %+v", tt.rcpt, *res, want)
			}
			continue
		}
		var host string
		if d, ok := res.Backend.(*backend.Dialer); ok {
			host = d.Addr
			if d.Protocol != starttls.SMTP {
				t.Errorf("%q: Protocol %v", tt.rcpt, d.Protocol)
			}
		}
		// Only the routing: the login keys do not apply to mail.
		if !res.OK || host != tt.host || res.Pool != tt.pool || res.User != "" || res.Password != "" ||
			res.AuthzID != "" || res.NoLogin || res.Message != "" {
			t.Errorf("%q: got %+v (host %q)", tt.rcpt, *res, host)
		}
	}

	// NONE is SMTP without a user only.
	req := relay("anyone@example.com")
	req.Protocol = starttls.IMAP
	if res := staticAuth(t, s, req); res.OK {
		t.Errorf("NONE over IMAP allowed")
	}
	req = relay("anyone@example.com")
	req.User = "anyone@example.com"
	if res := staticAuth(t, s, req); res.OK {
		t.Errorf("NONE with a user allowed")
	}
}

func TestStaticParseErrors(t *testing.T) {
	const secret = "Sup3rS3cretPassw0rd"
	sha := staticB64(staticSHA256(secret))
	tests := []struct {
		name string
		file string
		line int
	}{
		{"user only", "# c\n\n" + secret + "\n", 3},
		{"bare password", "u " + secret + "\n", 1},
		{"no closing brace", "u {PLAIN" + secret + "\n", 1},
		{"unknown scheme", "a {PLAIN}x\nu {" + secret + "}" + secret + "\n", 2},
		{"unknown scheme CRYPT", "u {CRYPT}" + secret + "\n", 1},
		{"unknown encoding", "u {PLAIN." + secret + "}" + secret + "\n", 1},
		{"empty plain", "u {PLAIN}\n", 1},
		{"empty plain hex", "u {PLAIN.HEX}\n", 1},
		{"bad hex", "u {SHA256.HEX}" + secret + "\n", 1},
		{"bad base64", "u {SHA256}" + secret + "!\n", 1},
		{"short SHA256", "u {SHA256}" + staticB64(staticSHA256(secret)[:31]) + "\n", 1},
		{"long SHA512", "u {SHA512}" + staticB64(append(staticSHA512(secret), 0)) + "\n", 1},
		{"SSHA256 without salt", "u {SSHA256}" + sha + "\n", 1},
		{"SSHA512 too short", "u {SSHA512}" + sha + "\n", 1},
		{"unknown key", "u {PLAIN}" + secret + " passwd=" + secret + "\n", 1},
		{"key without value", "u {PLAIN}" + secret + " pool=\n", 1},
		{"pass without value", "u {PLAIN}" + secret + " pass=\n", 1},
		{"duplicate key", "u {PLAIN}x pass=" + secret + " pass=" + secret + "x\n", 1},
		{"nologin with value", "u {PLAIN}x nologin=" + secret + "\n", 1},
		{"bad host", "u {PLAIN}" + secret + " host=" + secret + "\n", 1},
		{"host without port", "u {PLAIN}x host=imap.example\n", 1},
		{"host port 0", "u {PLAIN}x host=imap.example:0\n", 1},
		{"host port too big", "u {PLAIN}x host=imap.example:65536\n", 1},
		{"host empty host", "u {PLAIN}x host=:143\n", 1},
		{"pool and host", "u {PLAIN}x pool=a host=b:1\n", 1},
		{"bad percent", "u {PLAIN}x user=%x\n", 1},
		{"trailing percent", "u {PLAIN}x authz=a%\n", 1},
		{"empty local part", "@example.com {PLAIN}" + secret + "\n", 1},
		{"empty domain", "u@ {PLAIN}" + secret + "\n", 1},
		{"star alone", "* {PLAIN}" + secret + "\n", 1},
		{"empty domain line", "*@ {PLAIN}" + secret + "\n", 1},
		{"domain line with two @", "*@a@b {PLAIN}" + secret + "\n", 1},
		{"duplicate user", "u@x {PLAIN}a\n\nu@X {PLAIN}" + secret + "\n", 3},
		{"duplicate domain", "*@x {PLAIN}a\n*@X {PLAIN}" + secret + "\n", 2},
		{"dash without domain line", "a {PLAIN}x\nu@x.example -\n", 2},
		{"dash without domain", "u - pool=" + secret + "\n", 1},
		{"line too long", "a {PLAIN}x\n" + "u {PLAIN}" + strings.Repeat(secret, 4000) + "\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := auth.ParseStatic(strings.NewReader(tt.file))
			if err == nil {
				t.Fatalf("no error; parsed %v", s)
			}
			msg := err.Error()
			if want := fmt.Sprintf("line %d:", tt.line); !strings.Contains(msg, want) {
				t.Errorf("error %q does not name %q", msg, want)
			}
			for _, leak := range []string{secret, sha, "{PLAIN", "imap.example", "a@b"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q contains %q", msg, leak)
				}
			}
			t.Log(msg)
		})
	}
}

func TestStaticParseAccepts(t *testing.T) {
	file := "\ufeff# a comment\r\n" +
		"   # an indented comment\r\n" +
		"\t\r\n" +
		"u1@example.com\t{PLAIN}a#b   pool=p   \r\n" +
		"u2 {PLAIN}x nologin user=%% authz=%u@%d\n" +
		"u3 {PLAIN}x host=[::1]:143\n" +
		"u4 {PLAIN}x host=localhost:65535\n" +
		"*@example.com - pool=q\n" +
		"u5@example.com -\n" +
		"no-newline-at-end {PLAIN}y"
	// A UTF-8 byte order mark before the first line is skipped.
	s := staticParse(t, file)
	for _, c := range []struct{ user, pw string }{
		{"u1@example.com", "a#b"}, {"u2", "x"}, {"u3", "x"}, {"u4", "x"},
		{"no-newline-at-end", "y"},
	} {
		if !staticAuth(t, s, staticPlain(c.user, c.pw)).OK {
			t.Errorf("%s: refused", c.user)
		}
	}
	if got := s.String(); got != "auth.Static(6 users, 1 domains)" {
		t.Errorf("String() = %q", got)
	}
	// u5 has "-" on a "-" domain line: no password, EXTERNAL only.
	staticRefused(t, "u5", staticAuth(t, s, staticPlain("u5@example.com", "")))
}

func TestStaticNoSecretsPrinted(t *testing.T) {
	const secret = "Sup3rS3cretPassw0rd"
	hash := staticB64(staticSSHA256(secret, []byte("salt")))
	s := staticParse(t, "u {SSHA256}"+hash+" pass=backend-"+secret+"\nv {PLAIN}"+secret+"\n")
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, s)
		if strings.Contains(out, secret) || strings.Contains(out, hash) {
			t.Errorf("%s prints a secret: %s", f, out)
		}
	}
	res := staticAuth(t, s, staticPlain("u", secret))
	if out := fmt.Sprintf("%+v", *res); !res.OK || strings.Contains(out, secret) {
		t.Errorf("Result prints %s", out)
	}
	var nilStatic *auth.Static
	if nilStatic.String() != "auth.Static(nil)" {
		t.Errorf("nil String() = %q", nilStatic.String())
	}
}

func TestStaticLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "users")
	if err := os.WriteFile(good, []byte("u@example.com {PLAIN}pw pool=p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := auth.LoadStatic(good)
	if err != nil {
		t.Fatal(err)
	}
	if res := staticAuth(t, s, staticPlain("u@example.com", "pw")); !res.OK || res.Pool != "p" {
		t.Errorf("got %+v", *res)
	}

	bad := filepath.Join(dir, "bad-users")
	if err := os.WriteFile(bad, []byte("u@example.com {PLAIN}pw\nv {MD5}secretsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = auth.LoadStatic(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 2:") ||
		strings.Contains(err.Error(), "secretsecret") {
		t.Errorf("bad file: err %v", err)
	}

	_, err = auth.LoadStatic(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err %v", err)
	}
}

func TestStaticReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := auth.ParseStatic(staticErrAfter("u {PLAIN}x\n", boom))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "line 2:") {
		t.Errorf("read error: %v", err)
	}
}

// staticErrAfter reads s and then fails with err.
func staticErrAfter(s string, err error) *staticErrReader {
	return &staticErrReader{s: s, err: err}
}

type staticErrReader struct {
	s   string
	err error
}

func (r *staticErrReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, r.err
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

func TestStaticConcurrent(t *testing.T) {
	s := staticParse(t, ""+
		"*@example.com {SSHA512}"+staticB64(staticSSHA512("pw", []byte("salt")))+" host=imap-a:143 user=%n\n"+
		"a@example.com {PLAIN}apw pool=p\n")
	s.Dialer = &backend.Dialer{Security: starttls.STARTTLS}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				user := fmt.Sprintf("u%d-%d@example.com", i, j)
				res, err := s.Authenticate(context.Background(), staticPlain(user, "pw"))
				if err != nil || !res.OK || res.User != fmt.Sprintf("u%d-%d", i, j) {
					t.Errorf("%s: %+v %v", user, res, err)
					return
				}
				if res, _ := s.Authenticate(context.Background(), staticPlain("a@example.com", "bad")); res.OK {
					t.Errorf("a: wrong password allowed")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// The gateway's demo: two domains on two backends, in three lines.
func ExampleStatic() {
	users, err := auth.ParseStatic(strings.NewReader(`
*@example.com {PLAIN}demo host=imap-a.internal:143
*@example.net {PLAIN}demo host=imap-b.internal:143
boss@example.net {SSHA256}1xowkNV6cFpNsILxviVLS6bAA7Si4YK175NY3uXwQBJzYWx0 pool=vip
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	users.Dialer = &backend.Dialer{Security: starttls.STARTTLS} // the template for host=

	for _, login := range []struct{ user, password string }{
		{"alice@example.com", "demo"},
		{"bob@EXAMPLE.NET", "demo"},
		{"boss@example.net", "demo"},
		{"boss@example.net", "s3cret"},
		{"carol@example.org", "demo"},
	} {
		res, _ := users.Authenticate(context.Background(), &auth.Request{
			Protocol:  starttls.IMAP,
			Mechanism: auth.Plain,
			User:      login.user,
			Password:  auth.Secret(login.password),
		})
		switch {
		case !res.OK:
			fmt.Printf("%s: refused\n", login.user)
		case res.Pool != "":
			fmt.Printf("%s: pool %s\n", login.user, res.Pool)
		default:
			d := res.Backend.(*backend.Dialer)
			fmt.Printf("%s: %v backend %s\n", login.user, d.Protocol, d.Addr)
		}
	}
	// Output:
	// alice@example.com: imap backend imap-a.internal:143
	// bob@EXAMPLE.NET: imap backend imap-b.internal:143
	// boss@example.net: refused
	// boss@example.net: pool vip
	// carol@example.org: refused
}
