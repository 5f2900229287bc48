package mailtest

import (
	"net"
	"strings"
	"sync"
)

// go-imap's imapmemserver keeps message flags lower-cased and answers
// FETCH with "\seen"; flags are case-insensitive (RFC 9051 §2.3.2), but
// clients such as mbsync compare system flags as written in the RFC and
// warn "unknown system flag", which breaks flag sync. The memory server
// gives no hook between its flag set and the response encoder, so the
// IMAP listeners rewrite the server's output on the way out: a system flag
// atom (a backslash and one of the names below, after "(" or a space and
// before ")" or a space) gets the RFC's casing. The rewrite keeps lengths,
// never touches literal contents ({n} CRLF and the n octets after it), and
// stops for good at a TLS record where a response line should start (a
// STARTTLS upgrade below the server: the rest is ciphertext).

// systemFlags maps a lower-cased system flag name to its RFC 9051 casing.
var systemFlags = map[string]string{
	"seen": "Seen", "answered": "Answered", "flagged": "Flagged",
	"deleted": "Deleted", "draft": "Draft", "recent": "Recent",
}

// maxFlagName is the longest name in systemFlags.
const maxFlagName = len("answered")

// flagCaseListener wraps each accepted connection in a flagCaseConn.
type flagCaseListener struct{ net.Listener }

// Accept returns the next connection, its output rewritten.
func (l flagCaseListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &flagCaseConn{Conn: c}, nil
}

// flagCaseConn is a server connection whose writes go through a
// flagCaser.
type flagCaseConn struct {
	net.Conn
	mu sync.Mutex
	fc flagCaser
}

// Write rewrites p and writes it. A possible flag atom cut at the end of p
// is held until the next Write, which the server always makes: an atom is
// followed by ")" or a space in the same response.
func (c *flagCaseConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.fc.rewrite(p)
	if len(out) == 0 {
		return len(p), nil
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flagCaser is the streaming state of the rewrite.
type flagCaser struct {
	held        []byte // a cut flag atom from the last call
	buf         []byte // the last call's output, reused
	prev        byte   // the last byte passed on
	midLine     bool   // false at the start of a response line
	passthrough bool   // TLS started below: pass everything on
	skip        int64  // literal octets still to pass on untouched
	lit         int    // 0 none, 1 in "{digits", 2 after "}", 3 after CR
	litLen      int64
}

// rewrite returns the bytes of held+p that can be passed on now, with
// system flags re-cased; a cut atom at the end stays held. The result is
// valid until the next call.
func (f *flagCaser) rewrite(p []byte) []byte {
	if f.passthrough && len(f.held) == 0 {
		return p
	}
	// The copy is reused from call to call: the caller is done with the
	// result before the next call (flagCaseConn's lock).
	buf := append(append(f.buf[:0], f.held...), p...)
	f.buf = buf
	f.held = f.held[:0]
	for i := 0; i < len(buf); i++ {
		if f.passthrough {
			return buf
		}
		if f.skip > 0 {
			n := min(f.skip, int64(len(buf)-i))
			f.skip -= n
			i += int(n) - 1
			f.prev, f.midLine = buf[i], true
			continue
		}
		b := buf[i]
		if !f.midLine && b == 0x16 { // a TLS handshake record
			f.passthrough = true
			return buf
		}
		if b == '\\' && (f.prev == ' ' || f.prev == '(') {
			end, cut := f.atom(buf, i)
			if cut {
				f.held = append(f.held, buf[i:]...)
				return buf[:i]
			}
			if end > i+1 {
				f.prev, f.midLine, f.lit = buf[end-1], true, 0
				i = end - 1
				continue
			}
		}
		f.step(b)
	}
	return buf
}

// atom re-cases the system flag starting at buf[i] (a backslash) in
// place. It returns the index after the atom's letters, and cut when the
// letters run to the end of buf and could still be a flag.
func (f *flagCaser) atom(buf []byte, i int) (end int, cut bool) {
	j := i + 1
	for j < len(buf) && isLetter(buf[j]) && j-i-1 <= maxFlagName {
		j++
	}
	if j == len(buf) && j-i-1 <= maxFlagName {
		return j, true
	}
	name := string(buf[i+1 : j])
	if canon, ok := systemFlags[strings.ToLower(name)]; ok && (buf[j] == ' ' || buf[j] == ')') {
		copy(buf[i+1:j], canon)
	}
	return j, false
}

// step advances the line and literal state over one byte.
func (f *flagCaser) step(b byte) {
	switch {
	case b == '{':
		f.lit, f.litLen = 1, 0
	case f.lit == 1 && b >= '0' && b <= '9' && f.litLen < 1<<40:
		f.litLen = f.litLen*10 + int64(b-'0')
	case f.lit == 1 && b == '+' && f.prev != '{': // a LITERAL+ form
	case f.lit == 1 && b == '}' && f.prev != '{':
		f.lit = 2
	case f.lit == 2 && b == '\r':
		f.lit = 3
	case f.lit == 3 && b == '\n':
		f.lit, f.skip = 0, f.litLen
	default:
		f.lit = 0
	}
	f.prev = b
	f.midLine = b != '\n' || f.skip > 0
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
