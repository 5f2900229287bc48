// Command smtps-bridge is seed 000's SMTPS case: the client's TLS ends here
// on :465 and a new TLS session, verified against the backend's CA, carries
// the message on to the mail server's own port 465 ("SSL bridging", because
// the submission service requires TLS).
//
//	go run ./examples/smtps-bridge -listen :465 -backend 10.0.0.5:465 -backend-name mx.internal -backend-ca ca.pem -cert mail.pem -key mail.key
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net"
	"os"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/testcert"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:10465", "SMTPS address to listen on")
	backendAddr := flag.String("backend", "127.0.0.1:465", "implicit-TLS SMTP backend")
	backendName := flag.String("backend-name", "localhost", "name the backend certificate must carry")
	backendCA := flag.String("backend-ca", "", "PEM roots for the backend (default: system roots)")
	certFile := flag.String("cert", "", "certificate chain (PEM); if empty, a throwaway one for localhost")
	keyFile := flag.String("key", "", "private key (PEM)")
	flag.Parse()

	var certs sni.Resolver
	cert, err := testcert.Throwaway("localhost")
	if *certFile != "" {
		cert, err = sni.LoadPair(*certFile, *keyFile)
	}
	if err != nil {
		log.Fatal(err)
	}
	if err := certs.AddDefault(cert); err != nil {
		log.Fatal(err)
	}
	beTLS := &tls.Config{ServerName: *backendName, MinVersion: tls.VersionTLS12}
	if *backendCA != "" {
		pem, err := os.ReadFile(*backendCA)
		if err != nil {
			log.Fatal(err)
		}
		beTLS.RootCAs = x509.NewCertPool()
		if !beTLS.RootCAs.AppendCertsFromPEM(pem) {
			log.Fatalf("%s: no PEM certificate", *backendCA)
		}
	}
	p := &mailedge.Proxy{
		Server:    &starttls.Server{Protocol: starttls.SMTP, TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP})},
		Implicit:  true,
		Backend:   &backend.Dialer{Addr: *backendAddr, Protocol: starttls.SMTP, Security: backend.TLS, TLSConfig: beTLS},
		OnSession: func(in mailedge.SessionInfo) { log.Print(in) },
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("SMTPS on %s, bridged to %s", l.Addr(), *backendAddr)
	log.Fatal(p.Serve(context.Background(), l))
}
