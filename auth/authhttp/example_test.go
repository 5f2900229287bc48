package authhttp_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/auth/authhttp"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

func ExampleClient() {
	// An auth service as nginx's documentation describes one: it checks
	// the shared secret of auth_http_header, then the login.
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Auth-Key") != "shared-secret" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		// Auth-User and Auth-Pass come URL-escaped, as nginx sends them.
		if r.Header.Get("Auth-User") == "alice@example.com" && r.Header.Get("Auth-Pass") == "correct%20horse" {
			w.Header().Set("Auth-Status", "OK")
			w.Header().Set("Auth-Server", "192.0.2.10")
			w.Header().Set("Auth-Port", "143")
			return
		}
		w.Header().Set("Auth-Status", "Invalid login or password")
		w.Header().Set("Auth-Wait", "3")
	}))
	defer svc.Close()

	c := &authhttp.Client{
		URL:    svc.URL + "/mail/auth",
		Header: http.Header{"X-Auth-Key": {"shared-secret"}},
		Dialer: &backend.Dialer{IMAPID: true}, // how to reach the backends
	}
	defer c.CloseIdleConnections()

	for _, password := range []string{"wrong", "correct horse"} {
		res, err := c.Authenticate(context.Background(), &auth.Request{
			Protocol:  starttls.IMAP,
			Mechanism: auth.Plain,
			User:      "alice@example.com",
			Password:  auth.Secret(password),
			Attempt:   1,
			Client:    &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 50123},
		})
		switch {
		case err != nil:
			fmt.Println("no decision:", err)
		case res.OK:
			d := res.Backend.(*backend.Dialer)
			fmt.Println("allowed: backend", d.Addr, d.Protocol, "with ID:", d.IMAPID)
		default:
			fmt.Printf("refused: %q, after %v\n", res.Message, res.Wait)
		}
	}
	// Output:
	// refused: "Invalid login or password", after 3s
	// allowed: backend 192.0.2.10:143 imap with ID: true
}
