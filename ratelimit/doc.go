// Package ratelimit admits connections, messages and recipients per source
// address, the way Traefik's InFlightConn middleware and Postfix's anvil(8)
// server do, with trusted networks and an access list, and refuses in the
// protocol's own words: SMTP (RFC 5321, enhanced codes of RFC 3463), IMAP
// (RFC 9051, response codes of RFC 5530) and POP3 (RFC 1939, extended codes
// of RFC 2449 and RFC 3206).
//
// A Limiter counts four things per source: connections in flight
// (Limits.InFlight, Traefik's "amount"), connection attempts, MAIL FROM
// and RCPT TO commands per time unit (Postfix's
// smtpd_client_connection_rate_limit, smtpd_client_message_rate_limit and
// smtpd_client_recipient_rate_limit over anvil_rate_time_unit).
//
// Rates follow anvil's documented semantics exactly: a fixed window, not a
// sliding one or a token bucket. The first event of a source starts its
// window; an event more than Unit after the window's start resets all of
// the source's rates to zero and starts a new window at that event. Every
// attempt counts, refused ones included, and the event is refused when the
// count, including itself, exceeds the limit: with ConnRate 60 the 61st
// connection in a window is refused, an event exactly Unit after the start
// still belongs to the old window, one a nanosecond later opens a new one.
// anvil's source explains the choice: simpler than a moving average, and
// quicker to stop a client that hammers the server. We keep it so a gateway in front of Postfix, or replacing it, limits the way its
// operators already configure and read in their logs.
//
// Sources are keyed by IPv4 address, by IPv6 prefix (/64 unless
// IPv6Prefix says otherwise), IPv4-mapped IPv6 being treated as IPv4; all
// clients without an IP address share one key. The access list runs
// first (first match wins; a denied source is never tracked), then the
// trusted networks (exempt and never tracked), then the limits.
//
// Typical usage:
//
//	lim := &ratelimit.Limiter{
//		Limits:  ratelimit.Limits{InFlight: 15, ConnRate: 60, MessageRate: 100, RecipientRate: 300},
//		Trusted: trusted, // from ratelimit.ParseNetworks(*flagTrusted)
//	}
//	for {
//		c, err := ln.Accept()
//		...
//		addr := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
//		lease, err := lim.Admit(ctx, addr)
//		if err != nil {
//			io.WriteString(c, ratelimit.SMTPReply(err, hostname))
//			c.Close()
//			continue
//		}
//		go func() {
//			defer lease.Release()
//			defer c.Close()
//			serve(c) // calls lim.AllowMessage / lim.AllowRecipient on MAIL / RCPT
//		}()
//	}
//
// Connection ownership and concurrency: the package never touches a
// connection; the caller owns it, writes the reply and closes it. A Lease
// is the only thing Admit hands out, and releasing it (once; more is a
// no-op) is the caller's job when the connection ends. A Limiter, its
// Store and Leases are safe for concurrent use. Nothing runs in the
// background: rates reset lazily on the next event, idle sources expire
// lazily and are swept when the table is full, and the table's size is
// bounded (see MemoryStore). A source with connections in flight is never
// forgotten, so in-flight counts cannot leak or go negative. Every call that
// may reach the Store takes a context, so a Store kept elsewhere (Redis)
// can be bounded by it. Limiter.Stats returns all the statistics in one
// value: totals, peaks, and the counters of the sources asked about.
package ratelimit
