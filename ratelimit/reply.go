package ratelimit

import (
	"errors"
)

// SMTPReply returns the SMTP reply for err, CRLF-terminated and ready to
// write on the connection, in Postfix's words (smtpd.c), with hostname
// after the enhanced status code when it is not empty:
//
//	421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1       (InFlight, ConnRate)
//	450 4.7.1 Error: too much mail from 192.0.2.1                             (MessageRate)
//	450 4.7.1 Error: too many recipients from 192.0.2.1                       (RecipientRate)
//	450 4.7.1 Error: too many AUTH commands from 192.0.2.1                    (AuthRate)
//	454 4.7.0 Error: too many failed logins from 192.0.2.1, try again later   (Lockout)
//	454 4.7.0 Error: too many failed logins, try again later                  (UserLockout)
//	554 5.7.1 mx.example.com Error: access denied for 192.0.2.1               (Denied)
//	421 4.3.2 mx.example.com Error: too many clients, try again later         (Capacity)
//
// Postfix answers the message, recipient and AUTH rates with 450 and no
// host name; the connection is kept, so the session stays usable. A 421
// reply is sent instead of the greeting and the connection closed (RFC
// 5321 §3.8); 554 in place of the greeting means no service (RFC 5321
// §3.1).
//
// The login kinds (AuthRate, Lockout, UserLockout) come from
// Limiter.AllowLogin only, and their replies answer the AUTH command: 454
// 4.7.0 is RFC 4954's "temporary authentication failure", and the session
// stays usable (a caller that prefers to end it writes its own 421). The
// user name is never part of a reply: it comes from the client. An ACL
// denial or a full store at AUTH gets the 554 or 421 above; after either,
// close the connection.
//
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
	case AuthRate:
		return "450 4.7.1 Error: too many AUTH commands from " + who + "\r\n"
	case Lockout:
		return "454 4.7.0 Error: too many failed logins from " + who + ", try again later\r\n"
	case UserLockout:
		return "454 4.7.0 Error: too many failed logins, try again later\r\n"
	case Capacity:
		return "421 4.3.2 " + host + "Error: too many clients, try again later\r\n"
	}
	return "421 4.7.0 " + host + "Error: too many connections from " + who + "\r\n"
}

// IMAPReply returns the untagged BYE that refuses an IMAP connection
// instead of the greeting (RFC 9051 §7.1.5), CRLF-terminated: "* BYE "
// followed by IMAPText(err). Limits use the UNAVAILABLE response code of
// RFC 5530 ("temporary failure"):
//
//	S: * BYE [UNAVAILABLE] Too many connections from 192.0.2.1
//
// An ACL denial carries no response code, since none of RFC 5530's fits a
// refused address and UNAVAILABLE would invite retries:
//
//	S: * BYE Access denied for 192.0.2.1
//
// A refused LOGIN or AUTHENTICATE is answered with a tagged NO instead,
// and the session goes on; see IMAPText.
//
// For any other non-nil error it returns "* BYE [UNAVAILABLE] Temporary
// failure, try again later"; for nil, "".
func IMAPReply(err error) string {
	if err == nil {
		return ""
	}
	return "* BYE " + IMAPText(err) + "\r\n"
}

// IMAPText returns the resp-text of an IMAP refusal for err (RFC 9051 §9:
// an optional response code and human-readable text), without tag,
// status or CRLF; "" for nil. IMAPReply puts it after "* BYE "; a login
// path refusing LOGIN or AUTHENTICATE (Limiter.AllowLogin) puts it in a
// tagged NO:
//
//	C: a1 LOGIN alice secret
//	S: a1 NO [UNAVAILABLE] Too many failed logins, try again later
//
// written as tag + " NO " + IMAPText(err) + "\r\n". The texts of the login
// kinds are:
//
//	[UNAVAILABLE] Too many logins from 192.0.2.1                          (AuthRate)
//	[UNAVAILABLE] Too many failed logins from 192.0.2.1, try again later  (Lockout)
//	[UNAVAILABLE] Too many failed logins, try again later                 (UserLockout)
//
// UNAVAILABLE, not AUTHENTICATIONFAILED: the credentials were not checked,
// and a client told they were wrong would ask its user for a new password.
// The user name is never part of the text: it comes from the client.
func IMAPText(err error) string {
	if err == nil {
		return ""
	}
	var e *LimitError
	if !errors.As(err, &e) {
		return "[UNAVAILABLE] Temporary failure, try again later"
	}
	switch e.Kind {
	case Denied:
		return "Access denied for " + addrString(e.Addr)
	case Capacity:
		return "[UNAVAILABLE] Too many clients, try again later"
	}
	return "[UNAVAILABLE] " + text(e)
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
// POP3 replies carry no tag, so the same line answers a refused USER, PASS
// or AUTH (Limiter.AllowLogin) too, and the session goes on:
//
//	-ERR [SYS/TEMP] Too many logins from 192.0.2.1                          (AuthRate)
//	-ERR [SYS/TEMP] Too many failed logins from 192.0.2.1, try again later  (Lockout)
//	-ERR [SYS/TEMP] Too many failed logins, try again later                 (UserLockout)
//
// SYS/TEMP, not AUTH: RFC 3206's AUTH code blames the credentials, which
// were not checked. The user name is never part of a reply.
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
	case AuthRate:
		return "Too many logins from " + who
	case Lockout:
		return "Too many failed logins from " + who + ", try again later"
	case UserLockout:
		return "Too many failed logins, try again later"
	}
	return "Too many connections from " + who
}
