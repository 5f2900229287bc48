package sni_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
)

// Example serves two mail domains from one listener: each client gets the
// certificate for the name it asked for, and a client without SNI gets the
// default.
func Example() {
	ca, err := mailtest.GenerateCA("Example CA")
	if err != nil {
		log.Fatal(err)
	}
	com, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	if err != nil {
		log.Fatal(err)
	}
	netCert, err := ca.Issue(mailtest.CertOptions{}, "mail.example.net")
	if err != nil {
		log.Fatal(err)
	}

	var certs sni.Resolver
	if err := certs.AddDefault(&com.TLS); err != nil {
		log.Fatal(err)
	}
	if err := certs.Add(&netCert.TLS); err != nil {
		log.Fatal(err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP}))
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // serve: an IMAP-style greeting per connection
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			fmt.Fprint(c, "* OK IMAP4rev2 ready\r\n") // the write runs the handshake
			c.Close()
		}
	}()

	for _, name := range []string{"mail.example.com", "mail.example.net", ""} {
		cfg := &tls.Config{ServerName: name, RootCAs: ca.Pool(), NextProtos: []string{"imap"}}
		if name == "" {
			// Without a name there is no SNI, and nothing to verify the
			// certificate against: look at it instead.
			cfg.InsecureSkipVerify = true
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			log.Fatal(err)
		}
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		st := c.ConnectionState()
		fmt.Printf("SNI %-18q -> %s (ALPN %q): %s\n", name, st.PeerCertificates[0].Subject.CommonName,
			st.NegotiatedProtocol, strings.TrimSpace(greeting))
		c.Close()
	}
	ln.Close()
	wg.Wait()

	// Output:
	// SNI "mail.example.com" -> mail.example.com (ALPN "imap"): * OK IMAP4rev2 ready
	// SNI "mail.example.net" -> mail.example.net (ALPN "imap"): * OK IMAP4rev2 ready
	// SNI ""                 -> mail.example.com (ALPN "imap"): * OK IMAP4rev2 ready
}

// ExampleResolver_Expiring lists the certificates an application should
// renew: here, those expiring within 30 days or already expired.
func ExampleResolver_Expiring() {
	ca, err := mailtest.GenerateCA("Example CA")
	if err != nil {
		log.Fatal(err)
	}
	fresh, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	if err != nil {
		log.Fatal(err)
	}
	old, err := ca.Expired(mailtest.RSA, "old.example.com")
	if err != nil {
		log.Fatal(err)
	}
	var certs sni.Resolver
	if err := certs.Add(&fresh.TLS); err != nil {
		log.Fatal(err)
	}
	if err := certs.Add(&old.TLS); err != nil {
		log.Fatal(err)
	}
	for _, in := range certs.Certificates() {
		fmt.Printf("%s: %s, issued by %s, default %v\n", in.Name, in.KeyType, in.Issuer, in.Default)
	}
	for _, in := range certs.Expiring(fresh.Cert.NotBefore, 30*24*time.Hour) {
		fmt.Println("renew:", in.Name)
	}
	// Output:
	// mail.example.com: ECDSA P-256, issued by Example CA, default true
	// old.example.com: RSA 2048, issued by Example CA, default false
	// renew: old.example.com
}

// ExampleStore serves the certificates of files on disk and picks up a
// renewal. A Store has no Add: what it serves is what its Sources hold, so
// a renewal is a change to the files followed by a reload (Watch does the
// reloading on its own).
func ExampleStore() {
	ca, err := mailtest.GenerateCA("Example CA")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sni-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	issue := func(names ...string) (certFile, keyFile string) {
		l, err := ca.Issue(mailtest.CertOptions{}, names...)
		if err != nil {
			log.Fatal(err)
		}
		certFile, keyFile, err = l.WriteFiles(dir, "mail")
		if err != nil {
			log.Fatal(err)
		}
		return certFile, keyFile
	}

	certFile, keyFile := issue("mail.example.com")
	certs := &sni.Store{Sources: []sni.Source{sni.Pair{CertFile: certFile, KeyFile: keyFile}}}
	if err := certs.Reload(); err != nil { // at start-up: fail early on bad files
		log.Fatal(err)
	}
	cfg := certs.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP}) // follows every reload
	_, ok := certs.Lookup("mail.example.net")
	fmt.Println("mail.example.net served:", ok)

	issue("mail.example.com", "mail.example.net") // the renewal adds a name
	reloaded, err := certs.ReloadIfChanged()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reloaded:", reloaded)
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "mail.example.net"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("mail.example.net served by:", c.Leaf.DNSNames)
	// Output:
	// mail.example.net served: false
	// reloaded: true
	// mail.example.net served by: [mail.example.com mail.example.net]
}

