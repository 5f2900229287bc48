// Package starttls speaks the SMTP (RFC 5321, RFC 3207), IMAP (RFC 9051,
// RFC 3501, RFC 2595) and POP3 (RFC 1939, RFC 2595, RFC 2449) dialogues up
// to the switch to TLS, toward clients and toward backends, and hands the
// two conversations over to each other.
//
// The package has two halves that meet in a Session:
//
//   - Server is the client-facing half. On a plain listener (25, 587, 143,
//     110) Server.Serve greets the client, answers the few commands allowed
//     before TLS, refuses the rest as its Mode says (Require, Allow,
//     Disallow, as BIG-IP's STARTTLS activation modes), and returns a Session
//     once the client has switched to TLS or, in Allow mode, has declined it.
//     On an implicit-TLS listener (465, 993, 995) Server.ServeTLS only runs
//     the handshake.
//   - Client is the backend-facing half: Client.Upgrade reads a backend's
//     greeting and performs STARTTLS/STLS on it, keeping the greeting so it
//     can be replayed. Handover then synchronises the Session with the
//     backend (swallowing or replaying greetings, replaying the client's
//     EHLO, filtering STARTTLS out of the first capability answer) so that
//     bytes can be copied both ways unchanged.
//
// Protocol (SMTP, IMAP, POP3) and Security (Plain, TLS, STARTTLS: how a
// connection gets TLS) are the package's two enums; backend.Dialer and the
// probes of package monitor use them too.
//
// Typical usage, for a submission listener in front of a backend:
//
//	srv := &starttls.Server{Protocol: starttls.SMTP, TLSConfig: cfg, Hostname: "mail.example.com"}
//	for {
//		conn, err := ln.Accept()
//		if err != nil {
//			return err
//		}
//		go func() {
//			sess, err := srv.Serve(ctx, conn)
//			if err != nil {
//				conn.Close() // refusal already written; ErrClientQuit is a normal end
//				return
//			}
//			client, server, err := starttls.Handover(ctx, sess, backendFor(sess))
//			// ... copy between client and server (package bridge)
//		}()
//	}
//
// Security before TLS. Everything the client can make the server hold is
// bounded: line length (MaxLineLength; an over-long line gets the protocol's
// error and the dialogue resynchronises on the next line feed, within a fixed
// bound), bad commands (MaxErrors, as nginx's max_errors), commands
// (MaxCommands), time (Timeout for the whole dialogue, HandshakeTimeout for
// the handshake) and IMAP literals (refused; small non-synchronising ones are
// discarded). Bytes the client sends after its STARTTLS/STLS line and before
// the handshake are never executed (CVE-2011-0411): if they are already read
// Serve fails with ErrInjection without answering, and later ones reach the
// TLS layer, which runs on the raw conn and fails the handshake.
//
// Pipelining. Commands that arrive together are answered in order with one
// write; a reply is never held back while the client might be waiting for
// it. STARTTLS must end a pipelined group (RFC 3207 §4.2).
//
// Connection ownership and concurrency. Serve and ServeTLS take a conn the
// caller has accepted. On success the returned Session owns it (Session.Conn
// is the *tls.Conn, or for a plain session the conn itself, with the bytes
// Serve read ahead in Session.Pending) and no deadline is left on it. On error
// they do not close the conn: the caller does, after Serve has written the
// protocol's refusal where one applies. Serve blocks until the dialogue ends;
// cancelling its context makes pending I/O fail at once. It starts no
// goroutine that outlives the call. A Server, like a Client, is read-only
// during use and may serve many connections at once.
package starttls
