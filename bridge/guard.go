package bridge

import (
	"io"
	"sync/atomic"
)

// Guard selects a STARTTLS guard for an IMAP or POP3 session: a light
// filter that keeps the session on the TLS the proxy already negotiated.
// SMTP sessions have theirs in SMTPInspector.
//
// After the handover the client speaks TLS with the proxy. A backend that
// offers STARTTLS on the port the proxy uses would advertise it again in
// later capability answers and accept a second STARTTLS inside the
// client's TLS, though RFC 9051 §6.2.1 and RFC 2595 §4 forbid offering it
// once TLS is active. A guard removes the offer and makes the backend
// refuse the command:
//
//   - GuardIMAP (RFC 9051): a client command whose name is STARTTLS is
//     renamed to XSTARTTLS-REFUSED-INSIDE-TLS, keeping its tag, so the
//     backend answers it with its own tagged BAD and replies stay in
//     order. STARTTLS and LOGINDISABLED are removed from untagged
//     CAPABILITY responses and from [CAPABILITY ...] response codes.
//     Literals ({n} from the server; {n} and {n+} from the client) are
//     skipped by count, so message data is never edited. A client's
//     synchronising literal counts only once the server has asked for it
//     with "+": if the server refuses the command instead (a tagged NO or
//     BAD), the client's next bytes are read as commands, and the client
//     direction forwards nothing more until the server has answered.
//   - GuardPOP3 (RFC 1939, RFC 2449, RFC 2595): a command whose keyword is
//     STLS is renamed to XSTLS-REFUSED-INSIDE-TLS, which the backend
//     answers -ERR. The guard keeps the pipelined commands in order
//     (RFC 2449) to know which responses are multi-line, and removes the
//     STLS line from the answers to CAPA; RETR and TOP bodies are passed
//     on untouched up to their terminating line.
//
// Both directions are copied through pooled buffers while a guard is on
// (no splice(2)); lines are examined where they lie in the read buffer and
// copied only when a line spans two reads or is edited. A line buffered
// across reads is bounded at 64 KiB; a longer one is passed on unfiltered.
//
// The capability filter fails open, the command rewrite does not: if the
// POP3 guard meets a response it did not expect (a response with no
// command outstanding, a status line that is neither +OK nor -ERR, an
// overlong status line, more than 4096 responses owed), it stops
// filtering responses for the rest of the session, while client STLS
// commands are still rewritten. The guards assume Join starts between
// commands and between responses, with the greeting already relayed, as
// starttls.Handover leaves a session.
type Guard int

const (
	// GuardNone adds no guard.
	GuardNone Guard = iota
	// GuardIMAP guards an IMAP session (RFC 9051, RFC 3501).
	GuardIMAP
	// GuardPOP3 guards a POP3 session (RFC 1939, RFC 2449, RFC 2595).
	GuardPOP3
)

// String returns "none", "imap" or "pop3".
func (g Guard) String() string {
	switch g {
	case GuardIMAP:
		return "imap"
	case GuardPOP3:
		return "pop3"
	}
	return "none"
}

// maxGuardLine bounds the bytes of one line a guard buffers while waiting
// for its end.
const maxGuardLine = 64 << 10

// maxTail is how many bytes of an overlong IMAP line are kept to find a
// literal announcement ("{" up to 20 digits "+}" CRLF) at its end.
const maxTail = 32

// setGuard installs the filters of opt.Guard on the two directions of s.
// An SMTP inspector takes precedence: it carries its own STARTTLS guard.
func (s *session) setGuard(opt *Options) {
	if opt.SMTP != nil {
		return
	}
	switch opt.Guard {
	case GuardIMAP:
		if s.done == nil {
			s.done = make(chan struct{}) // a client waiting for a literal's verdict watches it
		}
		sync := newIMAPSync(s.done)
		sync.bye = &s.bye
		s.dirs[0].filter = &imapGuard{out: outbuf{w: s.server}, sync: sync, client: true, start: true}
		s.dirs[1].filter = &imapGuard{out: outbuf{w: s.client}, sync: sync, start: true}
	case GuardPOP3:
		st := &pop3State{bye: &s.bye}
		s.pop3 = st
		s.dirs[0].filter = &pop3Commands{out: outbuf{w: s.server}, st: st}
		s.dirs[1].filter = &pop3Responses{out: outbuf{w: s.client}, st: st}
	}
}

