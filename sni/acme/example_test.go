package acme_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/sni/acme"
)

// An IMAPS listener whose certificates come from Let's Encrypt, beside
// certbot's: the Manager obtains and renews, and each new certificate
// reloads the Store. HTTP-01 is answered on port 80.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := &sni.Store{}
	mgr := &acme.Manager{
		Domains:  []string{"mail.example.com", "mail.example.net"},
		Email:    "postmaster@example.com",
		HTTPAddr: ":80",
		Dir:      "/var/lib/mailedge/acme",
		OnRenew: func(r acme.Renewal) {
			if err := store.Reload(); err != nil {
				slog.Error("reload", "err", err)
			}
		},
	}
	store.Sources = []sni.Source{mgr, sni.LetsEncrypt{Dir: "/etc/letsencrypt"}}
	go mgr.Run(ctx) // returns when ctx ends

	// The mail ALPN ids stay: sni.Policy builds the config, not certmagic.
	cfg := store.TLSConfig(sni.Policy{Protocol: sni.ALPNIMAP})
	_, _ = tls.Listen("tcp", ":993", cfg)
}

// Load returns nothing until a certificate was obtained or found in
// Storage, so that a Store with other sources serves them meanwhile.
func ExampleManager_Load() {
	mgr := &acme.Manager{Domains: []string{"mail.example.com"}}
	entries, _, err := mgr.Load()
	fmt.Println(len(entries), err)
	// Output: 0 <nil>
}
