package backend_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailedge/mailedge/backend"
)

type session struct{}

func (session) Reset()                               {}
func (session) Logout() error                        { return nil }
func (session) Mail(string, *smtp.MailOptions) error { return nil }
func (session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (session) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// A pool of two members, the first of them down: Dial fails over to the
// live one and hands its checked greeting on.
func ExamplePool_Dial() {
	// A live SMTP server on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return session{}, nil }))
	srv.Domain = "mx2.example"
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()

	// An address nobody listens on.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	dead.Close()

	pool, err := backend.NewPool(backend.RoundRobin,
		backend.Member{Name: "mx1", Dialer: &backend.Dialer{Addr: dead.Addr().String()}},
		backend.Member{Name: "mx2", Dialer: &backend.Dialer{Addr: ln.Addr().String()}},
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pool.Dial(ctx, backend.ClientInfo{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("connected to %s: %q\n", conn.Member, conn.Greeting)
	conn.Close()
	for _, m := range pool.Members() {
		fmt.Printf("%s: dials %d, failures %d, active %d\n", m.Name, m.Dials, m.Failures, m.Active)
	}
	// Output:
	// connected to mx2: "220 mx2.example ESMTP Service Ready\r\n"
	// mx1: dials 1, failures 1, active 0
	// mx2: dials 1, failures 0, active 0
}
