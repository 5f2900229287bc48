package mailtest_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

// A test of your own Proxy wiring: IMAPS at the proxy, offloaded to
// mailtest's plain IMAP server, a client logging in through it. In a real
// test t is the *testing.T; here exampleT stands in for it so the example
// runs.
func Example() {
	t := newExampleT()
	defer t.end()

	sys := mailtest.NewSystem(t, mailtest.Options{}) // demo@example.com / demo
	ca := mailtest.NewCA(t)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: ca.ServerConfig(t, "mail.example.com")},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: sys.Addr(mailtest.IMAP, mailtest.Plain), Protocol: starttls.IMAP, Proxy: backend.NoProxy},
	}
	addr := mailtest.Serve(t, p.Serve)

	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: ca.ClientConfig("mail.example.com")})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	fmt.Println("login through the proxy:", c.Login("demo@example.com", "demo").Wait())
	// Output: login through the proxy: <nil>
}

// A backend that answers STARTTLS with injected plain-text lines: the
// proxy's STARTTLS client must refuse it instead of trusting them.
func ExampleNewHostile() {
	t := newExampleT()
	defer t.end()

	h := mailtest.NewHostile(t, mailtest.HostileOptions{Kind: mailtest.StartTLSInjection, Protocol: mailtest.Submission})
	d := &backend.Dialer{Addr: h.Addr(), Protocol: starttls.SMTP, Security: starttls.STARTTLS, TLSConfig: h.ClientTLSConfig()}
	conn, err := d.Dial(context.Background(), backend.ClientInfo{})
	if conn != nil {
		conn.Close()
	}
	fmt.Println("refused as an injection:", errors.Is(err, starttls.ErrInjection))
	// Output: refused as an injection: true
}

// A CA for a test: an RSA leaf for a wildcard name, verified by a client
// that trusts only that CA, and an expired one that the same client
// refuses.
func ExampleCA_Issue() {
	t := newExampleT()
	defer t.end()

	ca := mailtest.NewCA(t)
	leaf := ca.MustIssue(t, mailtest.CertOptions{Key: mailtest.RSA}, "*.example.org")
	_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "imap.example.org"})
	fmt.Println("wildcard RSA leaf verifies:", err == nil, leaf.Cert.PublicKeyAlgorithm)

	old, _ := ca.Expired(mailtest.ECDSA, "mail.example.com")
	_, err = old.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "mail.example.com"})
	fmt.Println("expired leaf verifies:", err == nil)
	// Output:
	// wildcard RSA leaf verifies: true RSA
	// expired leaf verifies: false
}

// The mail system of a test: a message submitted with AUTH over STARTTLS
// is in the INBOX that IMAP and POP3 read.
func ExampleNewSystem() {
	t := newExampleT()
	defer t.end()

	sys := mailtest.NewSystem(t, mailtest.Options{Users: map[string]string{"ann@example.com": "secret"}})
	c, err := smtp.DialStartTLS(sys.Addr(mailtest.Submission, mailtest.StartTLS), sys.ClientTLSConfig())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "ann@example.com", "secret")); err != nil {
		t.Fatalf("auth: %v", err)
	}
	err = c.SendMail("ann@example.com", []string{"ann@example.com"}, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))
	fmt.Println("sent:", err)
	msgs, _ := sys.Messages(context.Background(), "ann@example.com")
	fmt.Println("in the INBOX:", len(msgs))
	// Output:
	// sent: <nil>
	// in the INBOX: 1
}

// exampleT stands in for a test's *testing.T in these examples: it runs
// the cleanups when the example ends and turns a failure into a panic.
type exampleT struct {
	testing.TB // nil: only the methods below are called
	cleanups   []func()
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                   {}
func (t *exampleT) Name() string              { return "Example" }
func (t *exampleT) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// end runs the cleanups, last registered first, as testing does.
func (t *exampleT) end() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
