package starttls_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

type discardSession struct{}

func (discardSession) Reset()                               {}
func (discardSession) Logout() error                        { return nil }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// ExampleClient_Upgrade upgrades a connection to an SMTP submission backend
// that only offers STARTTLS, then keeps the greeting for the handover.
func ExampleClient_Upgrade() {
	// A backend: go-smtp with STARTTLS and a certificate for mail.test.
	ca, _ := mailtest.GenerateCA("example CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.test")
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }))
	srv.Domain = "mail.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		// Shutdown (not Close) waits for the session to end on its own
		// once the proxy side has closed.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}()

	// The proxy side.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	c := &starttls.Client{
		Protocol:  starttls.SMTP,
		TLSConfig: &tls.Config{ServerName: "mail.test", RootCAs: ca.Pool()},
		Hostname:  "proxy.example",
		Timeout:   10 * time.Second,
	}
	up, err := c.Upgrade(context.Background(), conn)
	if err != nil {
		log.Fatal(err)
	}
	defer up.Conn.Close()
	fmt.Printf("greeting: %q\n", up.Greeting)
	fmt.Println("verified:", up.Conn.ConnectionState().VerifiedChains != nil)
	fmt.Println("server name:", up.Conn.ConnectionState().ServerName)
	// Output:
	// greeting: "220 mail.test ESMTP Service Ready\r\n"
	// verified: true
	// server name: mail.test
}
