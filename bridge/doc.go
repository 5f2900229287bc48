// Package bridge joins a client conn and a backend conn once both are ready
// (after the TLS and STARTTLS handover) and copies bytes both ways, with
// TCP half-close, idle and session timeouts, cancellation and byte
// counters, an optional SMTP command inspector (RFC 5321, RFC 2920
// PIPELINING, RFC 3030 CHUNKING) that ratelimit uses for message and
// recipient rates, and IMAP and POP3 guards (RFC 9051, RFC 1939, RFC 2449,
// RFC 2595). The inspector and the guards keep a session on the TLS of its
// handover: STARTTLS/STLS is never advertised to the client again nor
// started with the backend (RFC 3207 §4.2, RFC 9051 §6.2.1).
//
// Join expects to start between commands and between responses, with the
// backend's greeting already passed on or swallowed, as starttls.Handover
// leaves a session.
//
// Typical usage:
//
//	st, err := bridge.Join(ctx, clientConn, backendConn, bridge.Options{
//		IdleTimeout: 30 * time.Minute, // IMAP: RFC 9051 autologout
//	})
//	log.Printf("%d bytes up, %d down, ended by %s: %v",
//		st.ClientToServer, st.ServerToClient, st.End, err)
//
// Join takes ownership of both conns: it closes them, and both of its copier
// goroutines have finished their work, before it returns, whatever ended
// the session.
// Cancelling ctx, the idle timer and the MaxDuration timer close both conns
// to unblock the copiers; none of them starts a goroutine until it fires.
// SMTPInspector callbacks and Hooks.HalfClose run on the copier goroutines,
// Hooks.End on the goroutine that finishes the session (see Hooks); all
// must be safe for concurrent use. An SMTPInspector and an Options value may be
// shared by any number of concurrent Joins.
//
// Memory: an idle session holds no copy buffer. On Linux a plain TCP or Unix
// socket is waited on for readability without a buffer, and a 32 KiB buffer
// is taken from a shared pool only for the bytes already queued; between
// two plain *net.TCPConn, once a direction proves a bulk flow (a read fills
// a buffer, or 1 MiB has moved), its bytes go through splice(2) and never
// enter user space, while the short flights of a handshake or a mail
// dialogue take one read(2) and one write(2) each. A *tls.Conn made over the socket wrapper that the starttls and
// backend packages use, or that WrapConn puts under a *tls.Conn the
// application makes itself, is read without blocking until it has no
// record left, then its socket is waited on the same way (provided this Go
// release's crypto/tls passes the wrapper's self-test, run once per
// process; else it is read like the other conns below). With Options.Poller, a
// direction that has waited ParkAfter in vain gives up its goroutine too:
// an idle session then holds only its heap objects (see Poller). Start is
// Join for callers that do not want to keep a goroutine waiting either.
// Other conns (wrappers that read ahead, a *tls.Conn made on a bare socket)
// block in a one-byte read on their goroutine.
package bridge
