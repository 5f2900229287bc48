package bridge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/mailtest"
)

// proxyOnce accepts one client on ln, dials backend and joins the two.
func proxyOnce(ln net.Listener, backend string, opt bridge.Options) <-chan bridge.Stats {
	joined := make(chan bridge.Stats, 1)
	go func() {
		client, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		server, err := net.Dial("tcp", backend)
		if err != nil {
			log.Fatal(err)
		}
		st, err := bridge.Join(context.Background(), client, server, opt)
		if err != nil {
			log.Print(err)
		}
		joined <- st
	}()
	return joined
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return ln
}

func ExampleJoin() {
	backend := listen() // echoes what it reads, then closes
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	proxy := listen()
	defer proxy.Close()
	joined := proxyOnce(proxy, backend.Addr().String(), bridge.Options{})

	c, err := net.Dial("tcp", proxy.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello, bridge\n"))
	c.(*net.TCPConn).CloseWrite() // the half-close travels to the backend
	reply, _ := io.ReadAll(c)
	fmt.Printf("%q\n", reply)
	st := <-joined
	fmt.Println(st.ClientToServer, st.ServerToClient, st.End)
	// Output:
	// "hello, bridge\n"
	// 14 14 client closed
}

func ExampleSMTPInspector() {
	backend := listen() // a tiny SMTP server that accepts everything
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("220 backend ready\r\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			verb, _, _ := strings.Cut(sc.Text(), " ")
			fmt.Fprintf(c, "250 %s ok\r\n", verb)
			if verb == "QUIT" {
				return
			}
		}
	}()
	ins := &bridge.SMTPInspector{
		AwaitGreeting: true, // no handover: the greeting comes through Join
		Check: func(cmd bridge.SMTPCommand) string {
			if cmd.Verb == "RCPT" && strings.HasSuffix(cmd.Arg, "@blocked.example") {
				return "550 5.7.1 Recipient refused by policy"
			}
			return ""
		},
	}
	proxy := listen()
	defer proxy.Close()
	joined := proxyOnce(proxy, backend.Addr().String(), bridge.Options{SMTP: ins})

	c, err := net.Dial("tcp", proxy.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Pipelined: the refusal still comes back third, in its place.
	c.Write([]byte("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\n" +
		"RCPT TO:<c@blocked.example>\r\nRCPT TO:<d@example.org>\r\nQUIT\r\n"))
	replies, _ := io.ReadAll(c) // until the backend closes after QUIT
	c.Close()
	fmt.Print(strings.ReplaceAll(string(replies), "\r\n", "\n"))
	st := <-joined
	fmt.Printf("%d recipients accepted, %d refused\n", st.SMTP.Recipients, st.SMTP.Refused)
	// Output:
	// 220 backend ready
	// 250 MAIL ok
	// 250 RCPT ok
	// 550 5.7.1 Recipient refused by policy
	// 250 RCPT ok
	// 250 QUIT ok
	// 2 recipients accepted, 1 refused
}

// ExamplePoller starts sessions with Start and a shared Poller: a session
// that waits for its next command holds no goroutine, and its end is
// reported through Hooks.End.
func ExamplePoller() {
	backend := listen() // answers each line, as a mail server would
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "ok %s\r\n", sc.Text())
		}
	}()
	poller := &bridge.Poller{ParkAfter: 10 * time.Millisecond}
	defer poller.Close() // after the sessions
	proxy := listen()
	defer proxy.Close()
	ended := make(chan bridge.Stats, 1)
	go func() {
		client, err := proxy.Accept()
		if err != nil {
			log.Fatal(err)
		}
		server, err := net.Dial("tcp", backend.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		bridge.Start(context.Background(), client, server, bridge.Options{
			Poller: poller,
			Hooks:  bridge.Hooks{End: func(st bridge.Stats, err error) { ended <- st }},
		})
		// Start has returned: from here the session needs no goroutine
		// of ours, and while idle none of its own either.
	}()

	c, err := net.Dial("tcp", proxy.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, cmd := range []string{"NOOP", "NOOP"} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		reply, _ := r.ReadString('\n')
		fmt.Print(strings.TrimRight(reply, "\r\n"), "\n")
		time.Sleep(50 * time.Millisecond) // idle: the session parks
	}
	c.Close()
	st := <-ended
	fmt.Println(st.ClientToServer, "bytes up,", st.End)
	// Output:
	// ok NOOP
	// ok NOOP
	// 12 bytes up, client closed
}

// ExampleWrapConn terminates TLS with a tls.Config of the application's own
// (certmagic's, autocert's, or, as here, a test CA's) and copies the
// session with Join. WrapConn under tls.Server lets the bridge read the
// *tls.Conn without blocking and park the session while it is idle.
func ExampleWrapConn() {
	ca, err := mailtest.GenerateCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	if err != nil {
		log.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}

	backend := listen() // a plain backend that echoes, then closes
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	proxy := listen()
	defer proxy.Close()
	joined := make(chan bridge.Stats, 1)
	go func() {
		raw, err := proxy.Accept()
		if err != nil {
			log.Fatal(err)
		}
		client := tls.Server(bridge.WrapConn(raw), serverTLS) // the socket wrapper under TLS
		if err := client.HandshakeContext(context.Background()); err != nil {
			log.Fatal(err)
		}
		server, err := net.Dial("tcp", backend.Addr().String())
		if err != nil {
			log.Fatal(err)
		}
		st, _ := bridge.Join(context.Background(), client, server, bridge.Options{})
		joined <- st
	}()

	c, err := tls.Dial("tcp", proxy.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello over TLS\n"))
	c.CloseWrite() // close_notify: the backend sees the end of the stream
	reply, _ := io.ReadAll(c)
	fmt.Printf("%q\n", reply)
	st := <-joined
	fmt.Println(st.ClientToServer, st.ServerToClient)
	// Output:
	// "hello over TLS\n"
	// 15 15
}
