// Command smtp-starttls is an F5 BIG-IP SMTPS profile in Go: SMTP on port 25
// with STARTTLS in Require mode in front of a plain backend. Before TLS the
// client may only EHLO/HELO, NOOP, RSET, QUIT and STARTTLS; MAIL, RCPT,
// DATA and AUTH get "530 5.7.0 Must issue a STARTTLS command first". After
// the upgrade the session is offloaded in plain text to the backend, which
// learns the client's address by XCLIENT (Postfix:
// smtpd_authorized_xclient_hosts).
//
//	go run ./examples/smtp-starttls -listen :25 -backend 10.0.0.5:25 -cert mail.pem -key mail.key
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

func main() {
	if err := run(context.Background(), os.Args[1:], nil); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx ends. ready, if not nil, receives the address
// listened on once the listener is open.
func run(ctx context.Context, args []string, ready chan<- string) error {
	fs := flag.NewFlagSet("smtp-starttls", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:10025", "SMTP address to listen on")
	backendAddr := fs.String("backend", "127.0.0.1:25", "plain SMTP backend")
	xclient := fs.Bool("xclient", false, "pass the client's address with XCLIENT (the backend must allow it)")
	hostname := fs.String("hostname", "mx.example.com", "name to greet with")
	certFile := fs.String("cert", "", "certificate chain (PEM); if empty, a throwaway one for localhost")
	keyFile := fs.String("key", "", "private key (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var certs sni.Resolver
	cert, err := mailtest.Throwaway("localhost")
	if *certFile != "" {
		cert, err = sni.LoadPair(*certFile, *keyFile)
	}
	if err != nil {
		return err
	}
	if err := certs.AddDefault(cert); err != nil {
		return err
	}
	p := &mailedge.Proxy{
		Server: &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Require, Hostname: *hostname,
			TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP})},
		Backend:   &backend.Dialer{Addr: *backendAddr, Protocol: starttls.SMTP, XCLIENT: *xclient, Hostname: *hostname},
		OnSession: func(in mailedge.SessionInfo) { log.Print(in) },
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("SMTP (STARTTLS required) on %s, offloaded to %s", l.Addr(), *backendAddr)
	if ready != nil {
		ready <- l.Addr().String()
	}
	return p.Serve(ctx, l)
}