// outbuf gathers what a guard forwards from one read: adjacent slices of
// the read buffer leave in a single Write, edited or reassembled lines are
// written at once in their place.
type outbuf struct {
	w       io.Writer
	pending []byte
	err     error
}

// pass queues b, a slice of the current read buffer, for writing.
func (o *outbuf) pass(b []byte) {
	if len(b) == 0 {
		return
	}
	if joined, ok := joinAdjacent(o.pending, b); ok {
		o.pending = joined
		return
	}
	o.flush()
	o.pending = b
}

// emit writes b now, after what is queued; b may be reused afterwards.
func (o *outbuf) emit(b []byte) {
	o.flush()
	if o.err == nil && len(b) > 0 {
		_, o.err = o.w.Write(b)
	}
}

// flush writes what is queued and returns the first write error.
func (o *outbuf) flush() error {
	if o.err == nil && len(o.pending) > 0 {
		_, o.err = o.w.Write(o.pending)
	}
	o.pending = nil
	return o.err
}

// put forwards a complete line: from the read buffer it is queued, from
// the held buffer (held set) it is written at once.
func (o *outbuf) put(line []byte, held bool) {
	if held {
		o.emit(line)
		return
	}
	o.pass(line)
}

// heldLine is the part of a line received in earlier reads.
type heldLine struct {
	buf  []byte
	long bool   // the line outgrew maxGuardLine; its rest passes through
	tail []byte // the last maxTail bytes of a long line
}

// join returns the complete line ending with end and whether it was
// assembled from held bytes. The held buffer is ready for reuse once the
// caller has written the line.
func (h *heldLine) join(end []byte) ([]byte, bool) {
	if len(h.buf) == 0 {
		return end, false
	}
	full := append(h.buf, end...)
	h.buf = full[:0]
	if cap(h.buf) > 4<<10 {
		h.buf = nil // do not keep a big buffer for a rare long line
	}
	return full, true
}

// release writes the held start of a line when its source has ended, so
// no byte is lost at end of file.
func (h *heldLine) release(o *outbuf) {
	o.emit(h.buf)
	h.buf = nil
}

// keepTail records the end of a long line.
func (h *heldLine) keepTail(b []byte) {
	h.tail = append(h.tail, b...)
	if n := len(h.tail); n > maxTail {
		h.tail = append(h.tail[:0], h.tail[n-maxTail:]...)
	}
}

// joinAdjacent returns a[:len(a)+len(b)] when b starts exactly where a ends
// in the same array (consecutive pieces of one read buffer), so the two
// leave in one write, and ok false otherwise.
func joinAdjacent(a, b []byte) (joined []byte, ok bool) {
	n := len(a)
	if n == 0 || len(b) == 0 || cap(a)-n < len(b) || &a[:n+1][n] != &b[0] {
		return a, false
	}
	return a[:n+len(b)], true
}

// goodbye records a client's goodbye (QUIT, LOGOUT) and the server's
// answer to it, for Stats.Goodbye.
type goodbye struct{ state atomic.Int32 } // 0, byeAsked, byeAnswered

const (
	byeAsked int32 = iota + 1
	byeAnswered
)

// asked records that the client's goodbye was forwarded.
func (b *goodbye) asked() { b.state.CompareAndSwap(0, byeAsked) }

// answered records the server's answer, if the goodbye was asked.
func (b *goodbye) answered() { b.state.CompareAndSwap(byeAsked, byeAnswered) }

// isAsked reports whether the client said goodbye.
func (b *goodbye) isAsked() bool { return b.state.Load() != 0 }

// said reports a goodbye asked and answered.
func (b *goodbye) said() bool { return b.state.Load() == byeAnswered }
