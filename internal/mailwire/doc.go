// Package mailwire is the one copy of the mail wire grammar that every side
// of mailedge shares: bounded line reading (RFC 5321 §4.5.3.1, RFC 9051
// §4, RFC 1939 §3), SMTP reply framing and EHLO keywords (RFC 5321 §4.2,
// §4.1.1.1), IMAP literals, command names and response lines (RFC 9051
// §4.3, §7; RFC 7888 non-synchronising literals; RFC 3516 literal8), POP3
// status lines and dot-stuffed multi-line bodies (RFC 1939, RFC 2449), and
// the removal of STARTTLS capabilities from each protocol's capability
// answer (RFC 3207 §4.2, RFC 9051 §6.2.1, RFC 2595 §4).
//
// It is modelled on go-imap v2's internal/imapwire: the STARTTLS server and
// client (package starttls), the backend dialer (package backend), the
// health probes (package monitor) and the streaming guards of the bridge
// (package bridge) all parse with these functions, so two parsers in the
// proxy can never disagree about where a line, a reply or a literal ends.
// Security filters that disagree invite desynchronisation attacks; one
// grammar, fuzzed once, removes that class.
//
// Everything here is a pure function of its input, safe for concurrent use,
// and allocation-free unless it returns a new slice (it says so).
package mailwire
