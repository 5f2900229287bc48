// Package mailtest runs mail servers in-process on loopback for the tests of
// code built on mailedge, as net/http/httptest does for HTTP: IMAP (RFC 9051,
// RFC 3501), SMTP submission with AUTH (RFC 6409, RFC 4954), MX-style SMTP
// (RFC 5321) and POP3 (RFC 1939, RFC 2449, STLS from RFC 2595) over one set
// of accounts and mailboxes, each in plain text, with STARTTLS or over
// implicit TLS (RFC 8314); a test CA that issues ECDSA or RSA certificates
// for any names; and hostile servers that misbehave the way the adversarial
// suite's backends do.
//
// Typical usage, in a test:
//
//	sys := mailtest.NewSystem(t, mailtest.Options{}) // demo@example.com / demo
//	ca := mailtest.NewCA(t)
//	p := &mailedge.Proxy{
//		Server:  &starttls.Server{Protocol: starttls.IMAP, TLSConfig: ca.ServerConfig(t, "mail.example.com")},
//		Implicit: true,
//		Backend: &backend.Dialer{Addr: sys.Addr(mailtest.IMAP, mailtest.Plain), Protocol: starttls.IMAP},
//	}
//	addr := mailtest.Serve(t, p.Serve)
//	// dial addr with ca.ClientConfig("mail.example.com"), log in as demo@example.com
//
//	h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.StartTLSInjection, Protocol: mailtest.IMAP})
//	// point a backend.Dialer at h.Addr(): its Dial must fail with starttls.ErrInjection
//
// Everything NewSystem, NewCA, NewHostile, NewFake and Serve start is
// stopped when the test ends (testing.TB's Cleanup): no goroutine of theirs
// and no descriptor is left. Programs that have no testing.TB, such as the
// gateway's demo, use New, Start and Close, and GenerateCA.
//
// The mail system:
//
// The mailboxes live in go-imap's imapmemserver. SMTP delivery appends to
// the recipient's INBOX through its API. The POP3 server is written here
// and reads the same INBOX as an IMAP client of the same server, over an
// in-process net.Pipe: a POP3 session logs in, snapshots the INBOX's UIDs
// and sizes, fetches on RETR/TOP and, at QUIT, expunges what it deleted
// with UID EXPUNGE. That keeps one store with one set of rules, so IMAP
// sees POP3's deletions and POP3 never serves what IMAP expunged, with no
// second message store to keep in step. Messages (for tests) reads the
// same way. A POP3 maildrop is locked per user while a session holds it
// (RFC 1939 §8).
//
// Behaviour, on purpose like a small real mail system:
//   - Submission requires AUTH (PLAIN or LOGIN) before MAIL ("530 5.7.0
//     Authentication required"). It delivers to local accounts, and accepts
//     foreign recipients from authenticated users; those are logged as
//     "relayed" and dropped, as the demo has no outbound queue.
//   - MX offers no AUTH, accepts mail for the local domains only, and refuses
//     any other domain with Postfix's "554 5.7.1 <rcpt>: Relay access denied"
//     (the open-relay check of load-balanced SMTP). Unknown local users get
//     "550 5.1.1".
//   - Both SMTP servers need EHLO/HELO before MAIL; go-smtp enforces that
//     itself and answers "502 5.5.1 Please introduce yourself first."
//     (Postfix says 503 5.5.1; go-smtp's code is kept). Messages over the
//     size limit get "552 5.3.4". Each delivery gets Return-Path and
//     Received header fields; the Received field names the client address,
//     which is the real one when a PROXY header was accepted.
//   - Backend trust: the servers allow LOGIN and AUTH without TLS (imapserver
//     InsecureAuth, go-smtp AllowInsecureAuth), the way Dovecot behind a
//     NetScaler trusts the internal network once the ADC in front has
//     terminated TLS. Never expose these listeners beyond loopback.
//
// Connection ownership and concurrency: the System owns every listener
// passed to a Serve method and every connection accepted from one; Close
// closes them all, and returns only after every goroutine the System itself
// started (Start's accept loops, POP3 sessions, the in-process IMAP
// listener) has ended and every accepted connection has been closed. The
// per-connection goroutines inside go-imap and go-smtp, which those
// libraries do not let a caller wait for, end as their connection closes.
// Serve methods block, may run concurrently, and return ErrClosed after
// Close. Start also stops everything when its ctx ends. All methods are
// safe for concurrent use.
//
// System flags: go-imap's memory server keeps flags lower-cased; the IMAP
// listeners give \Seen, \Answered, \Flagged, \Deleted, \Draft and \Recent
// their RFC 9051 casing on the way out (some clients, such as mbsync,
// compare them case-sensitively). On a STARTTLS listener that holds until
// the upgrade only: after it, flags come as the memory server writes them.
// The plain and implicit-TLS listeners are not affected.
//
// Hostile servers (NewHostile): StartTLSInjection, PreAuth, LongLines,
// Mute, Slow, ResetMidMessage and WrongCertificate, each over IMAP, POP3 or
// SMTP; see HostileKind. NewFake and Script build other scripted servers.
package mailtest
