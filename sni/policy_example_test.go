package sni_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"time"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
)

// The TLS 1.2 suites a Policy accepts by default.
func ExampleIntermediateCipherSuites() {
	for _, id := range sni.IntermediateCipherSuites() {
		fmt.Println(tls.CipherSuiteName(id))
	}
	// Output:
	// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
	// TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
	// TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
	// TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	// TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
}

// A policy an auditor sets: AEAD suites only in TLS 1.2 (the default), and
// sessions resumed for 12 hours at most, with ticket keys set after the
// config was built, as a ticketkeys.Rotator sets them.
func ExamplePolicy_ticketLifetime() {
	ca, err := mailtest.GenerateCA("Example CA")
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	if err != nil {
		log.Fatal(err)
	}
	var certs sni.Resolver
	if err := certs.AddDefault(&leaf.TLS); err != nil {
		log.Fatal(err)
	}
	cfg := certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP, TicketLifetime: 12 * time.Hour})
	cfg.SetSessionTicketKeys([][32]byte{{1}})

	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // serve: a greeting on each connection, after the handshake
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("* OK\r\n")) // a failed handshake fails the write
			c.Close()
		}
	}()

	dial := func(c *tls.Config) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := (&tls.Dialer{Config: c}).DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return "refused"
		}
		defer conn.Close()
		_, _ = conn.Read(make([]byte, 6))
		st := conn.(*tls.Conn).ConnectionState()
		return fmt.Sprintf("%s resumed=%v", tls.CipherSuiteName(st.CipherSuite), st.DidResume)
	}
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com", MaxVersion: tls.VersionTLS12}
	cbc := client.Clone()
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	fmt.Println("CBC only:", dial(cbc))
	client.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	client.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	fmt.Println("first:", dial(client))
	fmt.Println("again:", dial(client))

	ln.Close()
	<-done
	// Output:
	// CBC only: refused
	// first: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 resumed=false
	// again: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 resumed=true
}
