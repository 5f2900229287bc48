package mailedge_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// IMAPS offload, as a NetScaler does it in front of Dovecot: TLS ends at
// the proxy with the certificate the client asked for by SNI, and the
// session goes on in plain text to the mail server's port 143.
func Example() {
	// A mail server to put the proxy in front of (in production: Dovecot).
	sys, _ := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer sys.Close()
	addrs, _ := sys.Start(context.Background())

	ca, _ := mailtest.GenerateCA("example CA")
	com, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	net_, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.net")

	// The application's few lines: certificates, the client side, the backend.
	var certs sni.Resolver
	certs.AddDefault(&com.TLS)
	certs.Add(&net_.TLS)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: addrs.IMAP, Protocol: starttls.IMAP, Proxy: backend.NoProxy},
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { p.Serve(ctx, l); close(done) }()
	defer func() { l.Close(); cancel(); <-done }()

	// A client asking for mail.example.net.
	c, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{
		TLSConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.net"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("STARTTLS offered inside TLS:", c.Caps().Has(imap.CapStartTLS))
	fmt.Println("login:", c.Login("demo@example.com", "demo").Wait() == nil)
	c.Logout().Wait()
	c.Close()
	// Output:
	// STARTTLS offered inside TLS: false
	// login: true
}

// SMTPS bridging, as a NetScaler does it in front of Postfix: the client's
// TLS ends at the proxy and a new TLS session, verified against the backend's
// own CA and name, carries the submission to the mail server's port 465.
func ExampleProxy_bridging() {
	ca, _ := mailtest.GenerateCA("example CA")
	front, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	back, _ := ca.Issue(mailtest.CertOptions{}, "mx.internal")

	// The mail server, speaking implicit TLS with its own certificate.
	sys, _ := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{back.TLS}}})
	defer sys.Close()
	addrs, _ := sys.Start(context.Background())

	var certs sni.Resolver
	certs.AddDefault(&front.TLS)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.SMTP, TLSConfig: certs.TLSConfig(sni.Policy{Protocol: sni.ALPNSMTP})},
		Implicit: true,
		Backend: &backend.Dialer{Addr: addrs.Submissions, Protocol: starttls.SMTP, Security: starttls.TLS,
			TLSConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.internal"}},
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { p.Serve(ctx, l); close(done) }()
	defer func() { l.Close(); cancel(); <-done }()

	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.Hello("client.example")
	fmt.Println("auth:", c.Auth(sasl.NewPlainClient("", "demo@example.com", "demo")) == nil)
	err = c.SendMail("demo@example.com", []string{"demo@example.com"}, strings.NewReader("Subject: bridged\r\n\r\nhi\r\n"))
	fmt.Println("sent:", err == nil)
	c.Quit()
	msgs, _ := sys.Messages(context.Background(), "demo@example.com")
	fmt.Println("delivered:", len(msgs))
	// Output:
	// auth: true
	// sent: true
	// delivered: 1
}

// A graceful stop, as on SIGTERM: Shutdown closes the listener at once,
// lets the sessions in progress finish, and cuts those still running when
// its context ends.
func ExampleProxy_Shutdown() {
	sys, _ := mailtest.New(mailtest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer sys.Close()
	addrs, _ := sys.Start(context.Background())
	ca, _ := mailtest.GenerateCA("example CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")

	p := &mailedge.Proxy{
		Server:  &starttls.Server{Protocol: starttls.SMTP, Mode: starttls.Allow, TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}},
		Backend: &backend.Dialer{Addr: addrs.MX, Protocol: starttls.SMTP},
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- p.Serve(context.Background(), l) }()

	c, _ := smtp.Dial(l.Addr().String()) // a session in progress
	c.Hello("client.example")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the grace period
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()

	fmt.Println("session still served:", c.Noop() == nil)
	c.Quit() // the last session ends, so Shutdown returns
	fmt.Println("shutdown:", <-shut)
	fmt.Println("serve:", <-served)
	// Output:
	// session still served: true
	// shutdown: <nil>
	// serve: <nil>
}

