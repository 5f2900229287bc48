package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/pop3client"
)

// demoGateway runs the embedded demo in-process on ephemeral ports and
// returns the listener addresses by name and the demo CA pool.
func demoGateway(t *testing.T) (map[string]string, *x509.CertPool) {
	t.Helper()
	return demoGatewayWith(t)
}

// demoGatewayWith is demoGateway with extra flags after the demo's own.
func demoGatewayWith(t *testing.T, extra ...string) (map[string]string, *x509.CertPool) {
	t.Helper()
	return demoGatewayLog(t, io.Discard, extra...)
}

// demoGatewayLog is demoGatewayWith with the gateway's log written to logs.
func demoGatewayLog(t *testing.T, logs io.Writer, extra ...string) (map[string]string, *x509.CertPool) {
	t.Helper()
	d := startDemoGateway(t, logs, true, extra...)
	return d.addrs, d.roots
}

// demoRun is the embedded demo running in-process on ephemeral ports.
type demoRun struct {
	addrs map[string]string // listener addresses by name
	roots *x509.CertPool    // the demo CA
	ds    *demoSetup
	g     *gateway
	hup   chan os.Signal // unbuffered: a send returns once the reload loop took it
}

// startDemoGateway starts the demo with extra flags after its own, its
// users file passed as -auth-file if users, and the gateway's log (debug
// level) written to logs.
func startDemoGateway(t *testing.T, logs io.Writer, users bool, extra ...string) *demoRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ds, err := startDemo(ctx, t.TempDir(), false, users, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	o, err := parseFlags(append(ds.args, extra...), io.Discard)
	require.NoError(t, err)
	g, err := build(o, log)
	require.NoError(t, err)
	d := &demoRun{ds: ds, g: g, hup: make(chan os.Signal), addrs: make(map[string]string)}
	require.NoError(t, g.start(ctx, d.hup))
	t.Cleanup(func() {
		cancel()
		g.shutdown(5 * time.Second)
		ds.close()
	})
	for i, l := range g.listeners {
		d.addrs[g.specs[i].Name] = l.Addr().String()
	}
	pem, err := os.ReadFile(ds.caFile)
	require.NoError(t, err)
	d.roots = x509.NewCertPool()
	require.True(t, d.roots.AppendCertsFromPEM(pem))
	return d
}

func clientTLS(roots *x509.CertPool, name string) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12}
}

func message(subject string) string {
	return "From: demo@example.com\r\nTo: demo@example.com\r\nSubject: " + subject +
		"\r\n\r\nHello through mailedge.\r\n.leading dot line\r\n"
}

func submit(t *testing.T, c *smtp.Client, subject string) {
	t.Helper()
	require.NoError(t, c.Auth(sasl.NewPlainClient("", "demo@example.com", "demo")))
	require.NoError(t, c.SendMail("demo@example.com", []string{"demo@example.com"}, strings.NewReader(message(subject))))
	require.NoError(t, c.Quit())
}

func TestDemoEndToEnd(t *testing.T) {
	addrs, roots := demoGateway(t)

	// Submit over SMTPS (bridged to an implicit-TLS backend) and over
	// submission with STARTTLS (bridged to a STARTTLS backend).
	tc, err := tls.Dial("tcp", addrs["smtps"], clientTLS(roots, "mail.example.net"))
	require.NoError(t, err)
	submit(t, smtp.NewClient(tc), "via-smtps")
	sc, err := smtp.DialStartTLS(addrs["submission"], clientTLS(roots, "mail.example.org"))
	require.NoError(t, err)
	submit(t, sc, "via-submission")

	want := []string{"via-smtps", "via-submission"}
	t.Run("imaps", func(t *testing.T) {
		c, err := imapclient.DialTLS(addrs["imaps"], &imapclient.Options{TLSConfig: clientTLS(roots, "mail.example.com")})
		require.NoError(t, err)
		assertIMAPSubjects(t, c, want)
	})
	t.Run("imap starttls", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(addrs["imap"], &imapclient.Options{TLSConfig: clientTLS(roots, "mail.example.net")})
		require.NoError(t, err)
		assertIMAPSubjects(t, c, want)
	})
	t.Run("pop3s", func(t *testing.T) {
		conn, err := tls.Dial("tcp", addrs["pop3s"], clientTLS(roots, "mail.example.org"))
		require.NoError(t, err)
		assertPOP3Subjects(t, pop3client.NewClient(conn), nil, want)
	})
	t.Run("pop3 stls", func(t *testing.T) {
		conn, err := net.Dial("tcp", addrs["pop3"])
		require.NoError(t, err)
		assertPOP3Subjects(t, pop3client.NewClient(conn), clientTLS(roots, "mail.example.com"), want)
	})
}

