package bridge

import (
	"bytes"
)

// imapRefused replaces the command name of a client STARTTLS. It does not
// start with "STARTTLS", so no server matching command names by prefix
// takes it for one; any server answers it BAD.
const imapRefused = "XSTARTTLS-REFUSED-INSIDE-TLS"

// imapGuard is one direction of GuardIMAP. From the client it renames
// STARTTLS commands; from the server it removes STARTTLS and LOGINDISABLED
// from capability lists. It splits the stream into lines and skips
// literals by count: a line ending in "{n}" (and, from the client, "{n+}")
// is followed by n bytes of data and then the rest of the same command or
// response. It runs on one copier goroutine only.
type imapGuard struct {
	out    outbuf
	skip   int64 // literal bytes still to pass through
	held   heldLine
	client bool // client-to-server direction
	start  bool // the next line begins a command or response
	noLit  bool // the current long line is a status response: no literal
}

func (g *imapGuard) write(p []byte) error {
	for len(p) > 0 && g.out.err == nil {
		if g.skip > 0 {
			n := int(min(g.skip, int64(len(p))))
			g.out.pass(p[:n])
			p = p[n:]
			g.skip -= int64(n)
			continue
		}
		j := bytes.IndexByte(p, '\n')
		if j < 0 {
			g.partial(p)
			break
		}
		g.line(p[:j+1])
		p = p[j+1:]
	}
	return g.out.flush()
}

// closed passes on the start of a line the source ended in.
func (g *imapGuard) closed() { g.held.release(&g.out) }

// partial keeps the start of a line that continues in a later read. A line
// that outgrows maxGuardLine is passed on as it is (after renaming a
// client STARTTLS in its head), keeping only its tail for a literal.
func (g *imapGuard) partial(p []byte) {
	h := &g.held
	if h.long {
		g.out.pass(p)
		h.keepTail(p)
		return
	}
	if len(h.buf)+len(p) <= maxGuardLine {
		h.buf = append(h.buf, p...)
		return
	}
	head := append(h.buf, p...)
	g.noLit = false
	if g.start && g.client {
		if r := rewriteIMAPCommand(head); r != nil {
			head = r
		}
	} else if g.start {
		_, g.noLit = filterIMAPResponse(head)
	}
	g.out.emit(head)
	h.buf, h.long = nil, true
	h.keepTail(head)
}

// line handles the end of a line: the whole line, or the rest of a long one.
func (g *imapGuard) line(end []byte) {
	h := &g.held
	if h.long {
		g.out.pass(end)
		h.keepTail(end)
		h.long = false
		g.after(h.tail, g.noLit)
		h.tail = h.tail[:0]
		return
	}
	full, held := h.join(end)
	noLit := false
	if g.start {
		var r []byte
		if g.client {
			r = rewriteIMAPCommand(full)
		} else {
			r, noLit = filterIMAPResponse(full)
		}
		if r != nil {
			full, held = r, true
		}
	}
	g.out.put(full, held)
	g.after(full, noLit)
}

// after sets what follows line: literal data, or a new command or response.
func (g *imapGuard) after(line []byte, noLit bool) {
	if n, ok := imapLiteral(line, g.client); ok && !noLit {
		g.skip, g.start = n, false
		return
	}
	g.start = true
}

// imapLiteral returns the size of the literal announced at the end of line
// ("{n}", also "{n+}" when plus is set) and whether there is one.
func imapLiteral(line []byte, plus bool) (int64, bool) {
	s := lineEnd(line)
	i := len(s) - 1
	if i < 2 || s[i] != '}' {
		return 0, false
	}
	i--
	if plus && s[i] == '+' {
		i--
	}
	end := i + 1
	for i >= 0 && s[i] >= '0' && s[i] <= '9' {
		i--
	}
	if i < 0 || s[i] != '{' || i+1 == end {
		return 0, false
	}
	var n int64
	for _, c := range s[i+1 : end] {
		if n > (1<<62)/10 {
			return 0, false // no server takes it: not a literal
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// rewriteIMAPCommand returns a copy of a command line whose name is
// STARTTLS with the name replaced by imapRefused, or nil.
func rewriteIMAPCommand(line []byte) []byte {
	tag, i := word(line, 0)
	if len(tag) == 0 || i >= len(line) || line[i] != ' ' {
		return nil
	}
	name, j := word(line, i+1)
	if !bytes.EqualFold(name, []byte("STARTTLS")) {
		return nil
	}
	return replaceWord(line, i+1, j, imapRefused)
}

// capCode opens a CAPABILITY response code after a status word.
var capCode = []byte(" [CAPABILITY")

// filterIMAPResponse returns a copy of the first line of a response
// without STARTTLS and LOGINDISABLED in its capability list, or nil when
// there is nothing to remove. status reports a status response (OK, NO,
// BAD, BYE, PREAUTH), a continuation request or a CAPABILITY response:
// their text holds no literal, whatever it ends with.
func filterIMAPResponse(line []byte) (edited []byte, status bool) {
	tag, i := word(line, 0)
	if len(tag) == 1 && tag[0] == '+' {
		return nil, true
	}
	if i >= len(line) || line[i] != ' ' {
		return nil, false
	}
	name, j := word(line, i+1)
	if len(tag) == 1 && tag[0] == '*' && bytes.EqualFold(name, []byte("CAPABILITY")) {
		return dropAtoms(line, j, len(lineEnd(line))), true
	}
	if !isStatusWord(name) {
		return nil, false
	}
	rest := line[j:]
	n := len(capCode)
	if len(rest) <= n || !bytes.EqualFold(rest[:n], capCode) || (rest[n] != ' ' && rest[n] != ']') {
		return nil, true
	}
	k := bytes.IndexByte(rest, ']')
	if k < 0 {
		return nil, true
	}
	return dropAtoms(line, j+n, j+k), true
}

func isStatusWord(w []byte) bool {
	for _, s := range []string{"OK", "NO", "BAD", "BYE", "PREAUTH"} {
		if bytes.EqualFold(w, []byte(s)) {
			return true
		}
	}
	return false
}

// dropAtoms returns a copy of line with the space-separated atoms
// STARTTLS and LOGINDISABLED removed from line[from:to], or nil if there
// are none.
func dropAtoms(line []byte, from, to int) []byte {
	region := line[from:to]
	if !containsFold(region, "STARTTLS") && !containsFold(region, "LOGINDISABLED") {
		return nil
	}
	out := make([]byte, 0, len(line))
	out = append(out, line[:from]...)
	dropped := false
	for _, a := range bytes.Split(region, []byte(" ")) {
		switch {
		case len(a) == 0:
		case bytes.EqualFold(a, []byte("STARTTLS")), bytes.EqualFold(a, []byte("LOGINDISABLED")):
			dropped = true
		default:
			out = append(out, ' ')
			out = append(out, a...)
		}
	}
	if !dropped {
		return nil
	}
	return append(out, line[to:]...)
}

// containsFold reports whether s contains the upper-case ASCII word w in
// any case.
func containsFold(s []byte, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if bytes.EqualFold(s[i:i+len(w)], []byte(w)) {
			return true
		}
	}
	return false
}

var _ filter = (*imapGuard)(nil)
