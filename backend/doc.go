// Package backend reaches the mail servers behind a proxy: a Dialer
// connects to one SMTP (RFC 5321), IMAP (RFC 9051) or POP3 (RFC 1939)
// server in plain text (TLS offload), over implicit TLS (RFC 8314) or after
// STARTTLS (RFC 3207, RFC 2595), tells it who the client is (HAProxy's
// PROXY protocol v1/v2, Postfix XCLIENT, the RFC 2971 ID command as Dovecot
// reads it), and reads and checks its greeting; a Pool spreads connections
// over several Dialers (round robin, least connections, smooth weighted)
// with failover, up/down marks and draining.
//
// Typical usage:
//
//	pool, err := backend.NewPool(backend.LeastConn,
//		backend.Member{Name: "mx1", Dialer: &backend.Dialer{Addr: "10.0.0.1:25", XCLIENT: true}},
//		backend.Member{Name: "mx2", Dialer: &backend.Dialer{Addr: "10.0.0.2:25", XCLIENT: true}},
//	)
//	...
//	conn, err := pool.Dial(ctx, backend.ClientInfo{Src: client.RemoteAddr(), Dst: client.LocalAddr(), Helo: helo, HeloVerb: "EHLO"})
//	if errors.Is(err, backend.ErrNoBackend) {
//		// answer the client "421 4.3.2 service not available" and close
//	}
//	defer conn.Close()
//	client, server, err := starttls.Handover(ctx, session, conn.Backend())
//
// The greeting is always read by Dial: it proves the member is alive, lets a
// Pool fail over on a refusal (a *GreetingError: SMTP 4xx/5xx, IMAP
// "* BYE", POP3 "-ERR"; an IMAP "* PREAUTH" is refused as well, since the
// client never authenticated), and is handed on in Conn.Greeting.
//
// Connection ownership and concurrency: Dial returns a *Conn the caller owns
// and must Close; closing it also releases its slot in the Pool, exactly
// once however often Close is called. On error nothing is left open. Dial
// starts no goroutine that outlives it. Dialer and Pool are safe for
// concurrent use; a Dialer's fields and a Pool's Policy must not change once
// it is in use. Member health is set from outside (SetUp, by the monitor
// package or an operator); a Pool never probes on its own.
//
// Deadlines: each attempt is bounded by the member's ConnectTimeout for the
// TCP connect and HandshakeTimeout for everything after it, and by the
// context for both; the earlier wins. A Pool tries members one after the
// other, so a member that accepts and then stays silent costs the caller up
// to its HandshakeTimeout before the next member is tried: keep
// HandshakeTimeout well under the caller's deadline. When the context ends,
// Pool.Dial stops and returns its error rather than ErrNoBackend.
package backend
