package ratelimit

import (
	"errors"
)

// SMTPReply returns the SMTP reply for err, CRLF-terminated and ready to
// write on the connection, in Postfix's words (smtpd.c), with hostname
// after the enhanced status code when it is not empty:
//
//	421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1   (InFlight, ConnRate)
//	450 4.7.1 Error: too much mail from 192.0.2.1                         (MessageRate)
//	450 4.7.1 Error: too many recipients from 192.0.2.1                   (RecipientRate)
//	554 5.7.1 mx.example.com Error: access denied for 192.0.2.1           (Denied)
//	421 4.3.2 mx.example.com Error: too many clients, try again later     (Capacity)
//
// Postfix answers the message and recipient rates with 450 and no host
// name; the connection is kept, so the session stays usable. A 421 reply
// is sent instead of the greeting and the connection closed (RFC 5321
// §3.8); 554 in place of the greeting means no service (RFC 5321 §3.1).
// For any other non-nil error it returns a 421 4.3.0 reply; for nil, "".
func SMTPReply(err error, hostname string) string {
	if err == nil {
		return ""
	}
	host := ""
	if hostname != "" {
		host = hostname + " "
	}
	var e *LimitError
	if !errors.As(err, &e) {
		return "421 4.3.0 " + host + "Error: temporary failure, try again later\r\n"
	}
	who := addrString(e.Addr)
	switch e.Kind {
	case Denied:
		return "554 5.7.1 " + host + "Error: access denied for " + who + "\r\n"
	case MessageRate:
		return "450 4.7.1 Error: too much mail from " + who + "\r\n"
	case RecipientRate:
		return "450 4.7.1 Error: too many recipients from " + who + "\r\n"
	case Capacity:
		return "421 4.3.2 " + host + "Error: too many clients, try again later\r\n"
	}
	return "421 4.7.0 " + host + "Error: too many connections from " + who + "\r\n"
}

// IMAPReply returns the untagged BYE that refuses an IMAP connection
// instead of the greeting (RFC 9051 §7.1.5), CRLF-terminated. Limits use
// the UNAVAILABLE response code of RFC 5530 ("temporary failure"):
//
//	S: * BYE [UNAVAILABLE] Too many connections from 192.0.2.1
//
// An ACL denial carries no response code, since none of RFC 5530's fits a
// refused address and UNAVAILABLE would invite retries:
//
//	S: * BYE Access denied for 192.0.2.1
//
// For any other non-nil error it returns "* BYE [UNAVAILABLE] Temporary
// failure, try again later"; for nil, "".
func IMAPReply(err error) string {
	if err == nil {
		return ""
	}
	var e *LimitError
	if !errors.As(err, &e) {
		return "* BYE [UNAVAILABLE] Temporary failure, try again later\r\n"
	}
	switch e.Kind {
	case Denied:
		return "* BYE Access denied for " + addrString(e.Addr) + "\r\n"
	case Capacity:
		return "* BYE [UNAVAILABLE] Too many clients, try again later\r\n"
	}
	return "* BYE [UNAVAILABLE] " + text(e) + "\r\n"
}

// POP3Reply returns the -ERR that refuses a POP3 connection instead of the
// greeting, CRLF-terminated, with the extended response codes of RFC 2449
// and RFC 3206: SYS/TEMP for limits (a temporary system condition; retry
// later) and SYS/PERM for an ACL denial (do not retry; AUTH would blame the
// credentials, which were never sent):
//
//	-ERR [SYS/TEMP] Too many connections from 192.0.2.1
//	-ERR [SYS/PERM] Access denied for 192.0.2.1
//
// For any other non-nil error it returns "-ERR [SYS/TEMP] Temporary
// failure, try again later"; for nil, "".
func POP3Reply(err error) string {
	if err == nil {
		return ""
	}
	var e *LimitError
	if !errors.As(err, &e) {
		return "-ERR [SYS/TEMP] Temporary failure, try again later\r\n"
	}
	switch e.Kind {
	case Denied:
		return "-ERR [SYS/PERM] Access denied for " + addrString(e.Addr) + "\r\n"
	case Capacity:
		return "-ERR [SYS/TEMP] Too many clients, try again later\r\n"
	}
	return "-ERR [SYS/TEMP] " + text(e) + "\r\n"
}

// text is the human part of an IMAP or POP3 refusal for a limit.
func text(e *LimitError) string {
	who := addrString(e.Addr)
	switch e.Kind {
	case MessageRate:
		return "Too much mail from " + who
	case RecipientRate:
		return "Too many recipients from " + who
	}
	return "Too many connections from " + who
}