// Login at the edge, as nginx's mail module does it in front of several
// mail stores: the proxy reads the client's login, asks the application's
// Authenticator where the mailbox lives, logs in there and only then
// copies. Here each user's domain picks the backend.
func ExampleProxy_login() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	comSys, _ := mailtest.New(mailtest.Options{Logger: quiet, Users: map[string]string{"alice@example.com": "wonderland"}})
	defer comSys.Close()
	com, _ := comSys.Start(context.Background())
	netSys, _ := mailtest.New(mailtest.Options{Logger: quiet, Users: map[string]string{"bob@example.net": "builder"}})
	defer netSys.Close()
	net2, _ := netSys.Start(context.Background())
	stores := map[string]auth.Backend{
		"example.com": &backend.Dialer{Addr: com.IMAP, Protocol: starttls.IMAP},
		"example.net": &backend.Dialer{Addr: net2.IMAP, Protocol: starttls.IMAP},
	}

	ca, _ := mailtest.GenerateCA("example CA")
	leaf, _ := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	var certs sni.Resolver
	certs.AddDefault(&leaf.TLS)
	members := make(chan string, 2)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: certs.TLSConfig(sni.Policy{})},
		Implicit: true,
		Login: &auth.Server{
			// The application's directory: here, the domain of the user
			// names the store, and the store checks the password.
			Authenticator: auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
				_, domain, _ := strings.Cut(r.User, "@")
				if b, ok := stores[domain]; ok {
					return &auth.Result{OK: true, Backend: b}, nil
				}
				return &auth.Result{Message: "Unknown user"}, nil
			}),
		},
		OnSession: func(in mailedge.SessionInfo) {
			if in.User != "" && in.Member != "" {
				members <- in.User + " on " + map[string]string{com.IMAP: "the example.com store", net2.IMAP: "the example.net store"}[in.Member]
			}
		},
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { p.Serve(ctx, l); close(done) }()
	defer func() { l.Close(); cancel(); <-done }()

	for _, u := range [][2]string{{"alice@example.com", "wonderland"}, {"bob@example.net", "builder"}} {
		c, err := imapclient.DialTLS(l.Addr().String(), &imapclient.Options{
			TLSConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example.com"}})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("login:", u[0], c.Login(u[0], u[1]).Wait() == nil)
		c.Logout().Wait()
		c.Close()
		fmt.Println(<-members)
	}
	// Output:
	// login: alice@example.com true
	// alice@example.com on the example.com store
	// login: bob@example.net true
	// bob@example.net on the example.net store
}

// PassthroughNames routes an implicit-TLS connection by the name in its
// ClientHello: a tenant's name goes unread to the tenant's server, which
// holds the name's keys; every other name, and a ClientHello without one,
// is terminated by the Proxy. Exact names win over "*.domain" entries,
// which match one label below the domain; case and one trailing dot do
// not matter.
func ExamplePassthroughNames() {
	tenant := &backend.Dialer{Addr: "192.0.2.9:993", Protocol: starttls.IMAP, Passthrough: true}
	hosted := &backend.Dialer{Addr: "192.0.2.10:993", Protocol: starttls.IMAP, Passthrough: true}
	vip := &backend.Dialer{Addr: "192.0.2.11:993", Protocol: starttls.IMAP, Passthrough: true}
	route := mailedge.PassthroughNames(map[string]mailedge.Backend{
		"mail.tenant.example": tenant,
		"*.hosted.example":    hosted,
		"vip.hosted.example":  vip,
	})
	// The Proxy calls it with each ClientHello it peeks:
	//	p := &mailedge.Proxy{Implicit: true, Passthrough: route, ...}
	where := map[mailedge.Backend]string{tenant: "passed through to 192.0.2.9", hosted: "passed through to 192.0.2.10", vip: "passed through to 192.0.2.11"}
	for _, name := range []string{"mail.tenant.example", "MAIL.Tenant.Example.", "imap.hosted.example", "vip.hosted.example", "a.b.hosted.example", "mail.example.com", ""} {
		be := route(&tls.ClientHelloInfo{ServerName: name})
		if be == nil {
			fmt.Printf("%q: terminated here\n", name)
			continue
		}
		fmt.Printf("%q: %s\n", name, where[be])
	}
	// Output:
	// "mail.tenant.example": passed through to 192.0.2.9
	// "MAIL.Tenant.Example.": passed through to 192.0.2.9
	// "imap.hosted.example": passed through to 192.0.2.10
	// "vip.hosted.example": passed through to 192.0.2.11
	// "a.b.hosted.example": terminated here
	// "mail.example.com": terminated here
	// "": terminated here
}
