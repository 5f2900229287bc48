package bridge

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// maxPending bounds the replies an inspected session may owe the client;
// a client that pipelines further waits until some arrive.
const maxPending = 1024

// entry is one reply the client is owed, in command order: either the
// server's reply to a forwarded command or a local reply.
type entry struct {
	local []byte      // the local reply; nil for a forwarded command
	cmd   SMTPCommand // the command, for SMTPInspector.Reply
	rcpt  bool        // count a recipient on 2xx
	end   bool        // count a message on 2xx
	gate  chan int    // if non-nil, receives the reply code
}

// smtpSession is the inspector state of one Join, shared by the two
// copiers: the client-to-server side pushes entries, the server-to-client
// side pops them as complete replies arrive.
type smtpSession struct {
	ins            *SMTPInspector
	client, server io.Writer
	done           <-chan struct{} // closed when the session is torn down

	mu          sync.Mutex // guards fifo and repliesDone
	fifo        []*entry
	repliesDone bool
	noReplies   chan struct{} // closed when the server side ends
	space       chan struct{} // signalled when fifo shrinks

	// wmu serialises writes to the client. Entries are popped and their
	// replies written while it is held, so replies leave in FIFO order.
	wmu      sync.Mutex
	midReply bool // a server reply is partly written; guarded by wmu

	commands *commandFilter
	replies  *replyFilter
	bye      *goodbye // the session's; nil in tests that build one alone

	nCommands, nMessages, nRecipients, nRefused, nRcptRefused atomic.Int64
	phase                                                     atomic.Int32 // for SMTPInspector.Timeouts
	onPhase                                                   func()       // the session's rearm; nil in tests that build one alone

	beforeWait func() // test hook: runs before waiting for a gated reply
}

func newSMTPSession(ins *SMTPInspector, client, server io.Writer, done <-chan struct{}) *smtpSession {
	s := &smtpSession{
		ins: ins, client: client, server: server, done: done,
		noReplies: make(chan struct{}),
		space:     make(chan struct{}, 1),
	}
	if ins.AwaitGreeting {
		s.fifo = append(s.fifo, &entry{cmd: SMTPCommand{Verb: ""}})
	}
	s.commands = &commandFilter{s: s, max: ins.maxLine()}
	s.replies = &replyFilter{s: s}
	return s
}

func (s *smtpSession) stats() SMTPStats {
	return SMTPStats{
		Commands:          s.nCommands.Load(),
		Messages:          s.nMessages.Load(),
		Recipients:        s.nRecipients.Load(),
		Refused:           s.nRefused.Load(),
		RecipientsRefused: s.nRcptRefused.Load(),
	}
}

// push appends e, waiting while maxPending replies are owed. It reports
// false when the session or the server side ended meanwhile.
func (s *smtpSession) push(e *entry) bool {
	s.mu.Lock()
	for len(s.fifo) >= maxPending && !s.repliesDone {
		s.mu.Unlock()
		select {
		case <-s.space:
		case <-s.noReplies:
		case <-s.done:
			return false
		}
		s.mu.Lock()
	}
	s.fifo = append(s.fifo, e)
	s.mu.Unlock()
	return true
}

// local queues a reply of the inspector's own and writes it at once if no
// server reply is owed before it.
func (s *smtpSession) local(reply []byte) error {
	s.nRefused.Add(1)
	if !s.push(&entry{local: reply}) {
		return net.ErrClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.midReply {
		return nil // the server side flushes it at the reply's end
	}
	return s.writeLocals(s.popLocals())
}

// popLocals removes the local replies at the head of the FIFO. The caller
// holds wmu and writes them before releasing it.
func (s *smtpSession) popLocals() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for len(s.fifo) > 0 && s.fifo[0].local != nil && !s.repliesDone {
		out = append(out, s.fifo[0].local)
		s.fifo[0] = nil
		s.fifo = s.fifo[1:]
	}
	if len(out) > 0 {
		s.signalSpace()
	}
	return out
}

// popForwarded removes the head entry if it waits for a server reply, and
// returns nil for an unsolicited reply (a greeting, a 421 shutdown notice).
func (s *smtpSession) popForwarded() *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fifo) == 0 || s.fifo[0].local != nil {
		return nil
	}
	e := s.fifo[0]
	s.fifo[0] = nil
	s.fifo = s.fifo[1:]
	s.signalSpace()
	return e
}

func (s *smtpSession) signalSpace() {
	select {
	case s.space <- struct{}{}:
	default:
	}
}

func (s *smtpSession) writeLocals(locals [][]byte) error {
	for _, r := range locals {
		if _, err := s.client.Write(r); err != nil {
			return err
		}
	}
	return nil
}

// answered records the server's reply code for a forwarded command.
func (s *smtpSession) answered(e *entry, code int) {
	if e.end {
		s.setPhase(phaseCommand) // the end of data is answered
	}
	if code >= 200 && code < 300 {
		if e.rcpt {
			s.nRecipients.Add(1)
		}
		if e.end {
			s.nMessages.Add(1)
		}
		if s.bye != nil && strings.EqualFold(e.cmd.Verb, "QUIT") {
			s.bye.asked()
			s.bye.answered()
		}
	} else if e.rcpt && code >= 400 {
		s.nRcptRefused.Add(1)
	}
	if e.gate != nil {
		e.gate <- code
	}
	if s.ins.Reply != nil {
		s.ins.Reply(e.cmd, code)
	}
}

