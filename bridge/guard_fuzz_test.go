package bridge

import (
	"bytes"
	"testing"
)

// runIMAPGuard passes data through a fresh guard in two writes split at
// split (modulo the length) and returns the output.
func runIMAPGuard(t *testing.T, data []byte, client bool, split int) []byte {
	var buf bytes.Buffer
	g := newIMAPGuard(&buf, client)
	if err := g.write(data[:split]); err != nil {
		t.Fatal(err)
	}
	if err := g.write(data[split:]); err != nil {
		t.Fatal(err)
	}
	g.closed()
	return buf.Bytes()
}

// FuzzIMAPGuard checks that the IMAP guard never panics, that where a
// read ends never changes the output, and that a stream without STARTTLS
// or LOGINDISABLED passes unchanged.
func FuzzIMAPGuard(f *testing.F) {
	f.Add([]byte(imapServerTranscript), false, uint16(40))
	f.Add([]byte(imapClientTranscript), true, uint16(7))
	f.Add([]byte("* 1 FETCH (BODY[] {3}\r\nabc)\r\n* CAPABILITY X\r\n"), false, uint16(20))
	f.Add([]byte("a LOGIN {2+}\r\nab {0}\r\n\r\nb NOOP\r\n"), true, uint16(3))
	f.Fuzz(func(t *testing.T, data []byte, client bool, split uint16) {
		if len(data) > maxGuardLine/2 {
			return
		}
		at := int(split) % (len(data) + 1)
		whole := runIMAPGuard(t, data, client, len(data))
		parts := runIMAPGuard(t, data, client, at)
		if !bytes.Equal(whole, parts) {
			t.Fatalf("split at %d: %q; in one write: %q", at, parts, whole)
		}
		if !containsFold(data, "STARTTLS") && !containsFold(data, "LOGINDISABLED") && !bytes.Equal(whole, data) {
			t.Fatalf("output %q; want the input %q", whole, data)
		}
	})
}

// runPOP3Guard feeds the commands, then the replies in two writes.
func runPOP3Guard(t *testing.T, commands, replies []byte, split int) (up, down []byte) {
	var ub, db bytes.Buffer
	c, r := newPOP3Guard(&ub, &db)
	for _, w := range []struct {
		f filter
		p []byte
	}{{c, commands}, {r, replies[:split]}, {r, replies[split:]}} {
		if err := w.f.write(w.p); err != nil {
			t.Fatal(err)
		}
	}
	c.closed()
	r.closed()
	return ub.Bytes(), db.Bytes()
}

// FuzzPOP3Guard checks that the POP3 guard never panics, that where a
// read ends never changes the output, and that commands without STLS and
// responses without STLS pass unchanged.
func FuzzPOP3Guard(f *testing.F) {
	f.Add([]byte(pop3Commands1), []byte(pop3Replies1), uint16(100))
	f.Add([]byte("AUTH X\r\nQQ==\r\nCAPA\r\n"), []byte("+ \r\n+OK\r\n+OK\r\nSTLS\r\n.\r\n"), uint16(5))
	f.Add([]byte("RETR 1\r\n"), []byte("+OK\r\n.STLS\r\n\r\n.\r\n"), uint16(9))
	f.Fuzz(func(t *testing.T, commands, replies []byte, split uint16) {
		if len(replies) > maxGuardLine/2 || len(commands) > maxGuardLine/2 {
			return
		}
		at := int(split) % (len(replies) + 1)
		up, whole := runPOP3Guard(t, commands, replies, len(replies))
		_, parts := runPOP3Guard(t, commands, replies, at)
		if !bytes.Equal(whole, parts) {
			t.Fatalf("split at %d: %q; in one write: %q", at, parts, whole)
		}
		if !containsFold(commands, "STLS") && !bytes.Equal(up, commands) {
			t.Fatalf("commands out %q; want the input %q", up, commands)
		}
		if !containsFold(replies, "STLS") && !bytes.Equal(whole, replies) {
			t.Fatalf("responses out %q; want the input %q", whole, replies)
		}
	})
}

// containsFold reports whether s contains the upper-case ASCII word w in
// any case.
func containsFold(s []byte, w string) bool {
	return bytes.Contains(bytes.ToUpper(s), []byte(w))
}
