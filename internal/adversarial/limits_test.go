package adversarial_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// TestResourceLimits is class G: handshake deadlines, the per-source
// in-flight cap counting half-open handshakes, limits keyed on the address
// the Proxy sees (the PROXY source behind a trusted balancer), and the
// SMTP rates of the inspector.
func TestResourceLimits(t *testing.T) {
	t.Run("G1_half_ClientHello_closed_at_handshake_deadline", testHalfClientHello)
	t.Run("G2_silence_after_220_Ready_closed_at_handshake_deadline", testSilenceAfterReady)
	t.Run("G3_half_open_implicit_handshakes_count_toward_InFlight", func(t *testing.T) { testHalfOpenInFlight(t, true) })
	t.Run("G3_stalled_STARTTLS_handshakes_count_toward_InFlight", func(t *testing.T) { testHalfOpenInFlight(t, false) })
	t.Run("G4_limits_key_on_the_PROXY_source", testLimitsKeyOnProxySource)
	t.Run("G5_SMTP_rates_count_commands_pipelined_at_handover", testRatesAtHandover)
}

func testHalfClientHello(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.IMAP, TLSConfig: p.server, HandshakeTimeout: 300 * time.Millisecond}, true)
	c := dialConv(t, addr)
	hello := clientHello(t, p.client)
	c.send(string(hello[:len(hello)/2]))
	r := result(t, results)
	require.Error(t, r.err)
	assert.True(t, isTimeout(r.err), "got %v; want a timeout", r.err)
	assert.Empty(t, c.rest(), "the server answered half a ClientHello")
}

func testSilenceAfterReady(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{TLSConfig: p.server, HandshakeTimeout: 300 * time.Millisecond}, false)
	c := dialConv(t, addr)
	d := dialogues[starttls.SMTP]
	d.beforeUpgrade(c)
	c.send(d.starttls)
	require.True(t, strings.HasPrefix(c.must(), "220 "))
	r := result(t, results)
	require.Error(t, r.err)
	assert.True(t, isTimeout(r.err), "got %v; want a timeout", r.err)
	assert.Empty(t, c.rest())
}

// waitFor polls cond until it holds or ioWait passes (there is no event to
// wait on: the Limiter is only observable through its statistics).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(ioWait); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			require.FailNow(t, "timed out waiting for "+what)
		}
	}
}

// testHalfOpenInFlight: N clients stalled in the handshake hold the
// source's N slots; the next one is refused at once, without a backend dial.
func testHalfOpenInFlight(t *testing.T, implicit bool) {
	leaktest.Check(t)
	p := newPKI(t)
	const n = 2
	be := newFake(t, func(c net.Conn) {})
	lim := &ratelimit.Limiter{Limits: ratelimit.Limits{InFlight: n}}
	addr := serveProxy(t, &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.SMTP, TLSConfig: p.server, Hostname: "edge.example", HandshakeTimeout: time.Minute},
		Implicit: implicit,
		Backend:  &backend.Dialer{Addr: be.Addr()},
		Limiter:  lim,
	})
	hello := clientHello(t, p.client)
	var stalled []*conv
	for range n {
		c := dialConv(t, addr)
		if !implicit {
			d := dialogues[starttls.SMTP]
			d.beforeUpgrade(c)
			c.send(d.starttls)
			require.True(t, strings.HasPrefix(c.must(), "220 "))
		}
		c.send(string(hello[:len(hello)/2]))
		stalled = append(stalled, c)
	}
	local := netip.MustParseAddr("127.0.0.1")
	waitFor(t, "the stalled handshakes to be admitted", func() bool {
		st, ok := lim.Stats(local).Sources[local]
		return ok && st.InFlight == n
	})
	extra := dialConv(t, addr)
	refusal := extra.rest()
	if implicit {
		assert.Empty(t, refusal, "an implicit-TLS refusal is a close")
	} else {
		assert.True(t, strings.HasPrefix(refusal, "421 4.7.0 edge.example"), "got %q", refusal)
	}
	st := lim.Stats(local).Sources[local]
	assert.Equal(t, n, st.InFlight, "the refused connection took a slot")
	assert.Equal(t, 1, st.Refusals)
	assert.Zero(t, be.Accepted(), "a backend was dialled")
	for _, c := range stalled {
		c.c.Close()
	}
}

