package starttls

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// FuzzSMTPReply checks the multi-line reply parser and the EHLO filter: a
// parsed reply renders back to itself, and the filtered EHLO reply is a
// valid reply with the same code and every line but STARTTLS.
func FuzzSMTPReply(f *testing.F) {
	for _, s := range []string{
		"250-h\r\n250-STARTTLS\r\n250 SIZE\r\n", "250-h\r\n250 STARTTLS\r\n", "220 hi\r\n",
		"250\r\n", "250-a\n250 b\n", "421-x\r\n421 y\r\n", "250-a\r\n251 b\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		r, err := readSMTPReply(func() ([]byte, error) { return mailwire.ReadLine(br, 512) })
		if err != nil {
			return
		}
		if !bytes.HasPrefix(in, r.Raw) {
			t.Fatalf("raw %q is not a prefix of the input", r.Raw)
		}
		again := mustSMTP(t, r.Render())
		if again.Code != r.Code || strings.Join(again.Lines, "\n") != strings.Join(r.Lines, "\n") {
			t.Fatalf("render round trip: %+v != %+v", again, r)
		}
		filtered := mustSMTP(t, r.DropExtension("STARTTLS"))
		if filtered.Code != r.Code || filtered.Lines[0] != r.Lines[0] {
			t.Fatalf("filter changed code or name line: %+v -> %+v", r, filtered)
		}
		want := 0
		for i, l := range r.Lines {
			if i == 0 || r.Code != 250 || !mailwire.KeywordIs([]byte(l), "STARTTLS") {
				want++
			}
		}
		if len(filtered.Lines) != want {
			t.Fatalf("filter kept %d lines of %q; want %d", len(filtered.Lines), r.Lines, want)
		}
		if r.Code == 250 && mailwire.HasKeyword(filtered.Lines[1:], "STARTTLS") {
			t.Fatalf("STARTTLS survived: %q", filtered.Lines)
		}
	})
}

func mustSMTP(t *testing.T, b []byte) mailwire.Reply {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(b))
	r, err := readSMTPReply(func() ([]byte, error) { return mailwire.ReadLine(br, 1<<20) })
	if err != nil {
		t.Fatalf("reparse %q: %v", b, err)
	}
	return r
}

// FuzzIMAPLine checks the IMAP response parser and the capability filters:
// no panic, offsets in range, filtered lines free of STARTTLS and
// LOGINDISABLED with tag and kind unchanged, stripped lines without a code.
func FuzzIMAPLine(f *testing.F) {
	for _, s := range []string{
		"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi", "* CAPABILITY IMAP4rev1 STARTTLS",
		"a1 OK [CAPABILITY x] done", "* OK [ALERT] x", "+ go", "* 3 EXISTS", "* OK [", "* OK []",
		"* BYE [UNAVAILABLE]", "a OK [CAPABILITY STARTTLS]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.ContainsAny(line, "\r\n") {
			return
		}
		r, err := parseIMAPLine(line)
		if err != nil {
			return
		}
		if r.code != "" && (r.codeStart < 0 || r.codeEnd > len(line) || r.codeStart >= r.codeEnd) {
			t.Fatalf("code offsets %d:%d out of %d", r.codeStart, r.codeEnd, len(line))
		}
		raw := append(append([]byte(nil), line...), "\r\n"...)
		out := filterIMAPLine(raw)
		fr, err := parseIMAPLine(mailwire.TrimEOL(out))
		if err != nil {
			t.Fatalf("filtered %q does not parse: %v", out, err)
		}
		if fr.tag != r.tag || fr.kind != r.kind || fr.code != r.code {
			t.Fatalf("filter changed the response: %q -> %q", raw, out)
		}
		if c := capsOf(fr); hasCap(c, "STARTTLS") || hasCap(c, "LOGINDISABLED") {
			t.Fatalf("filter kept a TLS capability: %q", out)
		}
		if r.code != "" {
			sr, err := parseIMAPLine(mailwire.TrimEOL(stripIMAPCode(raw)))
			if err != nil || sr.code != "" || sr.tag != r.tag || sr.kind != r.kind {
				t.Fatalf("strip left a code or broke %q: %+v %v", raw, sr, err)
			}
		}
	})
}

// FuzzPOP3Multi checks the multi-line reader and the CAPA filter: the
// filtered list reads back as the same texts without STLS.
func FuzzPOP3Multi(f *testing.F) {
	for _, s := range []string{"USER\r\nSTLS\r\n.\r\n", "..x\r\n.\r\n", ".\r\n", "STLS x\nSASL\n.\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		raw, texts, err := readPOP3Multi(func() ([]byte, error) { return mailwire.ReadLine(br, 512) })
		if err != nil {
			return
		}
		br2 := bufio.NewReader(bytes.NewReader(mailwire.DropSTLS(raw)))
		_, again, err := readPOP3Multi(func() ([]byte, error) { return mailwire.ReadLine(br2, 512) })
		if err != nil {
			t.Fatalf("filtered list does not parse: %v", err)
		}
		var want []string
		for _, tx := range texts {
			if !mailwire.KeywordIs([]byte(tx), "STLS") {
				want = append(want, tx)
			}
		}
		if strings.Join(again, "\n") != strings.Join(want, "\n") || len(again) != len(want) {
			t.Fatalf("got %q; want %q", again, want)
		}
	})
}

// FuzzUpgrade feeds arbitrary backend bytes to Client.Upgrade over net.Pipe:
// it must never panic and never succeed, since no TLS server is there.
func FuzzUpgrade(f *testing.F) {
	f.Add(uint8(0), []byte("220 hi\r\n250-h\r\n250 STARTTLS\r\n220 go\r\n"))
	f.Add(uint8(1), []byte("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\nA2 OK go\r\n"))
	f.Add(uint8(2), []byte("+OK\r\n+OK\r\nSTLS\r\n.\r\n+OK\r\n"))
	f.Add(uint8(1), []byte("* OK hi\r\n* CAPABILITY STARTTLS\r\nA1 OK\r\nA2 OK\r\n\x16\x03\x01"))
	f.Fuzz(func(t *testing.T, proto uint8, script []byte) {
		a, b := net.Pipe()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // backend: talk, then hang up
			defer wg.Done()
			b.Write(script)
			b.Close()
		}()
		go func() { // drain what the client writes
			defer wg.Done()
			io.Copy(io.Discard, b)
		}()
		c := &Client{Protocol: Protocol(proto % 3), Timeout: 5 * time.Second,
			TLSConfig: &tls.Config{ServerName: "mail.test"}}
		up, err := c.Upgrade(context.Background(), a)
		if err == nil {
			up.Conn.Close()
			t.Fatal("Upgrade succeeded without a TLS server")
		}
		a.Close()
		wg.Wait()
	})
}
