// Package authhttp is an auth.Authenticator that asks an HTTP service
// speaking nginx's auth_http protocol (ngx_mail_auth_http_module), so that
// the auth service of an nginx mail proxy serves mailedge unchanged.
//
// Typical usage:
//
//	c := &authhttp.Client{
//		URL:    "http://127.0.0.1:9000/mail/auth",
//		Header: http.Header{"X-Auth-Key": {"secret"}}, // auth_http_header
//		Dialer: &backend.Dialer{IMAPID: true},         // template of the backends
//	}
//	defer c.CloseIdleConnections()
//	// c is an auth.Authenticator
//
// # Protocol
//
// For each login attempt, Authenticate sends a GET to URL whose headers
// describe the login, and reads the decision from the headers of the
// answer; the answer's body is ignored. Header names are spelt as nginx
// spells them.
//
//	Request header        From auth.Request
//	Host                  the URL's host
//	Auth-Method           Mechanism: "plain" (Plain and Login, as nginx), "external", "none"
//	Auth-User             User, URL-escaped as nginx does (space, "%", controls as %XX)
//	Auth-Pass             Password, escaped the same way; empty for External and None
//	Auth-Protocol         Protocol: "smtp", "imap", "pop3"
//	Auth-Login-Attempt    Attempt (at least 1)
//	Client-IP             the IP of Client, without port
//	Client-Host           "[UNAVAILABLE]", SMTP only (no DNS lookup is made)
//	Auth-SMTP-Helo        Helo                         (Mechanism None only)
//	Auth-SMTP-From        "MAIL FROM:<" MailFrom ">"   (Mechanism None only)
//	Auth-SMTP-To          "RCPT TO:<" RcptTo ">"       (Mechanism None only)
//	Auth-SSL              "on" when TLS is set
//	Auth-SSL-Protocol     TLS.Version, OpenSSL's name ("TLSv1.3")
//	Auth-SSL-Cipher       TLS.CipherSuite, OpenSSL's name ("ECDHE-RSA-AES128-GCM-SHA256")
//	Auth-SSL-Verify       "SUCCESS" with ClientCert, "NONE" without a certificate,
//	                      "FAILED:certificate not verified" for one not verified
//	Auth-SSL-Subject      the certificate's subject, RFC 2253 ("CN=alice,O=Example"):
//	                      ClientCert, or the unverified one of TLS.PeerCertificates
//	Auth-SSL-Issuer       its issuer, the same way
//	Auth-SSL-Serial       its serial number, upper-case hex
//	Auth-SSL-Fingerprint  SHA-1 of it, lower-case hex
//	Auth-SSL-Cert         it as PEM, URL-escaped (with Client.PassClientCert)
//	(Client.Header)       added last, as auth_http_header
//
//	Answer header         To auth.Result
//	Auth-Status: OK       OK; also implied when Auth-Status is absent, as in nginx
//	Auth-Server           Backend: a copy of Client.Dialer with Addr = Auth-Server:Auth-Port
//	Auth-Port               and Protocol = the request's (both required with OK)
//	Auth-User             User: the name to log in with at the backend
//	Auth-Pass             Password: the password for the backend (required with OK
//	                        for IMAP and POP3 when the client gave none)
//	Auth-Status: text     a refusal, Message = text
//	Auth-Wait: N          Wait = N seconds (at most MaxWait) and the client may try
//	                        again; without it, Close (nginx closes the session)
//	Auth-Error-Code       SMTPCode ("535 5.7.8"); a 4xx code also sets Temporary
//	Auth-Status: WAIT     ask again after Auth-Wait seconds, telling the client nothing
//
// Auth-User and Auth-Pass in the answer are taken as they are, not
// unescaped: nginx does not unescape them either.
//
// A login is refused by any Auth-Status other than "OK" or "WAIT" (an empty
// one too). Everything else that does not give a decision is an error, which
// the caller turns into a temporary failure: the service unreachable or
// slower than Client.Timeout, an HTTP status other than 2xx, an answer over
// Client.MaxResponseBytes, an OK without a valid Auth-Server (an IP address,
// as nginx requires) and Auth-Port, and an answer with a control character
// in any of the headers above (see below). Error texts never hold the
// password of the request or of the answer.
//
// # Differences from nginx
//
//   - Connections to the auth service are kept alive and reused (HTTP/1.1,
//     or HTTP/2 over https), where nginx opens a new HTTP/1.0 connection for
//     every login.
//   - Only a 2xx answer is read: nginx reads the headers of any answer and
//     does not look at the status, so that an error page of a proxy in
//     front of the service would be read as a decision. An answer without a
//     status line, which nginx accepts, is an error.
//   - A control character (other than HTAB) in any header read rejects the
//     whole answer, so that no value can add a line to the mail dialogue.
//     nginx's own header parser ends a value at CR or LF but passes NUL and
//     the other control characters on.
//   - Auth-Wait is cut to MaxWait (60 s); "Auth-Status: WAIT" is asked at
//     most 10 times in one Authenticate. nginx has no bound on either.
//   - DEL (0x7f) in Auth-User or Auth-Pass is escaped as %7F; nginx sends it
//     raw, which Go's HTTP client refuses. Control characters in the values
//     nginx sends unescaped (Auth-SMTP-*, the certificate names) are escaped
//     as %XX rather than sent.
//   - Auth-SMTP-From and Auth-SMTP-To are rebuilt from the addresses
//     ("MAIL FROM:<a@example.com>"); nginx sends the client's whole command
//     line, with its parameters (" SIZE=100") and its spelling.
//   - Auth-SSL-Verify is sent for every TLS session ("NONE" without a
//     certificate), not only where client certificates are asked for
//     (ssl_verify_client).
//   - An empty Auth-Status refuses; nginx lets such an SMTP login through.
//   - A 4xx Auth-Error-Code makes the refusal temporary in IMAP and POP3 too
//     ([UNAVAILABLE], [SYS/TEMP]); nginx reads Auth-Error-Code for SMTP only.
//   - nginx's Proxy-Protocol-Addr, -Port, -Server-Addr and -Server-Port are
//     not sent (the request does not say whether a PROXY header was read),
//     nor Auth-Salt (APOP and CRAM-MD5 are not offered).
//   - The SMTP code of a refusal without Auth-Error-Code is the caller's
//     (mailedge says 535 5.7.8, nginx 535 5.7.0).
//   - An auth service on a Unix socket (nginx's "unix:/path") needs a
//     Transport whose DialContext dials it; the URL then names any host.
package authhttp
