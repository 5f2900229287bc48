// Command imaps-offload is IMAPS offload as a NetScaler (Citrix ADC) does
// it in front of Dovecot: TLS ends here on :993 with the certificate chosen
// by SNI, and the session goes on in plain text to the
// mail server's port 143 with a PROXY v2 header, so the server sees the
// client's address and that TLS was done upstream (Dovecot:
// haproxy_trusted_networks and an inet_listener with haproxy = yes).
//
//	go run ./examples/imaps-offload -listen :993 -backend 10.0.0.5:143 -cert mail.pem -key mail.key
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
	fs := flag.NewFlagSet("imaps-offload", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:10993", "IMAPS address to listen on")
	backendAddr := fs.String("backend", "127.0.0.1:143", "plain IMAP backend (PROXY v2 enabled)")
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
		Server:    &starttls.Server{Protocol: starttls.IMAP, TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})},
		Implicit:  true,
		Backend:   &backend.Dialer{Addr: *backendAddr, Protocol: starttls.IMAP, Proxy: backend.ProxyV2},
		OnSession: func(in mailedge.SessionInfo) { log.Print(in) },
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("IMAPS on %s, offloaded to %s", l.Addr(), *backendAddr)
	if ready != nil {
		ready <- l.Addr().String()
	}
	return p.Serve(ctx, l)
}
