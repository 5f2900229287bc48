package starttls_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

// script plays a client on conn: it sends each command and prints the
// server's lines up to the end of each reply.
func script(conn net.Conn, br *bufio.Reader, cmds ...string) {
	for _, cmd := range cmds {
		if cmd != "" {
			fmt.Println("C:", cmd)
			_, _ = io.WriteString(conn, cmd+"\r\n")
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			fmt.Println("S:", line)
			if len(line) < 4 || line[3] != '-' {
				break
			}
		}
	}
}

// A submission listener in Require mode: the client must switch to TLS
// before anything else, and Serve returns the TLS session.
func ExampleServer_Serve() {
	ca, _ := mailtest.GenerateCA("example CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	srv := &starttls.Server{
		Protocol:       starttls.SMTP,
		Hostname:       "mail.example.com",
		TLSConfig:      &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		SMTPExtensions: []string{"SIZE 10485760"},
	}
	clientConn, serverConn := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReader(clientConn)
		script(clientConn, br, "", "EHLO client.example.org", "MAIL FROM:<a@example.org>", "STARTTLS")
		tc := tls.Client(clientConn, &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"})
		if err := tc.Handshake(); err == nil {
			fmt.Println("client: TLS established")
		}
	}()
	sess, err := srv.Serve(context.Background(), serverConn)
	<-done
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer sess.Conn.Close()
	fmt.Println("session: TLS", sess.TLS, "SNI", sess.ServerName, "EHLO name", sess.Helo)
	// Output:
	// S: 220 mail.example.com ESMTP ready
	// C: EHLO client.example.org
	// S: 250-mail.example.com
	// S: 250-STARTTLS
	// S: 250 SIZE 10485760
	// C: MAIL FROM:<a@example.org>
	// S: 530 5.7.0 Must issue a STARTTLS command first
	// C: STARTTLS
	// S: 220 2.0.0 Ready to start TLS
	// client: TLS established
	// session: TLS true SNI mail.example.com EHLO name client.example.org
}

// In Allow mode a client that goes on in plain text is handed over: the
// command that declined TLS waits in Session.Pending for the backend.
func ExampleServer_Serve_allow() {
	srv := &starttls.Server{Protocol: starttls.POP3, Mode: starttls.Allow, TLSConfig: &tls.Config{}, Hostname: "pop.example.com"}
	clientConn, serverConn := net.Pipe()
	defer serverConn.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReader(clientConn)
		script(clientConn, br, "")
		fmt.Println("C: USER alice")
		_, _ = io.WriteString(clientConn, "USER alice\r\n")
	}()
	sess, err := srv.Serve(context.Background(), serverConn)
	<-done
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("session: TLS %v, pending %q\n", sess.TLS, sess.Pending)
	// Output:
	// S: +OK pop.example.com POP3 ready
	// C: USER alice
	// session: TLS false, pending "USER alice\r\n"
}
