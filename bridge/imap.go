package bridge

import (
	"bytes"

	"github.com/mailedge/mailedge/internal/mailwire"
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
//
// A synchronising literal from the client ("{n}") is data only once the
// server has asked for it with a continuation request (RFC 9051 §4.3,
// §7.5); a server that answers the command with a tagged NO or BAD instead
// never reads it, and the client's next bytes are a new command. With sync
// set (as in a session) the client direction forwards the announcing line,
// then waits for the server direction's verdict before it reads on, as the
// SMTP inspector waits for the answer to DATA.
type imapGuard struct {
	out    outbuf
	skip   int64 // literal bytes still to pass through
	held   heldLine
	sync   *imapSync // shared by the two directions; nil: literals counted at once
	client bool      // client-to-server direction
	start  bool      // the next line begins a command or response
	noLit  bool      // the current long line is a status response: no literal
}

func (g *imapGuard) write(p []byte) error {
	for len(p) > 0 && g.out.err == nil {
		if g.client && g.sync.owed() {
			if err := g.awaitVerdict(); err != nil {
				return err
			}
			continue
		}
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

// closed passes on the start of a line the source ended in; the server
// direction's end also ends any wait for its verdict.
func (g *imapGuard) closed() {
	g.held.release(&g.out)
	if !g.client && g.sync != nil {
		g.sync.serverEnded()
	}
}

// awaitVerdict forwards what is queued (the line that announced the
// literal) and waits for the server's answer to it: the literal's bytes
// follow if it asked for them, a new command otherwise.
func (g *imapGuard) awaitVerdict() error {
	if err := g.out.flush(); err != nil {
		return err
	}
	size, send, err := g.sync.await()
	if err != nil {
		return err
	}
	if send {
		g.skip, g.start = size, false
	} else {
		g.start = true
	}
	return nil
}

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
		if g.sync != nil {
			g.sync.command(head)
		}
		if r := rewriteIMAPCommand(head); r != nil {
			head = r
		}
	} else if g.start {
		_, g.noLit = filterIMAPResponse(head)
		g.verdict(head)
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
			g.goodbye(full)
		} else {
			r, noLit = filterIMAPResponse(full)
			g.verdict(full)
			g.goodbye(full)
		}
		if r != nil {
			full, held = r, true
		}
	}
	if g.client && g.start && g.sync != nil {
		g.sync.command(full)
	}
	g.out.put(full, held)
	g.after(full, noLit)
}

// goodbye notes a client's LOGOUT, and the server's BYE after it.
func (g *imapGuard) goodbye(line []byte) {
	if g.sync == nil || g.sync.bye == nil {
		return
	}
	if g.client {
		if _, name, _ := mailwire.SplitCommand(line); bytes.EqualFold(name, []byte("LOGOUT")) {
			g.sync.bye.asked()
		}
		return
	}
	if g.sync.bye.isAsked() && len(line) >= 5 && bytes.EqualFold(line[:5], []byte("* BYE")) {
		g.sync.bye.answered()
	}
}

// after sets what follows line: literal data, a wait for the server's
// verdict on a synchronising literal, or a new command or response.
func (g *imapGuard) after(line []byte, noLit bool) {
	lit, ok := mailwire.ParseLiteral(line)
	switch {
	case !ok || noLit || lit.NonSync && !g.client:
		g.start = true
	case g.client && !lit.NonSync && g.sync != nil && g.sync.announce(lit.Size):
		g.start = false
	default:
		g.skip, g.start = lit.Size, false
	}
}

// verdict passes the server's answer to a literal the client announced.
func (g *imapGuard) verdict(line []byte) {
	if g.sync != nil && g.sync.open.Load() {
		g.sync.answer(line)
	}
}

// imapLiteral returns the size of the literal announced at the end of line
// and whether there is one; "{n+}" counts only from the client (plus set),
// servers never send one.
func imapLiteral(line []byte, plus bool) (int64, bool) {
	lit, ok := mailwire.ParseLiteral(line)
	if !ok || lit.NonSync && !plus {
		return 0, false
	}
	return lit.Size, true
}

// rewriteIMAPCommand returns a copy of a command line whose name is
// STARTTLS with the name replaced by imapRefused, or nil.
func rewriteIMAPCommand(line []byte) []byte {
	tag, name, end := mailwire.SplitCommand(line)
	if len(tag) == 0 || !bytes.EqualFold(name, []byte("STARTTLS")) {
		return nil
	}
	return mailwire.ReplaceSpan(line, end-len(name), end, imapRefused)
}

// filterIMAPResponse returns a copy of the first line of a response
// without STARTTLS and LOGINDISABLED in its capability list, or nil when
// there is nothing to remove. status reports a response whose text holds
// no literal, whatever it ends with (mailwire.Response.NoLiteral).
func filterIMAPResponse(line []byte) (edited []byte, status bool) {
	return mailwire.DropTLSCapabilities(line)
}

var _ filter = (*imapGuard)(nil)
