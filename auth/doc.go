// Package auth takes the login at the edge: after the client side of
// package starttls (implicit TLS, or STARTTLS), a Server reads the
// client's login (IMAP LOGIN and AUTHENTICATE, POP3 USER/PASS and AUTH,
// SMTP AUTH, or for inbound SMTP the first RCPT TO), asks an Authenticator
// the application implements who the user is and where the mailbox lives,
// dials that backend, logs in there with a mechanism the backend offers,
// and returns both connections for the copy of package bridge. This is what
// nginx's mail module and Dovecot's proxy do; mailedge.Proxy does it when
// its Login field is set.
//
// The flow stays one-way: listener, limits, TLS, login, dial, backend
// login, bridge. Failed logins are delayed (growing with each failure),
// limited per session, and counted per source and per user through a
// ratelimit.Limiter, whose Store a fleet can share.
//
// Credentials are of type Secret, which prints as "[redacted]": no log
// line, metric label or error of this package holds a password.
//
// Two Authenticators come with the package: Static, over a users file, and
// the nginx auth_http client in package auth/authhttp, so that an existing
// nginx mail deployment's auth service works unchanged.
package auth
