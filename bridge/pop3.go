package bridge

import (
	"bytes"
	"sync"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// pop3Refused replaces the keyword of a client STLS command; the backend
// answers it -ERR.
const pop3Refused = "XSTLS-REFUSED-INSIDE-TLS"

// maxPOP3Owed bounds the responses the POP3 guard tracks; a client that
// pipelines further puts the guard out of step (it stops filtering).
const maxPOP3Owed = 4096

// pop3Kind is the response a POP3 command gets when it succeeds.
type pop3Kind uint8

const (
	pop3Single pop3Kind = iota // one status line
	pop3Multi                  // +OK, then lines up to "." (RETR, TOP, LIST, UIDL)
	pop3Capa                   // +OK, then capability lines up to "."
	pop3Auth                   // "+ " continuations, then +OK or -ERR
	pop3Quit                   // QUIT's status line: the goodbye's answer
)

// pop3State is what the two directions of GuardPOP3 share: the kinds of
// the responses owed, in command order (RFC 2449 pipelining), and whether
// the client is in a SASL exchange.
type pop3State struct {
	bye       *goodbye // the session's; nil in tests that build a guard alone
	mu        sync.Mutex
	owed      []pop3Kind
	sasl      bool // AUTH with a mechanism is under way: lines are SASL responses
	outOfStep bool // responses are passed on unfiltered for good
}

// push records a command's response kind; during a SASL exchange the line
// is a SASL response, not a command.
func (s *pop3State) push(k pop3Kind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.outOfStep || s.sasl:
	case len(s.owed) >= maxPOP3Owed:
		s.outOfStep, s.owed = true, nil
	default:
		s.owed = append(s.owed, k)
		s.sasl = k == pop3Auth
	}
}

// head returns the kind of the next response owed.
func (s *pop3State) head() (pop3Kind, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outOfStep || len(s.owed) == 0 {
		return 0, false
	}
	return s.owed[0], true
}

// pop removes the head; an AUTH exchange ends with it.
func (s *pop3State) pop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.owed) > 0 {
		if s.owed[0] == pop3Auth {
			s.sasl = false
		}
		s.owed = s.owed[1:]
		if len(s.owed) == 0 {
			s.owed = s.owed[:0:0] // let the array go
		}
	}
}

func (s *pop3State) giveUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outOfStep, s.owed, s.sasl = true, nil, false
}

func (s *pop3State) lost() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outOfStep
}

// pop3Commands is the client-to-server side of GuardPOP3.
type pop3Commands struct {
	out  outbuf
	st   *pop3State
	held heldLine
}

func (g *pop3Commands) write(p []byte) error {
	for len(p) > 0 && g.out.err == nil {
		j := bytes.IndexByte(p, '\n')
		if j < 0 {
			g.partial(p)
			break
		}
		if g.held.long {
			g.out.pass(p[:j+1])
			g.held.long = false
		} else {
			full, held := g.held.join(p[:j+1])
			g.command(full, held)
		}
		p = p[j+1:]
	}
	return g.out.flush()
}

// partial keeps the start of a command line; an overlong one is handled
// by its head (the keyword is all that matters) and passed on.
func (g *pop3Commands) partial(p []byte) {
	h := &g.held
	switch {
	case h.long:
		g.out.pass(p)
	case len(h.buf)+len(p) <= maxGuardLine:
		h.buf = append(h.buf, p...)
	default:
		head := append(h.buf, p...)
		h.buf, h.long = nil, true
		g.command(head, true)
	}
}

// command records the response the line will get, then renames STLS and
// forwards the line. The record comes first: once the line is written the
// server may answer before this goroutine runs again.
func (g *pop3Commands) command(line []byte, held bool) {
	verb, i := mailwire.Word(line, 0)
	kind := pop3KindOf(verb, len(bytes.TrimSpace(line[i:])) > 0)
	if kind == pop3Quit && g.st.bye != nil {
		g.st.bye.asked()
	}
	g.st.push(kind)
	if bytes.EqualFold(verb, []byte("STLS")) {
		line, held = mailwire.ReplaceSpan(line, 0, i, pop3Refused), true
	}
	g.out.put(line, held)
}

