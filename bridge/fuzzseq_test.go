package bridge

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// seqUnit is a piece of the client's stream the fake server must receive
// intact, and the reply it then sends.
type seqUnit struct{ bytes, reply string }

// seqScript is a client session built from fuzz input: what the client
// sends, what the server must receive, and what the client must read.
type seqScript struct {
	client   string
	units    []seqUnit
	expected string
	messages int64
	rcpts    int64
	greeting bool
}

// buildScript turns fuzz bytes into a pipelined session of commands,
// DATA content and BDAT chunks full of command-like text.
func buildScript(ops []byte, rng *rand.Rand) *seqScript {
	sc := &seqScript{greeting: len(ops) > 0 && ops[0]&1 == 1}
	if sc.greeting {
		sc.expected = "220 greeting\r\n"
	}
	fwd := func(client, reply string) {
		sc.client += client
		sc.units = append(sc.units, seqUnit{client, reply})
		sc.expected += reply
	}
	local := func(client, reply string) { sc.client += client; sc.expected += reply }
	for i, b := range ops {
		tag := fmt.Sprintf("#%d", i)
		switch b % 11 {
		case 0:
			fwd("MAIL FROM:<a@b>\r\n", "250 "+tag+"\r\n")
		case 1:
			fwd("RCPT TO:<ok"+tag+">\r\n", "250 "+tag+"\r\n")
			sc.rcpts++
		case 2:
			local("RCPT TO:<no"+tag+">\r\n", "452 "+tag+"\r\n")
		case 3:
			fwd("DATA\r\n", "354 "+tag+"\r\n")
			fwd(content(rng)+".\r\n", "250 "+tag+" queued\r\n")
			sc.messages++
		case 4:
			fwd("DATA\r\n", "554 "+tag+"\r\n")
		case 5, 6:
			chunk := content(rng)
			last := ""
			if b%2 == 0 {
				last, sc.messages = " LAST", sc.messages+1
			}
			fwd(fmt.Sprintf("BDAT %d%s\r\n", len(chunk), last)+chunk, "250 "+tag+"\r\n")
		case 7:
			local("BDAT 13 last\r\nRCPT TO:<x>\r\n", "552 "+tag+"\r\n")
		case 8:
			fwd("NOOP\r\n", "250-"+tag+" a\r\n250-"+tag+" b\r\n250 "+tag+"\r\n")
		case 9:
			local("STARTTLS\r\n", replyNoTLS)
			local("NOOP "+strings.Repeat("x", 80)+"\r\n", replyLineTooLong)
		case 10:
			fwd("AUTH PLAIN\r\n", "334 \r\n")
			fwd("c2Vj"+tag+"\r\n", "235 "+tag+"\r\n")
		}
	}
	return sc
}

// content returns message text full of things that look like commands and
// near-misses of the end-of-data mark, never the mark itself.
func content(rng *rand.Rand) string {
	parts := []string{"RCPT TO:<no>\r\n", "DATA\r\n", "\n.\n", ".\n", "..\r\n", "x\r\n", "\r\n.x\r\n", "\r", "\n", "QUIT\r\n"}
	var b strings.Builder
	for range rng.IntN(8) {
		b.WriteString(parts[rng.IntN(len(parts))])
	}
	if s := b.String(); !strings.HasSuffix(s, "\r\n") {
		b.WriteString("\r\n")
	}
	return strings.ReplaceAll(b.String(), "\r\n.\r\n", "\r\n..\r\n")
}

