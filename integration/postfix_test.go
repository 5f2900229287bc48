//go:build unix

package integration_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deliverWait bounds the wait for Postfix to queue and deliver a message.
const deliverWait = 20 * time.Second

// ehlo sends EHLO and returns the reply's lines.
func (w *wire) ehlo(name string) []string {
	w.t.Helper()
	w.send("EHLO " + name)
	reply := w.smtpReply()
	require.True(w.t, strings.HasPrefix(reply[0], "250"), "%q", reply)
	return reply
}

// expect sends line and checks the reply starts with code.
func (w *wire) expect(line, code string) string {
	w.t.Helper()
	w.send(line)
	reply := strings.Join(w.smtpReply(), "\n")
	require.True(w.t, strings.HasPrefix(reply, code), "%s -> %s", line, reply)
	return reply
}

// message returns a small message whose Subject and body carry tok.
func message(from, to, tok string) string {
	return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@example.com>\r\n\r\nbody line for %s\r\n.. a dot-stuffed line\r\n", from, to, tok, tok, tok)
}

// sendMail runs MAIL, RCPT, DATA for one message and returns the queue id
// answer.
func (w *wire) sendMail(from, to, tok string) string {
	w.t.Helper()
	w.expect("MAIL FROM:<"+from+">", "250")
	w.expect("RCPT TO:<"+to+">", "250")
	w.expect("DATA", "354")
	_, err := w.conn.Write([]byte(message(from, to, tok) + ".\r\n"))
	require.NoError(w.t, err)
	return w.smtpReply()[0]
}

// assertDelivered waits for the message tagged tok in the demo Maildir,
// checks that its Subject, body and the given dot line arrived intact, and
// returns it.
func assertDelivered(t *testing.T, e *env, tok, dotLine string) string {
	t.Helper()
	msg := waitFileWith(t, e.maildir(), tok, deliverWait)
	assert.Contains(t, msg, "Subject: "+tok+"\n")
	assert.Contains(t, msg, "body line for "+tok+"\n")
	assert.Contains(t, msg, "\n"+dotLine+"\n")
	return msg
}

// wireDot is the dot line of message as written raw on the wire by
// sendMail ("..") after the server undid the dot-stuffing; clients that
// stuff themselves deliver the file's line intact (clientDot).
const (
	wireDot   = ". a dot-stuffed line"
	clientDot = ".. a dot-stuffed line"
)

// TestPostfixSubmissionAUTH submits through the "submission" listener
// (STARTTLS required by the gateway) to Postfix's plain port with XCLIENT:
// AUTH PLAIN is checked by Dovecot's SASL, the message is delivered, and
// Postfix logs the real client address.
func TestPostfixSubmissionAUTH(t *testing.T) {
	e := need(t)
	const src = "127.0.0.5"
	w := dialWire(t, e.gw.addr["submission"], "", src)
	require.True(t, strings.HasPrefix(w.line(), "220"))
	caps := strings.Join(w.ehlo("client.example"), "\n")
	require.Contains(t, caps, "STARTTLS")
	w.expect("MAIL FROM:<"+user+">", "530")
	w.expect("STARTTLS", "220")
	w.startTLS(sniNames[0])
	caps = strings.Join(w.ehlo("client.example"), "\n")
	assert.NotContains(t, caps, "STARTTLS")
	assert.Contains(t, caps, "AUTH")
	w.expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00wrong")), "535")
	w.expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)), "235")
	tok := token("submission")
	// An authenticated client may relay; the delivery to the local
	// account is what is checked.
	require.True(t, strings.HasPrefix(w.sendMail(user, user, tok), "250"))
	w.expect("QUIT", "221")
	w.close()

	assertDelivered(t, e, tok, wireDot)
	log := e.postfix.maillog()
	waitLogLine(t, log, logWait, "connect from unknown["+src+"]")
	waitLogLine(t, log, logWait, "client=unknown["+src+"]", "sasl_method=PLAIN", "sasl_username="+user)
	waitLogLine(t, log, logWait, "authentication failed", "unknown["+src+"]")
}