// await waits for the reply code of a gated entry: 0 if the server side
// ended first, and an error if the session is torn down.
func (s *smtpSession) await(e *entry) (int, error) {
	if s.beforeWait != nil {
		s.beforeWait()
	}
	select {
	case code := <-e.gate:
		return code, nil
	case <-s.noReplies:
		select {
		case code := <-e.gate:
			return code, nil
		default:
			return 0, nil
		}
	case <-s.done:
		return 0, net.ErrClosed
	}
}

// serverEnded is called once when the server-to-client side stops: owed
// replies will never come, and local replies queued behind them are dropped.
func (s *smtpSession) serverEnded() {
	s.mu.Lock()
	pending := s.fifo
	s.fifo = nil
	s.repliesDone = true
	s.mu.Unlock()
	close(s.noReplies)
	for _, e := range pending {
		if e.local == nil && s.ins.Reply != nil {
			s.ins.Reply(e.cmd, 0)
		}
	}
}

// replyFilter is the server-to-client side: it passes replies through and
// finds where each complete reply ends (the line whose code is followed by
// a space rather than "-"), so local replies are written exactly there.
// A reply to EHLO is held until complete and passed on without STARTTLS:
// the client is past its TLS handover, and the handover filtered only the
// first EHLO answer (RFC 3207 §4.2: STARTTLS is not offered after TLS).
type replyFilter struct {
	s       *smtpSession
	lineLen int     // bytes seen of the current line
	head    [4]byte // its first bytes: the code and the separator
	open    bool    // the last complete line was a continuation ("250-")
	started bool    // the current reply's first byte has been seen
	hold    []byte  // the EHLO reply being held, when holding
	holding bool
}

// maxHeldReply bounds an EHLO reply held for filtering; a longer one is
// passed on as it is.
const maxHeldReply = 64 << 10

// maxHeldLines bounds the lines of an EHLO reply that is filtered.
const maxHeldLines = 1024

func (f *replyFilter) write(p []byte) error {
	s := f.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	start := 0
	for i := 0; i < len(p); {
		if !f.started {
			f.started = true
			if f.holding = s.headIsEHLO(); f.holding {
				if err := f.flush(p[start:i]); err != nil {
					return err
				}
				start = i
			}
		}
		j := indexLF(p[i:])
		if j < 0 {
			f.see(p[i:])
			break
		}
		f.see(p[i : i+j])
		i += j + 1
		if f.holding {
			if err := f.keep(p[start:i]); err != nil {
				return err
			}
			start = i
		}
		code, more := mailwire.ReplyHead(f.head[:min(f.lineLen, len(f.head))])
		final, code := !more, max(code, 0)
		f.lineLen = 0
		f.open = !final
		if !final {
			continue
		}
		f.started = false
		if f.holding {
			f.holding = false
			held := dropSTARTTLS(f.hold)
			f.hold = f.hold[:0]
			if err := f.flush(held); err != nil {
				return err
			}
		}
		e := s.popForwarded()
		locals := s.popLocals()
		if len(locals) > 0 {
			if err := f.flush(p[start:i]); err != nil {
				return err
			}
			start = i
			if err := s.writeLocals(locals); err != nil {
				return err
			}
		}
		if e != nil {
			s.answered(e, code)
		}
	}
	s.midReply = f.lineLen > 0 || f.open
	if f.holding {
		return f.keep(p[start:])
	}
	return f.flush(p[start:])
}

// keep adds b to the held EHLO reply; past maxHeldReply it gives up holding
// and passes everything on unfiltered.
func (f *replyFilter) keep(b []byte) error {
	f.hold = append(f.hold, b...)
	if len(f.hold) <= maxHeldReply {
		return nil
	}
	f.holding = false
	err := f.flush(f.hold)
	f.hold = nil
	return err
}

func (f *replyFilter) flush(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := f.s.client.Write(b)
	return err
}

// headIsEHLO reports whether the next reply owed answers a forwarded EHLO.
func (s *smtpSession) headIsEHLO() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fifo) > 0 && s.fifo[0].local == nil && s.fifo[0].cmd.Verb == "EHLO"
}

// dropSTARTTLS returns a complete EHLO reply without its STARTTLS
// extension lines (mailwire.Reply.DropExtension), or reply unchanged when
// it does not parse as one reply.
func dropSTARTTLS(reply []byte) []byte {
	r, err := mailwire.ParseReply(reply, maxHeldLines)
	if err != nil {
		return reply
	}
	return r.DropExtension("STARTTLS")
}

// see records the bytes b of the current line (without its line feed);
// only the first four bytes of a line matter (mailwire.ReplyHead).
func (f *replyFilter) see(b []byte) {
	if f.lineLen < len(f.head) {
		copy(f.head[f.lineLen:], b)
	}
	f.lineLen += len(b)
}

func (f *replyFilter) closed() { f.s.serverEnded() }

var _ filter = (*replyFilter)(nil)

// errSessionDone stops the inspector when the session is torn down while
// it waits.
var errSessionDone = net.ErrClosed
