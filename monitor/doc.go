// Package monitor health-checks mail backends: protocol probes for SMTP
// (RFC 5321, STARTTLS RFC 3207, AUTH RFC 4954), IMAP (RFC 9051/3501), POP3
// (RFC 1939, CAPA RFC 2449, STLS RFC 2595) and TLS certificates, and a
// Checker that runs a probe on a schedule and turns its results into an
// up/down state with rise/fall counts, a separate interval while down, and
// jitter.
//
// Probes go from cheap to thorough: [Greeting] connects and reads the
// greeting (NetScaler's nssmtp.pl); [SMTP], [IMAP] and [POP3] log in and look
// at the mailbox when given credentials (the IMAP login, folder listing and
// SMTP AUTH that validate a NetScaler TLS offload); [Certificate] verifies
// the chain and name and fails under an expiry threshold. A failed [Result]
// carries an [*Error] with a precise reason ("no greeting within 2s", "EHLO
// refused: 550 ...", "TLS verify failed: x509: certificate is valid for
// a, not b") and a kind to branch on with errors.Is (ErrNoGreeting,
// ErrTLS, ...).
//
// Typical usage:
//
//	c := &monitor.Checker{
//		Name:     "mx1",
//		Addr:     "10.0.0.1:25",
//		Probe:    monitor.SMTP{Security: starttls.STARTTLS, Hostname: "edge.example.com"},
//		Interval: 5 * time.Second, Timeout: 2 * time.Second, DownTime: 30 * time.Second,
//		OnChange: monitor.MarkPool(pool), // pool.SetUp(name, up)
//	}
//	go c.Run(ctx)      // until ctx ends
//	st := c.Status()   // any time: Up, Since, Last.Err, Last.Latency
//
// Connection ownership and concurrency: a probe opens its own connection
// and closes it before it returns; nothing outlives the call. Every probe
// returns by its context's deadline (DefaultTimeout when the context has
// none): the deadline is set on the connection, deadlines that client
// libraries set are capped at it, and cancelling the context closes the
// connection. Probe values are read-only configuration, safe to share
// between goroutines. A Checker's Status is safe to read from any goroutine
// while Run or CheckOnce updates it; OnChange is called one change at a time
// from the goroutine that recorded the result. Run starts no goroutines
// besides those a probe starts and waits for (imapclient's reader), so one
// goroutine per Checker is the whole cost; the package benchmark measures
// 1,000 of them.
package monitor
