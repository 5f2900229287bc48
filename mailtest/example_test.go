package mailtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

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
