// Package ratelimit admits connections, messages, recipients and logins per
// source address, the way Traefik's InFlightConn middleware and Postfix's
// anvil(8) server do, locks out sources and user names after failed
// logins, with trusted networks and an access list, and refuses in the
// protocol's own words: SMTP (RFC 5321, enhanced codes of RFC 3463), IMAP
// (RFC 9051, response codes of RFC 5530) and POP3 (RFC 1939, extended codes
// of RFC 2449 and RFC 3206).
//
// A Limiter counts five things per source: connections in flight
// (Limits.InFlight, Traefik's "amount"), connection attempts, MAIL FROM
// and RCPT TO commands and login attempts per time unit (Postfix's
// smtpd_client_connection_rate_limit, smtpd_client_message_rate_limit,
// smtpd_client_recipient_rate_limit and smtpd_client_auth_rate_limit over
// anvil_rate_time_unit), and failed logins per source and per user name.
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
// Failed logins have a window of their own, Limits.Lockout (15 minutes
// unless set), with the same fixed-window rule: a source's (or user
// name's) first failure opens it, and once Limits.LoginFailures failures
// of a source (Limits.UserLoginFailures of a user name, from any sources)
// fall in it, further logins of that source (that user name) are refused
// until it ends; the next failure after it starts a new one. A login path
// calls Limiter.AllowLogin before asking its authenticator and
// Limiter.LoginFailed after the authenticator refused the credentials;
// user names are compared trimmed and case-insensitively, and passwords
// never reach this package. SMTPReply answers a refused AUTH, POP3Reply a
// refused USER, PASS or AUTH, and IMAPText gives the text of the tagged NO
// that answers a refused LOGIN or AUTHENTICATE.
//
// Sources are keyed by IPv4 address, by IPv6 prefix (/64 unless
// IPv6Prefix says otherwise), IPv4-mapped IPv6 being treated as IPv4; all
// clients without an IP address share one key. The access list runs
// first (first match wins; a denied source is never tracked), then the
// trusted networks (exempt and never tracked; only the lockout of a user
// name applies to them), then the limits.
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
//			serve(c) // calls lim.AllowMessage / lim.AllowRecipient on MAIL / RCPT,
//			         // lim.AllowLogin / lim.LoginFailed around AUTH
//		}()
//	}
//
// Connection ownership and concurrency: the package never touches a
// connection; the caller owns it, writes the reply and closes it (a
// refused login leaves the session usable: the caller decides). A Lease
// is the only thing Admit hands out, and releasing it (once; more is a
// no-op) is the caller's job when the connection ends. A Limiter, its
// Store and Leases are safe for concurrent use. Nothing runs in the
// background: rates reset lazily on the next event, idle sources and ended
// failure windows expire lazily and are swept when the table is full, and
// the table's size, failure entries included, is bounded (see
// MemoryStore). A source with connections in flight is never
// forgotten, so in-flight counts cannot leak or go negative. Every call that
// may reach the Store takes a context, so a Store kept elsewhere (Redis)
// can be bounded by it. Limiter.Stats returns all the statistics in one
// value: totals, peaks, and the counters of the sources asked about.
package ratelimit
