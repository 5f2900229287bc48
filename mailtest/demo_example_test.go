package mailtest_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/mailtest"
)

// Submit a message over SMTP submission and read it back over IMAP.
func ExampleNew() {
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	addrs, err := sys.Start(context.Background())
	if err != nil {
		log.Fatal(err)
	}

	msg := "From: demo@example.com\r\nSubject: hello\r\n\r\nHi!\r\n"
	sc, err := smtp.Dial(addrs.Submission)
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	// Plain TCP is fine: the demo trusts its callers like a backend behind
	// a TLS-terminating gateway.
	if err := sc.Auth(sasl.NewPlainClient("", "demo@example.com", "demo")); err != nil {
		log.Fatal(err)
	}
	if err := sc.SendMail("demo@example.com", []string{"demo@example.com"}, strings.NewReader(msg)); err != nil {
		log.Fatal(err)
	}
	if err := sc.Quit(); err != nil {
		log.Fatal(err)
	}

	c, err := imapclient.DialInsecure(addrs.IMAP, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("demo@example.com", "demo").Wait(); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		log.Fatal(err)
	}
	bufs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bufs[0].Envelope.Subject)
	// Output: hello
}

// The MX-style server refuses to relay, in Postfix's words.
func ExampleSystem_ServeMX() {
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sys.ServeMX(l) }()

	c, err := smtp.Dial(l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		log.Fatal(err)
	}
	if err := c.Mail("a@example.net", nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Rcpt("someone@example.invalid", nil))
	fmt.Println(c.Rcpt("demo@example.com", nil))
	c.Close()
	sys.Close()
	fmt.Println(<-done)
	// Output:
	// SMTP error 554: <someone@example.invalid>: Relay access denied
	// <nil>
	// mailtest: system closed
}

// Messages delivered with Deliver are read over POP3 like any other.
func ExampleSystem_ServePOP3() {
	sys, err := mailtest.New(mailtest.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer sys.Close()
	addrs, err := sys.Start(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	if err := sys.Deliver("demo@example.com", []byte("Subject: hi\n\n.hidden dot\n")); err != nil {
		log.Fatal(err)
	}

	conn, err := net.Dial("tcp", addrs.POP3)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, cmd := range []string{"", "USER demo@example.com", "PASS demo", "RETR 1", "QUIT"} {
		if cmd != "" {
			fmt.Fprintf(conn, "%s\r\n", cmd)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println(strings.TrimSuffix(line, "\r\n"))
			if cmd != "RETR 1" || line == ".\r\n" {
				break
			}
		}
	}
	// Output:
	// +OK mail.example.com POP3 server ready
	// +OK send PASS
	// +OK demo@example.com has 1 messages (28 octets)
	// +OK 28 octets
	// Subject: hi
	//
	// ..hidden dot
	// .
	// +OK mail.example.com POP3 server signing off (1 messages left)
}
