package mailedge

import (
	"crypto/tls"
	"net"
	"time"
)

// Stage names a step of a session, in the order sessions go through them.
// A session reports the stages it reaches: one refused by the Limiter
// ends after StageAdmitted, one whose client fails the handshake after
// StageClient.
type Stage uint8

const (
	// StageAccepted: the connection was accepted, and a ProxyListener's
	// PROXY header read (its Duration).
	StageAccepted Stage = iota + 1
	// StageAdmitted: the Limiter decided (only with a Limiter); Err is its
	// refusal.
	StageAdmitted
	// StageClient: the client side is done: the TLS handshake of an
	// implicit-TLS session, or the STARTTLS dialogue and its handshake
	// (the client's own pauses included), or the plain dialogue that
	// reached a command to hand over. TLS is set for a TLS session.
	StageClient
	// StageBackend: a backend was dialled (connect, PROXY header or
	// XCLIENT/ID, TLS, greeting): Member, or Err. A login at the edge may
	// dial more than once, and a passed-through session dials here too.
	StageBackend
	// StageLogin: the login at the edge (Proxy.Login) is done, from the
	// end of the client side to the backend's login: User, or Err. It
	// includes its StageBackend.
	StageLogin
	// StageHandover: the handover before the copy (a replayed EHLO and its
	// answer, the backend greeting relayed).
	StageHandover
	// StageEnded: the session ended. Info is its SessionInfo, and Duration
	// the whole session's.
	StageEnded
)

var stageNames = [...]string{StageAccepted: "accepted", StageAdmitted: "admitted", StageClient: "client",
	StageBackend: "backend", StageLogin: "login", StageHandover: "handover", StageEnded: "ended"}

// String returns the stage's lower-case name, such as "client".
func (s Stage) String() string {
	if s > 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "unknown"
}

// Event is one stage of one session, reported to Proxy.OnEvent as it
// happens, with how long it took: what an operator needs to see where
// sessions spend their time (histograms per stage, trace spans).
type Event struct {
	// ID identifies the session among those of its Proxy: every event of
	// a session carries the same ID, from 1 up.
	ID    uint64
	Stage Stage
	// Time is when the stage ended; Time.Add(-Duration) when it began.
	Time     time.Time
	Duration time.Duration
	// Err is why the stage failed; nil if it succeeded.
	Err error
	// Client is the client's address (a PROXY header's source behind a
	// ProxyListener).
	Client net.Addr
	// TLS is the client-side TLS state at StageClient of a TLS session:
	// version, cipher, server name, ALPN, whether it resumed, the client's
	// certificate. Do not modify it.
	TLS *tls.ConnectionState
	// Member is the backend member dialled (StageBackend).
	Member string
	// Identity is how the client's identity reached that member
	// (StageBackend): backend.Conn.Identity, such as ["proxy-v2"] or
	// ["xclient"]. Do not modify it.
	Identity []string
	// User is the user logged in, or who tried (StageLogin).
	User string
	// Info is the session's SessionInfo at StageEnded; nil before.
	Info *SessionInfo
}

// event reports stage e of c's session to OnEvent, begun at start.
func (c *conn) event(e Event, start time.Time) {
	if c.p.OnEvent == nil {
		return
	}
	e.ID, e.Client = c.id, c.info.Client
	if e.Info != nil { // StageEnded: the session's own measure
		e.Time, e.Duration = e.Info.Start.Add(e.Info.Duration), e.Info.Duration
	} else {
		e.Time = time.Now()
		e.Duration = e.Time.Sub(start)
	}
	c.p.OnEvent(e)
}

// since returns the time a stage begins, or the zero time when no one
// listens (saving the clock read).
func (c *conn) since() time.Time {
	if c.p.OnEvent == nil {
		return time.Time{}
	}
	return time.Now()
}