// pop3KindOf returns the response kind of a command keyword, given whether
// it has arguments.
func pop3KindOf(verb []byte, args bool) pop3Kind {
	is := func(s string) bool { return bytes.EqualFold(verb, []byte(s)) }
	switch {
	case is("CAPA"):
		return pop3Capa
	case is("QUIT"):
		return pop3Quit
	case is("RETR"), is("TOP"):
		return pop3Multi
	case is("LIST"), is("UIDL"):
		if !args {
			return pop3Multi
		}
	case is("AUTH"):
		if !args {
			return pop3Multi // the mechanism list many servers give
		}
		return pop3Auth
	}
	return pop3Single
}

// closed passes on the start of a line the client ended in.
func (g *pop3Commands) closed() { g.held.release(&g.out) }

// pop3Responses is the server-to-client side of GuardPOP3.
type pop3Responses struct {
	out  outbuf
	st   *pop3State
	held heldLine
	capa bool  // inside the lines of a CAPA response
	body bool  // inside a multi-line response passed on untouched
	scan uint8 // scanData state of the body
}

func (g *pop3Responses) write(p []byte) error {
	for len(p) > 0 && g.out.err == nil {
		if g.body {
			end := scanData(&g.scan, p)
			if end < 0 {
				g.out.pass(p)
				break
			}
			g.out.pass(p[:end])
			p, g.body = p[end:], false
			continue
		}
		if g.st.lost() {
			g.out.pass(p)
			break
		}
		j := bytes.IndexByte(p, '\n')
		if j < 0 {
			g.partial(p)
			break
		}
		full, held := g.held.join(p[:j+1])
		g.line(full, held)
		p = p[j+1:]
	}
	return g.out.flush()
}

// partial keeps the start of a status or capability line. These are short
// (RFC 2449: 512 octets); one past maxGuardLine puts the guard out of step.
func (g *pop3Responses) partial(p []byte) {
	if len(g.held.buf)+len(p) <= maxGuardLine {
		g.held.buf = append(g.held.buf, p...)
		return
	}
	g.st.giveUp()
	g.out.emit(g.held.buf)
	g.held.buf = nil
	g.out.pass(p)
}

// line handles one complete status or capability line.
func (g *pop3Responses) line(line []byte, held bool) {
	if g.capa {
		switch {
		case mailwire.MultiEnd(line):
			g.capa = false
		case mailwire.IsSTLSLine(line):
			return // dropped
		}
		g.out.put(line, held)
		return
	}
	g.status(line)
	g.out.put(line, held)
}

// status matches a status line with the response owed and sets what
// follows it. State changes before the line is written, so the client's
// next command is read in the state this response leaves.
func (g *pop3Responses) status(line []byte) {
	kind, ok := g.st.head()
	if !ok || len(line) < 2 {
		g.st.giveUp()
		return
	}
	switch {
	case mailwire.POP3Status(line) > 0:
		g.st.pop()
		switch kind {
		case pop3Quit:
			if g.st.bye != nil {
				g.st.bye.answered()
			}
		case pop3Multi:
			g.body, g.scan = true, dataLineStart
		case pop3Capa:
			g.capa = true
		}
	case mailwire.POP3Status(line) < 0:
		g.st.pop()
	case kind == pop3Auth && line[0] == '+' && (line[1] == ' ' || line[1] == '\r' || line[1] == '\n'):
		// a SASL challenge: the exchange goes on
	default:
		g.st.giveUp()
	}
}

// closed passes on the start of a line the server ended in.
func (g *pop3Responses) closed() { g.held.release(&g.out) }

var (
	_ filter = (*pop3Commands)(nil)
	_ filter = (*pop3Responses)(nil)
)
