package bridge

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/mailedge/mailedge/internal/mailwire"
)

// maxSyncTag bounds the tag remembered for a command that announced a
// synchronising literal; a command with a longer tag is counted at once.
const maxSyncTag = 64

// imapSync is what the two directions of GuardIMAP share: the client
// command whose synchronising literal waits for the server's verdict
// (RFC 9051 §4.3). The client side announces, the server side answers, the
// client side waits for the answer before it reads on.
type imapSync struct {
	done <-chan struct{} // closed at teardown
	open atomic.Bool     // a literal waits for a verdict
	bye  *goodbye        // the session's; nil in tests that build a guard alone

	// The client side's own: the tag of the command being read.
	cmdTag []byte
	tagOK  bool // cmdTag is short enough to match answers by

	mu      sync.Mutex
	verdict chan bool // true: "+" or the server gone; false: tagged completion. Made at the first literal
	tag     []byte    // tag of the command whose literal waits
	size    int64     // the literal's size
	pending bool      // the client side has a verdict to wait for
	gone    bool      // the server side has ended
}

func newIMAPSync(done <-chan struct{}) *imapSync { return &imapSync{done: done} }

// command records the tag of the command line the client side starts to
// read (its first line, or the head of a long one).
func (s *imapSync) command(line []byte) {
	tag, _, _ := mailwire.SplitCommand(line)
	s.tagOK = len(tag) > 0 && len(tag) <= maxSyncTag
	if s.tagOK {
		s.cmdTag = append(s.cmdTag[:0], tag...)
	}
}

// announce makes the client side wait for the verdict on a literal of
// size bytes before it reads on. It reports false when the command's tag
// cannot be matched (too long): the literal is then counted at once.
func (s *imapSync) announce(size int64) bool {
	if !s.tagOK {
		return false
	}
	s.mu.Lock()
	if s.verdict == nil {
		s.verdict = make(chan bool, 1)
	}
	s.tag = append(s.tag[:0], s.cmdTag...)
	s.size, s.pending = size, true
	s.open.Store(true) // under mu: serverEnded sees it open or sets gone first
	gone := s.gone
	s.mu.Unlock()
	if gone {
		s.deliver(true)
	}
	return true
}

// deliver passes the verdict on the literal that waits, if one does.
func (s *imapSync) deliver(send bool) {
	if s.open.CompareAndSwap(true, false) {
		s.verdict <- send
	}
}

// owed reports whether the client side must wait for a verdict. Client
// side; false on a nil s.
func (s *imapSync) owed() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// await waits for the verdict and returns the literal's size and whether
// its bytes follow. If the server side has ended, they are passed on as
// data: nothing reads them any more.
func (s *imapSync) await() (size int64, send bool, err error) {
	s.mu.Lock()
	size, verdict := s.size, s.verdict
	s.mu.Unlock()
	select {
	case send = <-verdict:
	case <-s.done:
		return 0, false, net.ErrClosed
	}
	s.mu.Lock()
	s.pending = false
	s.mu.Unlock()
	return size, send, nil
}

// answer reads the first line of a server response while a literal waits:
// a continuation request asks for it, the tagged completion of the command
// that announced it refuses it; anything else (untagged data) is neither.
func (s *imapSync) answer(line []byte) {
	r, err := mailwire.ParseResponse(line)
	if err != nil {
		return
	}
	send := r.Continuation()
	if !send {
		s.mu.Lock()
		mine := string(r.Tag) == string(s.tag)
		s.mu.Unlock()
		if !mine {
			return
		}
	}
	s.deliver(send)
}

// serverEnded releases a client side waiting for a verdict that cannot
// come: its bytes pass on as data, nothing reads them any more.
func (s *imapSync) serverEnded() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
	s.deliver(true)
}
