package sni

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
)

func FuzzParsePostfixMap(f *testing.F) {
	for _, s := range []string{
		"mail.example.com /etc/postfix/mail.key /etc/postfix/mail.crt\n",
		"# comment\n\nexample.com /rsa.pem,\n    /ecdsa.pem\n.example.net /n.pem\n",
		"*.example.org\t/o.pem\r\n",
		"bücher.example /b.pem\n",
		"  continuation\n",
		"dup.example.com /a\nDUP.example.com. /b\n",
		"a..b /x\n",
		"x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		lines, err := ParsePostfixMap(strings.NewReader(in))
		if err != nil {
			if _, ok := err.(*MapError); !ok {
				t.Fatalf("error %T %v; want *MapError", err, err)
			}
			return
		}
		// Round trip: what was parsed, written back in canonical form,
		// parses to the same entries.
		var b strings.Builder
		prev := 0
		for _, l := range lines {
			if l.Name == "" || len(l.Files) == 0 {
				t.Fatalf("entry %+v lacks a name or files", l)
			}
			if l.Line <= prev {
				t.Fatalf("line numbers not increasing: %d after %d", l.Line, prev)
			}
			prev = l.Line
			for _, f := range l.Files {
				if f == "" || strings.ContainsAny(f, ", \t\r\n") {
					t.Fatalf("file %q not split", f)
				}
			}
			fmt.Fprintf(&b, "%s %s\n", l.Name, strings.Join(l.Files, ","))
		}
		again, err := ParsePostfixMap(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("reparse of %q: %v", b.String(), err)
		}
		if len(again) != len(lines) {
			t.Fatalf("reparse gave %d entries; want %d", len(again), len(lines))
		}
		for i := range lines {
			if again[i].Name != lines[i].Name || strings.Join(again[i].Files, "\x00") != strings.Join(lines[i].Files, "\x00") {
				t.Fatalf("entry %d: reparse %+v; want %+v", i, again[i], lines[i])
			}
		}
	})
}

func FuzzLookup(f *testing.F) {
	var r Resolver
	require := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	require(r.Add(cert(f, "mail.example.com", "*.example.org", "xn--bcher-kva.example")))
	require(r.AddNames(cert(f, "ancestor"), ".example.net"))
	require(r.AddDefault(cert(f, "default.example.com")))
	for _, s := range []string{"mail.example.com", "MAIL.example.com.", "a.example.org", "a.b.example.net",
		"bücher.example", "127.0.0.1", "::1", "", ".", "..", "a..example.net", strings.Repeat("x.", 200), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, ok := r.Lookup(name)
		if ok != (c != nil) {
			t.Fatalf("Lookup(%q) = %v, %v", name, c, ok)
		}
		got, err := r.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil || got == nil {
			t.Fatalf("GetCertificate(%q) = %v, %v; want the match or the default", name, got, err)
		}
		if ok && got != c {
			t.Fatalf("GetCertificate(%q) disagrees with Lookup", name)
		}
		if isASCII(name) && !strings.HasSuffix(name, ".") {
			// Case and one trailing dot never change the answer.
			c2, ok2 := r.Lookup(strings.ToUpper(name) + ".")
			if ok2 != ok || c2 != c {
				t.Fatalf("Lookup(%q) = %v; Lookup of upper case with dot = %v", name, ok, ok2)
			}
		}
	})
}
