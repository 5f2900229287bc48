package bridge

import "time"

// SMTPTimeouts are the idle timeouts of the phases of an SMTP session, as
// RFC 5321 §4.5.3.2 sets them: how long the session may go without a byte
// either way in each phase. With SMTPInspector.Timeouts they replace
// Options.IdleTimeout for the session; the inspector knows the phase from
// the commands and replies it reads. A zero field takes RFC 5321's value.
type SMTPTimeouts struct {
	// Command is the wait for the client's next command and for the reply
	// to a command other than DATA and the end of data: 5 minutes
	// (§4.5.3.2.7, the server's timeout; §4.5.3.2.2 and .3 for MAIL and
	// RCPT).
	Command time.Duration
	// DataInit is the wait for the reply to DATA: 2 minutes (§4.5.3.2.4).
	DataInit time.Duration
	// DataBlock is the wait between blocks of the message data, after the
	// 354 reply (and within a BDAT chunk): 3 minutes (§4.5.3.2.5).
	DataBlock time.Duration
	// DataEnd is the wait for the reply to the end of the data (the
	// "." line, or BDAT ... LAST): 10 minutes (§4.5.3.2.6).
	DataEnd time.Duration
}

// The phases of an inspected SMTP session, for its idle timeout.
const (
	phaseCommand int32 = iota
	phaseDataInit
	phaseDataBlock
	phaseDataEnd
)

// of returns the timeout of phase.
func (t *SMTPTimeouts) of(phase int32) time.Duration {
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	switch phase {
	case phaseDataInit:
		return pick(t.DataInit, 2*time.Minute)
	case phaseDataBlock:
		return pick(t.DataBlock, 3*time.Minute)
	case phaseDataEnd:
		return pick(t.DataEnd, 10*time.Minute)
	}
	return pick(t.Command, 5*time.Minute)
}

// setPhase records the phase the session has entered, when per-phase
// timeouts apply.
func (s *smtpSession) setPhase(p int32) {
	if s.ins.Timeouts != nil && s.phase.Swap(p) != p && s.onPhase != nil {
		s.onPhase()
	}
}

// rearm moves the session's next timeout check to its due time under the
// current idle timeout, so that a phase with a shorter one takes effect at
// once, not at the check the longer one had set.
func (s *session) rearm() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.stopped {
		return
	}
	if s.poller != nil {
		s.poller.clock.schedule(s)
		return
	}
	if s.timer != nil {
		s.timer.Reset(max(s.nextDue()-time.Since(s.start), 0))
	}
}

// idleNow returns the session's idle timeout as of now: the phase's with
// SMTPInspector.Timeouts, else Options.IdleTimeout's.
func (s *session) idleNow() time.Duration {
	if s.smtp != nil && s.smtp.ins.Timeouts != nil {
		return s.smtp.ins.Timeouts.of(s.smtp.phase.Load())
	}
	return s.idle
}
