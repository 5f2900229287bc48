//go:build unix

// XCLIENT on an implicit-TLS SMTP listener: the backend is dialled before
// the client's EHLO, so HELO and PROTO are unknown. Postfix 3.7 refused the
// PROTO=[UNAVAILABLE] the backend package used to send ("501 5.5.4 Bad PROTO
// syntax") and every session failed; unknown HELO and PROTO are now left out.
package integration_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func init() {
	listenerSpecs = append(listenerSpecs,
		"smtpsxclient:proto=smtp,tls=implicit,pool=smtpsxclient")
	extraBackends = append(extraBackends,
		func(e *env) string {
			return fmt.Sprintf("smtpsxclient=127.0.0.1:%d,security=tls,xclient,probe=none,servername=%s,ca=%s", e.postfix.Wrapper, backendName, e.caFile)
		})
}

// TestXCLIENTImplicitTLS (was a known bug): on an implicit-TLS SMTP listener the
// backend is dialled before the client's EHLO, so backend.Dialer sends
// "XCLIENT ... HELO=[UNAVAILABLE] PROTO=[UNAVAILABLE]"; Postfix 3.7 answers
// "501 5.5.4 Bad PROTO syntax: [UNAVAILABLE]" and every session fails with
// outcome=no_backend.
func TestXCLIENTImplicitTLS(t *testing.T) {
	e := need(t)
	w := dialWire(t, e.gw.addr["smtpsxclient"], sniNames[0], "127.0.0.11")
	greeting := w.line()
	require.True(t, strings.HasPrefix(greeting, "220"), "greeting %q; gateway log: %s", greeting, e.gw.lastSession("smtpsxclient"))
}

// lastSession returns the last session log line of a listener.
func (g *gateway) lastSession(listener string) string {
	g.log.mu.Lock()
	defer g.log.mu.Unlock()
	for i := len(g.log.lines) - 1; i >= 0; i-- {
		if strings.Contains(g.log.lines[i], "listener="+listener+" ") {
			return g.log.lines[i]
		}
	}
	return ""
}