// seqHarness plays the fake server and the client around one smtpSession,
// on one goroutine, delivering server replies in random pieces at random
// moments.
type seqHarness struct {
	t       *testing.T
	sc      *seqScript
	s       *smtpSession
	rng     *rand.Rand
	recv    []byte
	unit    int
	pending []byte
	out     bytes.Buffer // what the client read
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// serverWrite checks each unit arriving at the fake server and queues its
// reply.
func (h *seqHarness) serverWrite(p []byte) (int, error) {
	h.recv = append(h.recv, p...)
	for h.unit < len(h.sc.units) && len(h.recv) >= len(h.sc.units[h.unit].bytes) {
		u := h.sc.units[h.unit]
		if string(h.recv[:len(u.bytes)]) != u.bytes {
			h.t.Fatalf("server got %q; want %q", h.recv, u.bytes)
		}
		h.recv = h.recv[len(u.bytes):]
		h.pending = append(h.pending, u.reply...)
		h.unit++
	}
	if h.unit == len(h.sc.units) && len(h.recv) > 0 {
		h.t.Fatalf("server got unexpected %q", h.recv)
	}
	return len(p), nil
}

// deliver passes up to n queued reply bytes to the reply side in random
// pieces.
func (h *seqHarness) deliver(n int) {
	for n > 0 && len(h.pending) > 0 {
		k := 1 + h.rng.IntN(min(n, len(h.pending)))
		piece := bytes.Clone(h.pending[:k])
		h.pending = h.pending[k:]
		n -= k
		if err := h.s.replies.write(piece); err != nil {
			h.t.Fatal(err)
		}
	}
}

// FuzzReplySequence sends random pipelined sessions through the inspector
// in random pieces, with server replies arriving in random pieces at random
// times, and checks that the server receives exactly the forwarded bytes
// and the client exactly the replies in command order.
func FuzzReplySequence(f *testing.F) {
	f.Add([]byte{1, 0, 1, 2, 1, 3, 4, 5, 6, 7, 8, 9, 10}, uint64(1))
	f.Add([]byte{0, 2, 2, 9, 7, 2}, uint64(7))
	f.Add([]byte{3, 3, 6, 10, 2}, uint64(99))
	f.Fuzz(checkSequence)
}

// checkSequence runs one session of FuzzReplySequence.
func checkSequence(t *testing.T, ops []byte, seed uint64) {
	if len(ops) > 200 {
		ops = ops[:200]
	}
	rng := rand.New(rand.NewPCG(seed, uint64(len(ops))))
	sc := buildScript(ops, rng)
	h := &seqHarness{t: t, sc: sc, rng: rng}
	if sc.greeting {
		h.pending = []byte("220 greeting\r\n")
	}
	ins := &SMTPInspector{MaxLineLength: 64, AwaitGreeting: sc.greeting, Check: tagChecker(t, ops)}
	h.s = newSMTPSession(ins, &h.out, writerFunc(h.serverWrite), make(chan struct{}))
	h.s.beforeWait = func() { h.deliver(len(h.pending)) }
	for rest := []byte(sc.client); len(rest) > 0; {
		n := 1 + rng.IntN(len(rest))
		if err := h.s.commands.write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
		h.deliver(rng.IntN(len(h.pending) + 1))
	}
	h.deliver(len(h.pending))
	if h.unit != len(sc.units) {
		t.Fatalf("server got %d of %d units", h.unit, len(sc.units))
	}
	if got := h.out.String(); got != sc.expected {
		t.Fatalf("client read\n%q\nwant\n%q", got, sc.expected)
	}
	st := h.s.stats()
	if st.Messages != sc.messages || st.Recipients != sc.rcpts {
		t.Fatalf("stats %+v; want %d messages, %d recipients", st, sc.messages, sc.rcpts)
	}
}

// tagChecker refuses RCPT <no#i> and BDAT 13 with replies tagged by op
// index, as buildScript expects, and fails on a command that only message
// content contains.
func tagChecker(t *testing.T, ops []byte) func(SMTPCommand) string {
	var bdats []int
	for i, b := range ops {
		if b%11 == 7 {
			bdats = append(bdats, i)
		}
	}
	return func(c SMTPCommand) string {
		switch {
		case c.Verb == "RCPT" && strings.HasPrefix(c.Arg, "no#"):
			return "452 #" + strings.TrimPrefix(c.Arg, "no#")
		case c.Verb == "RCPT" && c.Arg == "no", c.Verb == "QUIT":
			t.Fatalf("content inspected as command %q", c.Line)
		case c.Verb == "BDAT" && c.Arg == "13 last":
			i := bdats[0]
			bdats = bdats[1:]
			return fmt.Sprintf("552 #%d", i)
		}
		return ""
	}
}
