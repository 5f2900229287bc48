// Command smtps-bridge is SMTPS bridging as a NetScaler (Citrix ADC) does it
// in front of Postfix: the client's TLS ends here on :465 and a new TLS
// session, verified against the backend's CA, carries the message on to the
// mail server's own port 465 ("SSL bridging", because the submission service
// requires TLS).
//
//	go run ./examples/smtps-bridge -listen :465 -backend 10.0.0.5:465 -backend-name mx.internal -backend-ca ca.pem -cert mail.pem -key mail.key
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
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
	fs := flag.NewFlagSet("smtps-bridge", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:10465", "SMTPS address to listen on")
	backendAddr := fs.String("backend", "127.0.0.1:465", "implicit-TLS SMTP backend")
	backendName := fs.String("backend-name", "localhost", "name the backend certificate must carry")
	backendCA := fs.String("backend-ca", "", "PEM roots for the backend (default: system roots)")
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
	beTLS := &tls.Config{ServerName: *backendName, MinVersion: tls.VersionTLS12}
	if *backendCA != "" {
		pem, err := os.ReadFile(*backendCA)
		if err != nil {
			return err
		}
		beTLS.RootCAs = x509.NewCertPool()
		if !beTLS.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", *backendCA)
		}
	}
	p := &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.SMTP, TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP})},
		Implicit:  true,
		Backend:   &backend.Dialer{Addr: *backendAddr, Protocol: starttls.SMTP, Security: starttls.TLS, TLSConfig: beTLS},
		OnSession: func(in mailedge.SessionInfo) { log.Print(in) },
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("SMTPS on %s, bridged to %s", l.Addr(), *backendAddr)
	if ready != nil {
		ready <- l.Addr().String()
	}
	return p.Serve(ctx, l)
}
