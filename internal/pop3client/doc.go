// Package pop3client is a small POP3 client (RFC 1939) with CAPA (RFC 2449)
// and STLS (RFC 2595), enough to health-check a POP3 server: read the greeting,
// list capabilities, upgrade to TLS, log in with USER/PASS, STAT the maildrop
// and QUIT.
//
// Typical usage:
//
//	c, err := pop3client.Dial(ctx, "pop.example.com:110")
//	if err != nil { ... }
//	defer c.Close()
//	if _, err := c.Greeting(ctx); err != nil { ... }
//	if err := c.StartTLS(ctx, &tls.Config{ServerName: "pop.example.com"}); err != nil { ... }
//	if err := c.User(ctx, "alice"); err != nil { ... }
//	if err := c.Pass(ctx, "secret"); err != nil { ... }
//	n, size, err := c.Stat(ctx)
//	err = c.Quit(ctx)
//
// The reply parser ([Reader]) bounds every line (MaxLineLength) and the number
// of lines in a multi-line reply, and undoes dot-stuffing; a -ERR reply comes
// back as an [*Error] carrying the server's text.
//
// Connection ownership and concurrency: a [Client] owns its net.Conn from
// [NewClient] on and closes it in [Client.Quit] or [Client.Close]. Each call
// sets the connection's deadline from its context (no deadline when the
// context has none) and interrupts the I/O when the context is cancelled, so a
// deadline set on the conn before NewClient is not kept. A Client is not safe
// for concurrent use; POP3 is a strict request/response protocol.
package pop3client