// testLimitsKeyOnProxySource: behind a trusted balancer every connection
// comes from the balancer's address; the limits must count the client
// address of the PROXY header instead.
func testLimitsKeyOnProxySource(t *testing.T) {
	leaktest.Check(t)
	be := newFake(t, func(c net.Conn) {
		c.Write([]byte("220 backend\r\n"))
		c.Read(make([]byte, 1))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pl := &proxyproto.Listener{Listener: l, ReadHeaderTimeout: ioWait,
		ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	addr := serveProxyOn(t, &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Disallow, Hostname: "edge.example"},
		Backend: &backend.Dialer{Addr: be.Addr()},
		Limiter: &ratelimit.Limiter{Limits: ratelimit.Limits{InFlight: 1}},
	}, pl)
	connect := func(src string) *conv {
		c := dialConv(t, addr)
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 40000}, &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 25})
		b, err := h.Format()
		require.NoError(t, err)
		c.send(string(b))
		return c
	}
	a := connect("192.0.2.1")
	assert.True(t, strings.HasPrefix(a.must(), "220 edge.example"))
	b := connect("192.0.2.2") // same real address, another client
	assert.True(t, strings.HasPrefix(b.must(), "220 edge.example"))
	again := connect("192.0.2.1")
	assert.Equal(t, "421 4.7.0 edge.example Error: too many connections from 192.0.2.1\r\n", again.must())
}

// testRatesAtHandover: with RecipientRate 2 the third RCPT of a source is
// refused (450) however the commands arrive. Commands pipelined with the
// client's first backend command are forwarded by starttls.Handover before
// bridge's inspector starts, so they must be counted too.
func testRatesAtHandover(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addrs := startDemo(t, nil)
	txn := "MAIL FROM:<a@example.com>\r\n" + strings.Repeat("RCPT TO:<demo@example.com>\r\n", 4)
	var bypassed []string
	// Control: one command at a time after the handover, all through the
	// inspector.
	control := serveProxy(t, &mailedge.Proxy{
		Server:      &starttls.Server{Protocol: starttls.SMTP, TLSConfig: p.server},
		Backend:     &backend.Dialer{Addr: addrs.MX},
		Limiter:     &ratelimit.Limiter{Limits: ratelimit.Limits{RecipientRate: 2}},
		InspectSMTP: true,
	})
	c := dialConv(t, control)
	d := dialogues[starttls.SMTP]
	d.beforeUpgrade(c)
	c.send(d.starttls)
	require.True(t, strings.HasPrefix(c.must(), "220 "))
	c.upgrade(p.client)
	c.send("EHLO client.example\r\n")
	c.until("250 ")
	var codes []string
	for _, cmd := range strings.SplitAfter(strings.TrimSuffix(txn, "\r\n"), "\r\n") {
		c.send(strings.TrimSuffix(cmd, "\r\n") + "\r\n")
		codes = append(codes, c.must()[:3])
	}
	assert.Equal(t, "250 250 250 450 450", strings.Join(codes, " "), "control: one command at a time")
	c.c.Close()
	for _, mode := range []starttls.Mode{starttls.Allow, starttls.Require} {
		addr := serveProxy(t, &mailedge.Proxy{
			Server:      &starttls.Server{Protocol: starttls.SMTP, Mode: mode, TLSConfig: p.server},
			Backend:     &backend.Dialer{Addr: addrs.MX},
			Limiter:     &ratelimit.Limiter{Limits: ratelimit.Limits{RecipientRate: 2}},
			InspectSMTP: true,
		})
		c := dialConv(t, addr)
		d.beforeUpgrade(c)
		if mode == starttls.Require {
			c.send(d.starttls)
			require.True(t, strings.HasPrefix(c.must(), "220 "))
			c.upgrade(p.client)
			c.send("EHLO client.example\r\n" + txn)
			c.until("250 ")
		} else {
			c.send(txn)
		}
		codes = nil
		for range 5 {
			codes = append(codes, c.must()[:3])
		}
		assert.Equal(t, "250", codes[0], "MAIL")
		t.Logf("%s: replies to MAIL and 4 RCPT: %v", mode, codes)
		if strings.Join(codes, " ") != "250 250 250 450 450" {
			bypassed = append(bypassed, mode.String()+" got "+strings.Join(codes, " "))
		}
		c.c.Close()
	}
	knownFailure(t, len(bypassed) == 0, "RecipientRate 2 not enforced on commands pipelined at the handover ("+
		strings.Join(bypassed, "; ")+"): Handover forwards them before bridge's SMTPInspector runs")
}