// TestPostfixSMTPSBridging sends over the gateway's implicit-TLS "smtps"
// listener, bridged over a new TLS session to Postfix's wrapper-mode port;
// a PROXY v2 header (before the backend TLS handshake) carries the client
// address.
func TestPostfixSMTPSBridging(t *testing.T) {
	e := need(t)
	const src = "127.0.0.7"
	w := dialWire(t, e.gw.addr["smtps"], sniNames[1], src)
	require.True(t, strings.HasPrefix(w.line(), "220"))
	caps := strings.Join(w.ehlo("client.example"), "\n")
	assert.NotContains(t, caps, "STARTTLS")
	w.expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)), "235")
	tok := token("smtps")
	require.True(t, strings.HasPrefix(w.sendMail(user, user, tok), "250"))
	w.expect("QUIT", "221")
	w.close()

	msg := assertDelivered(t, e, tok, wireDot)
	assert.Contains(t, msg, "(using TLS", "Received header of the bridged TLS leg")
	log := e.postfix.maillog()
	// The bridged leg is TLS (wrapper mode) from the client's address.
	waitLogLine(t, log, logWait, "TLS connection established from unknown["+src+"]")
	waitLogLine(t, log, logWait, "client=unknown["+src+"]", "sasl_username="+user)
}

// TestPostfixProxyV2 sends inbound mail (no AUTH, local recipient) over the
// port-25 style "mx" listener, which reaches Postfix's
// smtpd_upstream_proxy_protocol=haproxy port with PROXY v2.
func TestPostfixProxyV2(t *testing.T) {
	e := need(t)
	const src = "127.0.0.6"
	w := dialWire(t, e.gw.addr["mx"], "", src)
	require.True(t, strings.HasPrefix(w.line(), "220"))
	w.ehlo("sender.example.org")
	tok := token("mx")
	require.True(t, strings.HasPrefix(w.sendMail("someone@sender.example.org", user, tok), "250"))
	w.expect("QUIT", "221")
	w.close()

	assertDelivered(t, e, tok, wireDot)
	waitLogLine(t, e.postfix.maillog(), logWait, "client=unknown["+src+"]")
}

// TestPostfixOpenRelayRefused is the open-relay check that load-balanced SMTP
// needs, since the servers see the balancer's address rather than the
// client's (a NetScaler in front of Exchange is the classic case): a foreign
// sender to a foreign recipient must be refused although every connection
// reaches Postfix from the gateway's loopback address, on every SMTP
// listener.
func TestPostfixOpenRelayRefused(t *testing.T) {
	e := need(t)
	tests := []struct {
		name, listener, serverName string
		starttls                   bool
	}{
		{name: "mx plain", listener: "mx"},
		{name: "mx starttls", listener: "mx", starttls: true},
		{name: "submission without AUTH", listener: "submission", starttls: true},
		{name: "smtps without AUTH", listener: "smtps", serverName: sniNames[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := dialWire(t, e.gw.addr[tt.listener], tt.serverName, "127.0.0.9")
			require.True(t, strings.HasPrefix(w.line(), "220"))
			w.ehlo("relay-tester.example.net")
			if tt.starttls {
				w.expect("STARTTLS", "220")
				w.startTLS(sniNames[0])
				w.ehlo("relay-tester.example.net")
			}
			w.expect("MAIL FROM:<spammer@foreign.example.net>", "250")
			reply := w.expect("RCPT TO:<victim@elsewhere.example.org>", "554")
			assert.Contains(t, reply, "5.7.1")
			assert.Contains(t, reply, "Relay access denied")
			w.expect("QUIT", "221")
		})
	}
	waitLogLine(t, e.postfix.maillog(), logWait, "NOQUEUE: reject", "unknown[127.0.0.9]", "Relay access denied")
}

// TestMXInFlightLimit holds the per-source in-flight limit of the "mx"
// listener open and checks the next connection is refused with the SMTP
// words for it, and that a freed slot admits again.
func TestMXInFlightLimit(t *testing.T) {
	e := need(t)
	const src = "127.0.0.8"
	var held []*wire
	for range inflight {
		w := dialWire(t, e.gw.addr["mx"], "", src)
		require.True(t, strings.HasPrefix(w.line(), "220"))
		held = append(held, w)
	}
	over := dialWire(t, e.gw.addr["mx"], "", src)
	refusal := over.line()
	assert.True(t, strings.HasPrefix(refusal, "421 4.7.0"), refusal)
	_, err := over.r.ReadString('\n')
	assert.Error(t, err, "the gateway must close after the refusal")

	// Another source is not affected.
	other := dialWire(t, e.gw.addr["mx"], "", "127.0.0.10")
	assert.True(t, strings.HasPrefix(other.line(), "220"))
	other.send("QUIT")
	other.close()

	held[0].send("QUIT")
	held[0].smtpReply()
	held[0].close()
	e.gw.log.wait(t, 0, logWait, re(`msg=session`), re(`listener=mx `), re(`client=`+src), re(`outcome=(ok|reset|client_quit)`))
	again := dialWire(t, e.gw.addr["mx"], "", src)
	assert.True(t, strings.HasPrefix(again.line(), "220"))
	e.gw.log.wait(t, 0, logWait, re(`listener=mx `), re(`client=`+src), re(`outcome=rate_limited`))
}
