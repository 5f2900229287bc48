package bridge

import (
	"bytes"
)

// cmdMode is what the client's next bytes are.
type cmdMode uint8

const (
	modeCommand cmdMode = iota // command lines
	modeSASL                   // one SASL response line after a 334 reply
	modeData                   // message content up to <CRLF>.<CRLF>
	modeChunk                  // a BDAT chunk being forwarded
	modeSkip                   // a refused BDAT chunk being discarded
)

// Data-content scanner states; the content starts at a line start.
const (
	dataLineStart uint8 = iota // after CRLF
	dataDot                    // CRLF "."
	dataDotCR                  // CRLF "." CR
	dataMid                    // inside a line
	dataCR                     // after a CR inside a line
)

// commandFilter is the client-to-server side of the inspector. It runs on
// one goroutine only.
type commandFilter struct {
	s          *smtpSession
	max        int
	mode       cmdMode
	line       []byte // a line split across reads; nil when none
	oversize   bool   // discarding an oversize line up to its line feed
	data       uint8  // data scanner state
	remain     int64  // chunk bytes left in modeChunk and modeSkip
	afterChunk int32  // the phase once the chunk is through: the reply to BDAT ... LAST or another
	out        [][]byte
}

// write consumes p, forwarding, answering or discarding each part.
func (f *commandFilter) write(p []byte) error {
	for len(p) > 0 {
		var err error
		switch f.mode {
		case modeCommand, modeSASL:
			p, err = f.lineBytes(p)
		case modeData:
			end := scanData(&f.data, p)
			if end < 0 {
				f.forward(p)
				return f.flush()
			}
			f.forward(p[:end])
			p = p[end:]
			f.mode = modeCommand
			if !f.s.push(&entry{cmd: SMTPCommand{Verb: "."}, end: true}) {
				return errSessionDone
			}
			f.s.setPhase(phaseDataEnd)
		case modeChunk, modeSkip:
			n := int(min(f.remain, int64(len(p))))
			if f.mode == modeChunk {
				f.forward(p[:n])
			}
			p = p[n:]
			if f.remain -= int64(n); f.remain == 0 {
				f.mode = modeCommand
				f.s.setPhase(f.afterChunk)
			}
		}
		if err != nil {
			return err
		}
	}
	return f.flush()
}

// lineBytes takes bytes of a command or SASL line from p and handles the
// line when its line feed arrives; it returns the rest of p.
func (f *commandFilter) lineBytes(p []byte) ([]byte, error) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if !f.oversize && len(f.line)+len(p) > f.max {
			f.oversize, f.line = true, nil
		}
		if !f.oversize {
			f.line = append(f.line, p...)
		}
		return nil, nil
	}
	full, rest := p[:i+1], p[i+1:]
	if f.line != nil {
		full = append(f.line, full...)
		f.line = nil
	}
	if f.oversize || len(full) > f.max {
		f.oversize = false
		f.s.nCommands.Add(1)
		if err := f.flush(); err != nil {
			return nil, err
		}
		return rest, f.s.local([]byte(replyLineTooLong))
	}
	return rest, f.handleLine(full)
}

// handleLine checks, answers or forwards one complete line.
func (f *commandFilter) handleLine(line []byte) error {
	if f.mode == modeSASL {
		return f.gated(&entry{cmd: SMTPCommand{Line: bytes.Clone(line)}}, line, 334, modeSASL)
	}
	f.s.nCommands.Add(1)
	cmd := parseCommand(line)
	if cmd.Verb == "STARTTLS" {
		return f.answer([]byte(replyNoTLS))
	}
	size, last, isChunk := int64(0), false, false
	if cmd.Verb == "BDAT" {
		size, last, isChunk = parseBDAT(cmd.Arg)
	}
	if f.s.ins.Check != nil {
		if r := f.s.ins.Check(cmd); r != "" {
			if isChunk && size > 0 {
				f.mode, f.remain = modeSkip, size
			}
			return f.answer(localReply(r))
		}
	}
	e := &entry{cmd: cmd, rcpt: cmd.Verb == "RCPT", end: isChunk && last}
	switch cmd.Verb {
	case "DATA":
		f.s.setPhase(phaseDataInit)
		return f.gated(e, line, 354, modeData)
	case "AUTH":
		return f.gated(e, line, 334, modeSASL)
	}
	if !f.s.push(e) {
		return errSessionDone
	}
	f.forward(line)
	f.afterChunk = phaseCommand
	if last {
		f.afterChunk = phaseDataEnd
	}
	if isChunk && size > 0 {
		f.mode, f.remain = modeChunk, size
		f.s.setPhase(phaseDataBlock)
	} else if isChunk {
		f.s.setPhase(f.afterChunk)
	}
	return nil
}

// answer sends a local reply in its place; forwarded bytes before it go
// first so the server's replies to them are owed before it.
func (f *commandFilter) answer(reply []byte) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.s.local(reply)
}

// gated forwards line and waits for its reply: on code want the client
// continues in next, otherwise with commands. DATA and AUTH are gated
// because only the server's answer tells what the following bytes are.
func (f *commandFilter) gated(e *entry, line []byte, want int, next cmdMode) error {
	e.gate = make(chan int, 1)
	if !f.s.push(e) {
		return errSessionDone
	}
	f.forward(line)
	if err := f.flush(); err != nil {
		return err
	}
	code, err := f.s.await(e)
	if err != nil {
		return err
	}
	f.mode = modeCommand
	if code == want {
		f.mode, f.data = next, dataLineStart
	}
	if next == modeData {
		phase := phaseCommand // DATA refused
		if code == want {
			phase = phaseDataBlock
		}
		f.s.setPhase(phase)
	}
	return nil
}

// forward queues b for the server, merging it with the previous piece
// when the two are adjacent in memory (consecutive lines of one read), so
// a pipelined group leaves in one write.
func (f *commandFilter) forward(b []byte) {
	if len(b) == 0 {
		return
	}
	if n := len(f.out); n > 0 {
		if joined, ok := joinAdjacent(f.out[n-1], b); ok {
			f.out[n-1] = joined
			return
		}
	}
	f.out = append(f.out, b)
}

// flush writes the queued pieces to the server.
func (f *commandFilter) flush() error {
	for i, b := range f.out {
		f.out[i] = nil
		if _, err := f.s.server.Write(b); err != nil {
			f.out = f.out[:0]
			return err
		}
	}
	f.out = f.out[:0]
	return nil
}

func (f *commandFilter) closed() {}

var _ filter = (*commandFilter)(nil)

// scanData advances the data scanner over p and returns the index just
// past the <CRLF>.<CRLF> that ends the content, or -1. Only CRLF starts a
// line: a bare LF never does, so "\n.\r\n" or "\r\n.\n" end nothing.
func scanData(st *uint8, p []byte) int {
	for i := 0; i < len(p); i++ {
		if *st == dataMid {
			j := bytes.IndexByte(p[i:], '\r')
			if j < 0 {
				return -1
			}
			i += j
		}
		c := p[i]
		switch {
		case c == '\r' && *st == dataDot:
			*st = dataDotCR
		case c == '\r':
			*st = dataCR
		case c == '\n' && *st == dataDotCR:
			*st = dataLineStart
			return i + 1
		case c == '\n' && *st == dataCR:
			*st = dataLineStart
		case c == '.' && *st == dataLineStart:
			*st = dataDot
		default:
			*st = dataMid
		}
	}
	return -1
}

func indexLF(b []byte) int { return bytes.IndexByte(b, '\n') }
