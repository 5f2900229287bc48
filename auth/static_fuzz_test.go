package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/starttls"
)

// staticVocabulary is every text a parse error is made of, file contents
// aside: a "secret" that is part of it is not a leak.
func staticVocabulary() string {
	return strings.Join(staticReasons[:], "\n") + "\nauth: users file line 0123456789: () "
}

// FuzzParseStatic parses arbitrary users files: no panic, an error is a
// *staticParseError whose text is built from its line numbers and reason
// alone, and no password field or pass= value appears in it. A file that
// parses is then asked to log in each of its lines' users.
func FuzzParseStatic(f *testing.F) {
	for _, seed := range []string{
		"",
		"# comment\n\n",
		"u@example.com {PLAIN}secret pool=p\n",
		"*@example.com {PLAIN}demo host=imap-a:143 user=%n authz=%u pass=x nologin\n",
		"*@example.net - pool=b\nbob@example.net -\nalice@example.net {SSHA256}1xowkNV6cFpNsILxviVLS6bAA7Si4YK175NY3uXwQBJzYWx0\n",
		"u {SHA256}XohImNooBHFR0OVvjcYpJ3NgPQ1qq73WKhHvch0VQtg=\n",
		"u {SHA512.HEX}b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86\n",
		"u {PLAIN.B64}cGFzcyB3b3Jk * -\n",
		"u {SSHA512}AAAA\n",
		"u {PLAIN}x host=[::1]:0\n",
		"u secretpassword\n",
		"u {secret}secret\n",
		"u {PLAIN}x pass=secret pass=secret\n",
		"u {PLAIN}x user=%q\n",
		"*@ - \n* -\n@x -\nx@ -\n",
		"\ufeffu {PLAIN}x\r\nu {PLAIN}y\r\n",
	} {
		f.Add(seed)
	}
	vocab := staticVocabulary()
	f.Fuzz(func(t *testing.T, file string) {
		s, err := ParseStatic(strings.NewReader(file))
		lines := strings.Split(file, "\n")
		if err != nil {
			var pe *staticParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v, want *staticParseError", err, err)
			}
			if pe.reason <= reasonOK || pe.reason >= reasonCount || pe.line < 1 || pe.line > len(lines)+1 || pe.err != nil || pe.file != "" {
				t.Fatalf("error %+v", *pe)
			}
			want := fmt.Sprintf("auth: users file line %d: %s", pe.line, staticReasons[pe.reason])
			if pe.first > 0 {
				want += fmt.Sprintf(" (line %d)", pe.first)
			}
			if err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
			for _, secret := range staticSecrets(lines) {
				if strings.Contains(err.Error(), secret) && !strings.Contains(vocab, secret) {
					t.Fatalf("error %q contains %q", err, secret)
				}
			}
			return
		}
		if strings.Contains(fmt.Sprintf("%v %+v %#v", s, s, s), "{") {
			t.Fatalf("a Static prints its contents")
		}
		for _, line := range lines {
			fields := staticFields(line)
			if len(fields) < 2 {
				continue
			}
			user, pw := fields[0], fields[1]
			if _, data, ok := strings.Cut(pw, "}"); ok {
				pw = data
			}
			ctx := context.Background()
			for _, req := range []*Request{
				{Protocol: starttls.IMAP, Mechanism: Plain, User: user, Password: Secret(pw)},
				{Protocol: starttls.POP3, Mechanism: Login, User: strings.ToUpper(user), Password: Secret(pw)},
				{Protocol: starttls.SMTP, Mechanism: External, User: user, ClientCert: &x509.Certificate{}},
				{Protocol: starttls.SMTP, Mechanism: None, RcptTo: strings.TrimPrefix(user, "*")},
				{Protocol: starttls.SMTP, Mechanism: None, RcptTo: "x" + strings.TrimPrefix(user, "*")},
			} {
				res, err := s.Authenticate(ctx, req)
				if err != nil || res == nil {
					t.Fatalf("Authenticate: %v %v", res, err)
				}
				if res.Backend != nil && !res.OK {
					t.Fatalf("a refusal with a Backend: %+v", *res)
				}
			}
		}
	})
}

// staticSecrets returns the password fields of the lines (and their data
// after a {SCHEME}) and the values of pass= keys, at least 4 bytes long.
func staticSecrets(lines []string) []string {
	var out []string
	add := func(s string) {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	for _, line := range lines {
		fields := staticFields(strings.TrimSuffix(line, "\r"))
		if len(fields) < 2 {
			continue
		}
		add(fields[1])
		if _, data, ok := strings.Cut(fields[1], "}"); ok {
			add(data)
		}
		for _, kv := range fields[2:] {
			if v, ok := strings.CutPrefix(kv, "pass="); ok {
				add(v)
			}
		}
	}
	return out
}