// ExamplePolicy_clientAuth requires client certificates from one CA on an
// IMAP listener, as nginx's "ssl_verify_client on" with
// "ssl_client_certificate": a client with a certificate of that CA gets
// the greeting, one without is refused with a TLS alert.
func ExamplePolicy_clientAuth() {
	serverCA, err := mailtest.GenerateCA("Example server CA")
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := serverCA.Issue(mailtest.CertOptions{}, "mail.example.com")
	if err != nil {
		log.Fatal(err)
	}
	clientCA, err := mailtest.GenerateCA("Example client CA")
	if err != nil {
		log.Fatal(err)
	}
	alice, err := clientCA.Issue(mailtest.CertOptions{}, "alice@example.com")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "clientauth")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	caFile, err := clientCA.WriteCA(dir, "client-ca.pem")
	if err != nil {
		log.Fatal(err)
	}

	cas, err := sni.LoadCAPool(caFile) // call cas.Reload() when the file changes
	if err != nil {
		log.Fatal(err)
	}
	var certs sni.Resolver
	if err := certs.AddDefault(&leaf.TLS); err != nil {
		log.Fatal(err)
	}
	cfg := certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP, ClientAuth: sni.RequireClientCert, ClientCAs: cas})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // serve: greet whoever completes the handshake
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				who := tc.ConnectionState().VerifiedChains[0][0].Subject.CommonName
				fmt.Fprintf(c, "* OK hello %s\r\n", who)
			}
			c.Close()
		}
	}()

	for _, cert := range []*tls.Certificate{&alice.TLS, nil} {
		cfg := &tls.Config{ServerName: "mail.example.com", RootCAs: serverCA.Pool(), NextProtos: []string{"imap"}}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			log.Fatal(err)
		}
		// In TLS 1.3 the server's verdict arrives with its first bytes.
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("refused:", strings.TrimPrefix(err.Error(), "remote error: tls: "))
		} else {
			fmt.Println(strings.TrimSpace(line))
		}
		c.Close()
	}
	ln.Close()
	wg.Wait()

	// Output:
	// * OK hello alice@example.com
	// refused: certificate required
}

// ExamplePeeker reads the ClientHello that opens a connection without
// answering it, to route the connection by its server name before anyone
// terminates its TLS (SNI passthrough). Every byte read comes back, for
// whoever handles the connection next to get first; bytes that are not a
// TLS handshake come back too, with ErrNotTLS.
func ExamplePeeker() {
	peek := func(send func(c net.Conn)) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			send(client) // returns when the server side closes, unanswered
			client.Close()
		}()
		var pk sni.Peeker
		hello, replay, err := pk.Peek(context.Background(), server)
		server.Close()
		<-done
		switch {
		case errors.Is(err, sni.ErrNotTLS):
			fmt.Printf("not TLS; replay %q\n", replay)
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Printf("server name %s, ALPN %v; replay starts with a handshake record: %t\n",
				hello.ServerName, hello.SupportedProtos, replay[0] == 22)
		}
	}
	peek(func(c net.Conn) {
		tls.Client(c, &tls.Config{ServerName: "mail.tenant.example", NextProtos: []string{"imap"}}).Handshake()
	})
	peek(func(c net.Conn) { c.Write([]byte("a1 CAPABILITY\r\n")) })
	// Output:
	// server name mail.tenant.example, ALPN [imap]; replay starts with a handshake record: true
	// not TLS; replay "a1 CAPABILITY\r\n"
}
