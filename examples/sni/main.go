// Command sni demonstrates package sni: one TLS listener that serves several
// mail domains, each client getting the certificate for the name it sends
// in SNI.
//
// It generates a throw-away CA and certificates for mail.example.com (the
// default, ECDSA and RSA), mail.example.net and *.example.org, listens on
// 127.0.0.1:10994 and answers every connection with an IMAP-style greeting
// that names the certificate it was served. Try it with openssl s_client
// (the program prints the commands), stop it with Ctrl-C.
//
// With -selftest it connects to itself once per name, prints which
// certificate each SNI got, and exits (status 0 when every answer is right).
//
//	go run ./examples/sni
//	go run ./examples/sni -selftest
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:10994", "address to listen on")
	selftest := flag.Bool("selftest", false, "connect to itself once per name, print the results and exit")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *selftest); err != nil {
		log.Printf("sni demo: %v", err)
		stop()
		os.Exit(1)
	}
}

// demo is the generated CA and the store that serves its certificates.
type demo struct {
	ca    *mailtest.CA
	certs *sni.Resolver
}

func newDemo() (*demo, error) {
	ca, err := mailtest.GenerateCA("mailedge demo CA")
	if err != nil {
		return nil, err
	}
	d := &demo{ca: ca, certs: &sni.Resolver{}}
	issue := []struct {
		key   mailtest.KeyType
		name  string
		dflt  bool
		extra []string
	}{
		{mailtest.ECDSA, "mail.example.com", true, nil},
		{mailtest.RSA, "mail.example.com", true, nil}, // for clients without ECDSA
		{mailtest.ECDSA, "mail.example.net", false, nil},
		{mailtest.ECDSA, "*.example.org", false, []string{"example.org"}},
	}
	var entries []sni.Entry
	for _, is := range issue {
		leaf, err := ca.Issue(mailtest.CertOptions{Key: is.key}, append([]string{is.name}, is.extra...)...)
		if err != nil {
			return nil, err
		}
		entries = append(entries, sni.Entry{Certificate: &leaf.TLS, Default: is.dflt, Source: "generated"})
	}
	return d, d.certs.Set(entries)
}

func run(ctx context.Context, addr string, selftest bool) error {
	d, err := newDemo()
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", addr, d.certs.TLSConfig(sni.Policy{}))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs last: every connection has ended
	defer cancel()  // closes the listener through closeOnDone
	wg.Add(2)
	go func() { defer wg.Done(); closeOnDone(ctx, ln) }()
	go func() { defer wg.Done(); serve(ctx, ln, &wg) }()

	if selftest {
		return runSelftest(ctx, ln.Addr().String(), d)
	}
	dir, err := os.MkdirTemp("", "mailedge-sni-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	caFile, err := d.ca.WriteCA(dir, "ca.pem")
	if err != nil {
		return err
	}
	printHelp(ln.Addr().String(), caFile, d.certs)
	<-ctx.Done()
	fmt.Println("\nstopping")
	return nil
}

func printHelp(addr, caFile string, certs *sni.Resolver) {
	fmt.Printf("mailedge SNI demo listening on %s (TLS 1.2+, ALPN imap/pop3/smtp or none)\n\n", addr)
	fmt.Println("certificates:")
	for _, in := range certs.Certificates() {
		def := ""
		if in.Default {
			def = "  (default)"
		}
		fmt.Printf("  %-18s %-12s expires %s%s\n", in.Name, in.KeyType, in.NotAfter.Format(time.DateOnly), def)
	}
	fmt.Println("\ntry:")
	for _, name := range []string{"mail.example.com", "mail.example.net", "imap.example.org"} {
		fmt.Printf("  openssl s_client -connect %s -servername %s -CAfile %s\n", addr, name, caFile)
	}
	fmt.Printf("  openssl s_client -connect %s -noservername -CAfile %s      # no SNI: the default\n", addr, caFile)
	fmt.Printf("  openssl s_client -connect %s -servername mail.example.com -sigalgs rsa_pss_rsae_sha256 -CAfile %s   # RSA\n", addr, caFile)
	fmt.Printf("  openssl s_client -connect %s -servername mail.example.com -alpn http/1.1 -CAfile %s   # refused (ALPACA)\n", addr, caFile)
	fmt.Println("\nCtrl-C stops.")
}

// closeOnDone closes ln when ctx ends, which unblocks Accept.
func closeOnDone(ctx context.Context, ln net.Listener) {
	<-ctx.Done()
	ln.Close()
}

// serve accepts until ln is closed and greets each client. Connection
// goroutines are tracked by wg and end when ctx does.
func serve(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Printf("accept: %v", err)
			}
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); greet(ctx, c.(*tls.Conn)) }()
	}
}

// greet runs the handshake, repeats the SNI name and ALPN id it got, waits
// for one line from the client (or a minute) and says goodbye.
func greet(ctx context.Context, c *tls.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() }) // Ctrl-C ends open sessions
	defer stop()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if err := c.Handshake(); err != nil {
		log.Printf("server: %s: handshake refused: %v", c.RemoteAddr(), err)
		return
	}
	st := c.ConnectionState()
	fmt.Fprintf(c, "* OK [mailedge sni demo] SNI %q ALPN %q\r\n", st.ServerName, st.NegotiatedProtocol)
	buf := make([]byte, 512)
	_, _ = c.Read(buf)
	fmt.Fprint(c, "* BYE demo over\r\n")
}
