package backend

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/mailedge/mailedge/internal/bufpool"
	"github.com/mailedge/mailedge/internal/prefixconn"
	"github.com/mailedge/mailedge/starttls"
)

// startTLS reads and checks the greeting itself, so a refusal is the same
// *GreetingError whatever the Security, then lets starttls.Client replay it
// and do EHLO/CAPABILITY/CAPA, STARTTLS/STLS and the handshake. Any bytes
// the backend sent past its greeting are replayed too, so the Client's
// response-injection check still sees them.
func (d *Dialer) startTLS(ctx context.Context, c *Conn, deadline time.Time) error {
	br := bufpool.Get(c.Conn, bufpool.Small)
	defer bufpool.Put(br) // replay below is a copy
	g, err := readGreeting(br, d.Protocol, d.maxLineLength())
	if err != nil {
		return err
	}
	replay := append([]byte(nil), g...)
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		replay = append(replay, rest...)
	}
	remaining := time.Until(deadline)
	if remaining <= 0 {
		return fmt.Errorf("STARTTLS: %w", os.ErrDeadlineExceeded) // Client would take 0 as its default
	}
	cl := starttls.Client{
		Protocol:      d.Protocol,
		TLSConfig:     d.tlsConfig(),
		Hostname:      d.hostname(),
		Timeout:       remaining,
		MaxLineLength: d.maxLineLength(),
	}
	up, err := cl.Upgrade(ctx, prefixconn.New(c.Conn, replay))
	if err != nil {
		return err
	}
	// Upgrade clears the deadline it set; the rest of Dial still needs one.
	if err := up.Conn.SetDeadline(deadline); err != nil {
		return err
	}
	c.Conn, c.Greeting, c.Upgraded = up.Conn, g, true
	return nil
}
