// Package mailedge is an embeddable library of mail-protocol proxy primitives:
// the pieces an application needs to put TLS in front of SMTP (RFC 5321,
// RFC 3207), IMAP (RFC 9051, RFC 3501) and POP3 (RFC 1939, RFC 2595) servers,
// the way an ADC, Traefik, HAProxy or nginx's mail module does, as Go packages
// that a custom gateway wires into its own listeners.
//
// The root package holds Proxy, which runs those pieces for one listener,
// and ProxyListener, for listeners behind another balancer that sends a
// PROXY protocol header. Each piece is a package of its own:
//
//   - sni: the certificate store. Selects a certificate by SNI name (exact,
//     then one-label wildcard), with a default or a strict refusal; loads
//     cert/key pairs, Let's Encrypt folders and Postfix SNI maps; reloads
//     atomically; lists expiry; builds a *tls.Config with the TLS policy
//     (TLS 1.2 minimum, mail ALPN ids only, against ALPACA).
//   - starttls: the SMTP, IMAP and POP3 dialogues up to the TLS switch,
//     toward clients (Server) and toward STARTTLS-only backends (Client), and
//     the handover that synchronises the two conversations.
//   - backend: reaching a mail server. A Dialer per member (plain = offload,
//     TLS or STARTTLS = bridging) that tells the backend the real client
//     address (PROXY v1/v2, XCLIENT, IMAP ID), and a Pool with balancing,
//     failover, health marks and draining.
//   - bridge: after both ends are ready, the two-way copy with half-close,
//     idle and session timeouts, counters, an SMTP line inspector and IMAP
//     and POP3 STARTTLS guards; a Poller holds idle sessions with no
//     goroutine at all.
//   - monitor: protocol health probes (SMTP, IMAP, POP3, TLS certificate,
//     greeting) and the Checker that turns them into up/down state.
//   - ratelimit: admission per source address: access lists, trusted
//     networks, in-flight connections, connection, message and recipient
//     rates, refusals in each protocol's own words.
//
// A connection travels through them in this order:
//
//	net.Listener.Accept
//	  -> ratelimit.Limiter.Admit(ctx, src)      refuse in the protocol's words
//	  -> client side: tls.Server with sni's *tls.Config (993/465/995), or
//	     starttls.Server.Serve (143/587/25/110) until TLS is on
//	  -> backend.Pool.Dial(ctx, client)         healthy member, PROXY/XCLIENT
//	  -> starttls.Handover                      greeting and capabilities
//	  -> bridge.Join or Start                   copy both ways until done
//
// Proxy is that whole path in one value, for applications that need no more
// control than its fields give: a listener, a starttls.Server, a Backend (a
// backend.Pool or Dialer), an optional ratelimit.Limiter, bridge.Options, and
// a callback per finished session. Its Serve runs each connection up to the
// copy on a reused worker goroutine, then leaves the session to the bridge,
// which parks it in a bridge.Poller while it is idle: a session waiting for
// its next command costs its heap objects (about 6.5 KiB with TLS) and no
// goroutine stack. Each step stays usable on its own for applications that
// need to do something between them. docs/architecture.md follows a
// connection through every step and says which goroutine runs what.
//
// No package keeps global mutable state; every blocking call takes a
// context.Context; every goroutine a package starts ends when its owner's
// Close or context ends. The programs in examples/ wire the packages together:
// examples/gateway runs a complete multi-domain mail TLS gateway with demo
// backends and no setup.
package mailedge