func assertIMAPSubjects(t *testing.T, c *imapclient.Client, want []string) {
	t.Helper()
	defer c.Close()
	caps := c.Caps()
	assert.False(t, caps.Has(imap.CapStartTLS), "STARTTLS must not be offered inside TLS")
	assert.False(t, caps.Has(imap.CapLoginDisabled), "LOGINDISABLED must be filtered inside TLS")
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	_, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Envelope: true,
		BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	var got []string
	for _, m := range msgs {
		got = append(got, m.Envelope.Subject)
		for _, body := range m.BodySection {
			assert.Contains(t, string(body.Bytes), "\r\n\r\nHello through mailedge.\r\n.leading dot line\r\n", "content intact")
		}
	}
	assert.ElementsMatch(t, want, got)
	require.NoError(t, c.Logout().Wait())
}

func assertPOP3Subjects(t *testing.T, c *pop3client.Client, stls *tls.Config, want []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer c.Close()
	_, err := c.Greeting(ctx)
	require.NoError(t, err)
	if stls != nil {
		require.NoError(t, c.StartTLS(ctx, stls))
	}
	caps, err := c.Capa(ctx)
	require.NoError(t, err)
	assert.NotContains(t, caps, "STLS", "STLS must not be offered inside TLS")
	require.NoError(t, c.User(ctx, "demo@example.com"))
	require.NoError(t, c.Pass(ctx, "demo"))
	n, _, err := c.Stat(ctx)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	var got []string
	for i := 1; i <= n; i++ {
		fmt.Fprintf(c.Conn(), "RETR %d\r\n", i)
		r := pop3client.NewReader(c.Conn(), 4096)
		_, err := r.ReadReply()
		require.NoError(t, err)
		lines, err := r.ReadLines()
		require.NoError(t, err)
		for _, l := range lines {
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				got = append(got, s)
			}
		}
	}
	assert.ElementsMatch(t, want, got)
	require.NoError(t, c.Quit(ctx))
}

func TestDemoSNI(t *testing.T) {
	addrs, roots := demoGateway(t)
	for _, tt := range []struct{ name, sni, want string }{
		{"com", "mail.example.com", "mail.example.com"},
		{"net", "mail.example.net", "mail.example.net"},
		{"org", "mail.example.org", "mail.example.org"},
		{"no sni gets the default", "", "mail.example.com"},
		{"unknown gets the default", "other.example", "mail.example.com"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, port := range []string{"imaps", "smtps", "pop3s"} {
				conn, err := tls.Dial("tcp", addrs[port], &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true})
				require.NoError(t, err)
				leaf := conn.ConnectionState().PeerCertificates[0]
				conn.Close()
				assert.Equal(t, tt.want, leaf.Subject.CommonName, port)
				_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.want})
				assert.NoError(t, err)
			}
		})
	}
}

func TestDemoMXRefusesRelay(t *testing.T) {
	addrs, _ := demoGateway(t)
	c, err := smtp.Dial(addrs["smtp"])
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("client.example"))
	require.NoError(t, c.Mail("someone@foreign.test", nil))
	err = c.Rcpt("victim@other.test", nil)
	var se *smtp.SMTPError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 554, se.Code)
	assert.Contains(t, se.Message, "Relay access denied")
	require.NoError(t, c.Rcpt("demo@example.com", nil), "local domains are accepted on the MX port in plain (Allow mode)")
}

func TestDemoRequireRefusesPlainAuth(t *testing.T) {
	addrs, _ := demoGateway(t)
	c, err := smtp.Dial(addrs["submission"])
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Hello("client.example"))
	err = c.Mail("demo@example.com", nil)
	var se *smtp.SMTPError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 530, se.Code)
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"bad proto", []string{"-listen", "x=127.0.0.1:0,proto=http"}, `proto="http"`},
		{"bad security", []string{"-listen", "x=127.0.0.1:0,proto=imap", "-backend", "x=127.0.0.1:1,security=ssl"}, `security="ssl"`},
		{"unknown option", []string{"-listen", "x=127.0.0.1:0,proto=imap,colour=blue"}, `unknown option "colour"`},
		{"bad limits", []string{"-limits", "inflight=-1"}, "-limits inflight"},
		{"bad weight", []string{"-backend", "x=127.0.0.1:1,weight=0"}, "weight"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tt.args, io.Discard, &stderr)
			assert.NotZero(t, code)
			assert.Contains(t, stderr.String(), tt.want)
		})
	}
}

func TestBuildErrorsNameTheFile(t *testing.T) {
	missing := t.TempDir() + "/missing.pem"
	var stderr bytes.Buffer
	code := run([]string{"-cert", missing + "," + missing, "-listen", "x=127.0.0.1:0,proto=imap",
		"-backend", "x=127.0.0.1:1"}, io.Discard, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "missing.pem")
}
