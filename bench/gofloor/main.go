// Command gofloor is the benchmark's "Go floor": the least a Go program
// can do to terminate TLS in front of a mail server, crypto/tls's
// tls.Listen and two io.Copy per connection, with nothing else (no SNI
// selection, no mail dialogue, no limits, no logging, no timeouts). The
// gateway's rows in bench/compare.sh are compared with it to show what the
// layers above crypto/tls cost (issue 19). Not for production.
//
//	gofloor -cert cert.pem -key key.pem -listen 127.0.0.1:22993=127.0.0.1:31143
//
// -cert and -key may be repeated in pairs (an ECDSA and an RSA
// certificate): crypto/tls then picks the first whose names match the
// client's SNI, as it does for any tls.Config with several certificates.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"strings"

	"github.com/mailedge/mailedge/internal/gofloor"
)

func main() {
	var certFiles, keyFiles, routes []string
	flag.Func("cert", "PEM certificate chain, repeatable (paired with -key in order)", func(s string) error { certFiles = append(certFiles, s); return nil })
	flag.Func("key", "PEM private key, repeatable", func(s string) error { keyFiles = append(keyFiles, s); return nil })
	flag.Func("listen", "LISTEN=BACKEND, repeatable", func(s string) error { routes = append(routes, s); return nil })
	flag.Parse()
	if len(certFiles) == 0 || len(certFiles) != len(keyFiles) {
		log.Fatal("want -cert and -key in pairs")
	}
	cfg := &tls.Config{}
	for i := range certFiles {
		cert, err := tls.LoadX509KeyPair(certFiles[i], keyFiles[i])
		if err != nil {
			log.Fatal(err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	if len(routes) == 0 {
		log.Fatal("no -listen")
	}
	for _, r := range routes {
		addr, backend, ok := strings.Cut(r, "=")
		if !ok {
			log.Fatalf("-listen %q: want LISTEN=BACKEND", r)
		}
		l, err := tls.Listen("tcp", addr, cfg)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					log.Fatal(err)
				}
				go gofloor.Relay(c, backend)
			}
		}()
	}
	select {} // the accept loops run until the process is killed
}
