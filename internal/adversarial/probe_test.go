package adversarial_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/starttls"
)

// TestProbes is class F: monitor's verdicts on the servers of HAProxy's
// reg-tests/checks/smtp-check.vtc (220/250/221 up; garbage banner, 421,
// 5xx to EHLO down; a greeting one byte per write still up; silence a
// timeout), IMAP and POP3 refusals, and certificate failures with reasons.
func TestProbes(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	expired, err := p.ca.Expired(mailtest.ECDSA, "mail.example.com")
	if err != nil {
		t.Fatal(err)
	}
	wrongName, err := p.ca.Issue(mailtest.CertOptions{}, "other.example.net")
	if err != nil {
		t.Fatal(err)
	}
	smtpOK := map[string]string{"EHLO": "250-fake\r\n250 PIPELINING\r\n", "HELO": "250 fake\r\n", "QUIT": "221 bye\r\n"}
	tlsServe := func(leaf *mailtest.Leaf) func(net.Conn) {
		return func(c net.Conn) {
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
			tc.Handshake()
			io.Copy(io.Discard, tc)
		}
	}
	for _, tc := range []struct {
		name    string
		probe   monitor.Probe
		serve   func(net.Conn)
		timeout time.Duration
		want    error // nil: up
		reason  string
	}{
		{"F1_SMTP_220_250_221_up", monitor.SMTP{}, script{"220 fake ESMTP\r\n", smtpOK, nil}.Serve, 0, nil, ""},
		{"F1_SMTP_greeting_one_byte_per_write_up", monitor.SMTP{}, func(c net.Conn) {
			for _, b := range []byte("220 slow.example ESMTP\r\n") {
				c.Write([]byte{b})
			}
			script{"", smtpOK, nil}.Serve(c)
		}, 0, nil, ""},
		{"F1_SMTP_multiline_greeting_up", monitor.SMTP{}, script{"220-fake\r\n220 ESMTP\r\n", smtpOK, nil}.Serve, 0, nil, ""},
		{"F2_SMTP_garbage_banner_down", monitor.SMTP{}, script{"HTTP/1.0 200 OK\r\n", smtpOK, nil}.Serve, 0, monitor.ErrGreeting, ""},
		{"F2_SMTP_421_down", monitor.SMTP{}, script{"421 4.3.2 busy\r\n", smtpOK, nil}.Serve, 0, monitor.ErrGreeting, "421"},
		{"F2_SMTP_554_down", monitor.SMTP{}, script{"554 5.3.2 no\r\n", smtpOK, nil}.Serve, 0, monitor.ErrGreeting, "554"},
		{"F2_SMTP_5xx_to_EHLO_and_HELO_down", monitor.SMTP{}, script{"220 fake\r\n", map[string]string{"EHLO": "502 no\r\n", "HELO": "550 no\r\n", "QUIT": "221 bye\r\n"}, nil}.Serve, 0, monitor.ErrHello, "5"},
		{"F2_Greeting_probe_421_down", monitor.Greeting{}, script{"421 busy\r\n", smtpOK, nil}.Serve, 0, monitor.ErrGreeting, ""},
		{"F3_SMTP_silence_is_a_timeout", monitor.SMTP{}, func(c net.Conn) { io.Copy(io.Discard, c) }, 300 * time.Millisecond, monitor.ErrNoGreeting, ""},
		{"F3_Greeting_silence_is_a_timeout", monitor.Greeting{}, func(c net.Conn) { io.Copy(io.Discard, c) }, 300 * time.Millisecond, monitor.ErrNoGreeting, ""},
		{"F4_IMAP_BYE_down", monitor.IMAP{}, script{"* BYE shutting down\r\n", nil, nil}.Serve, 0, monitor.ErrGreeting, "BYE"},
		{"F4_IMAP_PREAUTH_down", monitor.IMAP{}, script{"* PREAUTH welcome\r\n", nil, nil}.Serve, 0, monitor.ErrGreeting, "PREAUTH"},
		{"F4_Greeting_IMAP_PREAUTH_down", monitor.Greeting{Protocol: starttls.IMAP}, script{"* PREAUTH welcome\r\n", nil, nil}.Serve, 0, monitor.ErrGreeting, ""},
		{"F4_POP3_ERR_down", monitor.POP3{}, script{"-ERR go away\r\n", nil, nil}.Serve, 0, monitor.ErrGreeting, "-ERR"},
		{"F4_Greeting_POP3_ERR_down", monitor.Greeting{Protocol: starttls.POP3}, script{"-ERR go away\r\n", nil, nil}.Serve, 0, monitor.ErrGreeting, ""},
		{"F5_Certificate_expired_down", monitor.Certificate{ServerName: "mail.example.com", Roots: p.ca.Pool()}, tlsServe(expired), 0, monitor.ErrTLS, "expired"},
		{"F5_Certificate_wrong_name_down", monitor.Certificate{ServerName: "mail.example.com", Roots: p.ca.Pool()}, tlsServe(wrongName), 0, monitor.ErrTLS, "other.example.net"},
		{"F5_Certificate_valid_up", monitor.Certificate{ServerName: "mail.example.com", Roots: p.ca.Pool()}, tlsServe(p.leaf), 0, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.serve)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = ioWait
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			r := tc.probe.Probe(ctx, f.Addr())
			if tc.want == nil {
				assert.True(t, r.OK, "down: %v", r.Err)
				return
			}
			assert.False(t, r.OK, "up; want down with %v", tc.want)
			assert.ErrorIs(t, r.Err, tc.want, "%v", r.Err)
			if tc.reason != "" && r.Err != nil {
				assert.Contains(t, r.Err.Error(), tc.reason)
			}
			t.Logf("reason: %v", r.Err)
		})
	}
}
