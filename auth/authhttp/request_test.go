package authhttp

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

const okAnswer = "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\nAuth-Pass: x\r\n\r\n"

// headLines returns the header lines of a request head, without the
// request line and the Host line, in order.
func headLines(t *testing.T, head string) (requestLine string, lines []string) {
	t.Helper()
	all := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	for _, l := range all[1:] {
		if !strings.HasPrefix(l, "Host: ") {
			lines = append(lines, l)
		}
	}
	return all[0], lines
}

func ask(t *testing.T, c *Client, req *auth.Request, heads <-chan string) string {
	t.Helper()
	if _, err := c.Authenticate(context.Background(), req); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	select {
	case h := <-heads:
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("no request reached the server")
	}
	return ""
}

// TestRequestHeaders checks every header sent, as written on the wire.
func TestRequestHeaders(t *testing.T) {
	u, heads := rawServer(t, func(string) string { return okAnswer })
	ca, err := mailtest.GenerateCA("Test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(mailtest.CertOptions{CommonName: "alice"}, "alice.example.com")
	if err != nil {
		t.Fatal(err)
	}
	fp := sha1.Sum(leaf.Cert.Raw)
	serialHex := strings.ToUpper(leaf.Cert.SerialNumber.Text(16))
	if len(serialHex)%2 == 1 {
		serialHex = "0" + serialHex
	}
	tlsState := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	certState := &tls.ConnectionState{
		Version:          tls.VersionTLS12,
		CipherSuite:      tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		PeerCertificates: []*x509.Certificate{leaf.Cert},
		VerifiedChains:   [][]*x509.Certificate{{leaf.Cert, ca.Cert}},
	}

	for _, tt := range []struct {
		name     string
		header   http.Header
		passCert bool
		req      auth.Request
		want     []string
	}{
		{
			name: "imap plain",
			req:  *imapLogin("test@example.com", "secret"),
			want: []string{
				"Auth-Login-Attempt: 1",
				"Auth-Method: plain",
				"Auth-Pass: secret",
				"Auth-Protocol: imap",
				"Auth-User: test@example.com",
				"Client-IP: 192.0.2.42",
			},
		},
		{
			name:   "smtp login escaped, third attempt, ipv6 client, extra header",
			header: http.Header{"X-Auth-Key": {"shared secret"}},
			req: auth.Request{
				Protocol:  starttls.SMTP,
				Mechanism: auth.Login,
				User:      "user name%",
				Password:  "p\x00a\r\ns s\x7f%ü",
				Attempt:   3,
				Client:    &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 1},
				Helo:      "client.example.org",
			},
			want: []string{
				"Auth-Login-Attempt: 3",
				"Auth-Method: plain",
				"Auth-Pass: p%00a%0D%0As%20s%7F%25ü",
				"Auth-Protocol: smtp",
				"Auth-User: user%20name%25",
				"Client-Host: [UNAVAILABLE]",
				"Client-IP: 2001:db8::7",
				"X-Auth-Key: shared secret",
			},
		},
		{
			name: "smtp none",
			req: auth.Request{
				Protocol:  starttls.SMTP,
				Mechanism: auth.None,
				Client:    &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.9"), Port: 1},
				Helo:      "client.example.org",
				MailFrom:  "",
				RcptTo:    "postmaster@mail.example.com",
			},
			want: []string{
				"Auth-Login-Attempt: 1",
				"Auth-Method: none",
				"Auth-Pass: ",
				"Auth-Protocol: smtp",
				"Auth-SMTP-From: MAIL FROM:<>",
				"Auth-SMTP-Helo: client.example.org",
				"Auth-SMTP-To: RCPT TO:<postmaster@mail.example.com>",
				"Auth-User: ",
				"Client-Host: [UNAVAILABLE]",
				"Client-IP: 192.0.2.9",
			},
		},
		{
			name: "smtp none with a CR in the helo",
			req: auth.Request{
				Protocol:  starttls.SMTP,
				Mechanism: auth.None,
				Client:    &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 1},
				Helo:      "evil\r\nAuth-Status: OK",
				MailFrom:  "a b@example.com",
				RcptTo:    "x@example.com",
			},
			want: []string{
				"Auth-Login-Attempt: 1",
				"Auth-Method: none",
				"Auth-Pass: ",
				"Auth-Protocol: smtp",
				"Auth-SMTP-From: MAIL FROM:<a b@example.com>",
				"Auth-SMTP-Helo: evil%0D%0AAuth-Status: OK",
				"Auth-SMTP-To: RCPT TO:<x@example.com>",
				"Auth-User: ",
				"Client-Host: [UNAVAILABLE]",
				"Client-IP: 192.0.2.9",
			},
		},
		{
			name: "pop3 over tls without a certificate",
			req: auth.Request{
				Protocol:  starttls.POP3,
				Mechanism: auth.Plain,
				User:      "u",
				Password:  "p",
				Attempt:   2,
				Client:    &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1},
				TLS:       tlsState,
			},
			want: []string{
				"Auth-Login-Attempt: 2",
				"Auth-Method: plain",
				"Auth-Pass: p",
				"Auth-Protocol: pop3",
				"Auth-SSL: on",
				"Auth-SSL-Cipher: TLS_AES_128_GCM_SHA256",
				"Auth-SSL-Protocol: TLSv1.3",
				"Auth-SSL-Verify: NONE",
				"Auth-User: u",
				"Client-IP: 192.0.2.1",
			},
		},
		{
			name:     "imap external with a verified certificate",
			passCert: true,
			req: auth.Request{
				Protocol:   starttls.IMAP,
				Mechanism:  auth.External,
				User:       "alice",
				Attempt:    1,
				Client:     &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1},
				TLS:        certState,
				ClientCert: leaf.Cert,
			},
			want: []string{
				"Auth-Login-Attempt: 1",
				"Auth-Method: external",
				"Auth-Pass: ",
				"Auth-Protocol: imap",
				"Auth-SSL: on",
				"Auth-SSL-Cert: " + escape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Cert.Raw}))),
				"Auth-SSL-Cipher: ECDHE-ECDSA-AES128-GCM-SHA256",
				"Auth-SSL-Fingerprint: " + hex.EncodeToString(fp[:]),
				"Auth-SSL-Issuer: CN=Test CA,O=mailedge test",
				"Auth-SSL-Protocol: TLSv1.2",
				"Auth-SSL-Serial: " + serialHex,
				"Auth-SSL-Subject: CN=alice",
				"Auth-SSL-Verify: SUCCESS",
				"Auth-User: alice",
				"Client-IP: 192.0.2.1",
			},
		},
		{
			name: "unverified certificate",
			req: auth.Request{
				Protocol:  starttls.IMAP,
				Mechanism: auth.Plain,
				User:      "u",
				Password:  "p",
				Client:    &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1},
				TLS:       &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384, PeerCertificates: []*x509.Certificate{leaf.Cert}},
			},
			want: []string{
				"Auth-Login-Attempt: 1",
				"Auth-Method: plain",
				"Auth-Pass: p",
				"Auth-Protocol: imap",
				"Auth-SSL: on",
				"Auth-SSL-Cipher: TLS_AES_256_GCM_SHA384",
				"Auth-SSL-Protocol: TLSv1.3",
				"Auth-SSL-Verify: FAILED:certificate not verified",
				// As nginx's optional_no_ca: the details, for the auth
				// service to judge.
				"Auth-SSL-Subject: " + leaf.Cert.Subject.String(),
				"Auth-SSL-Issuer: " + leaf.Cert.Issuer.String(),
				"Auth-SSL-Serial: " + serialHex,
				"Auth-SSL-Fingerprint: " + fmt.Sprintf("%x", sha1.Sum(leaf.Cert.Raw)),
				"Auth-User: u",
				"Client-IP: 192.0.2.1",
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{URL: u, Header: tt.header, PassClientCert: tt.passCert}
			defer c.CloseIdleConnections()
			head := ask(t, c, &tt.req, heads)
			reqLine, got := headLines(t, head)
			if reqLine != "GET /mail/auth HTTP/1.1" {
				t.Errorf("request line %q", reqLine)
			}
			want := slices.Sorted(slices.Values(tt.want))
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("headers:\n got %q\nwant %q", got, want)
			}
			if !strings.Contains(head, "\r\nHost: "+strings.TrimPrefix(strings.TrimSuffix(u, "/mail/auth"), "http://")+"\r\n") {
				t.Errorf("no Host header in %q", head)
			}
		})
	}
}

// TestClientCertRoundTrip: Auth-SSL-Cert unescapes to the PEM of the
// certificate, as nginx's auth_http_pass_client_cert documents it.
func TestClientCertRoundTrip(t *testing.T) {
	ca, err := mailtest.GenerateCA("Test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(mailtest.CertOptions{}, "bob.example.com")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	s := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Auth-SSL-Cert")
		nginxTestsAuth(w, r)
	}))
	c := newClient(t, s.URL)
	c.PassClientCert = true
	req := imapLogin("bob", "pw")
	req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{leaf.Cert}}
	req.ClientCert = leaf.Cert
	if _, err := c.Authenticate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	raw, err := url.PathUnescape(<-got)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode([]byte(raw))
	if b == nil || len(rest) != 0 || string(b.Bytes) != string(leaf.Cert.Raw) {
		t.Fatalf("Auth-SSL-Cert does not unescape to the certificate's PEM: %q", raw)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"test@example.com":      "test@example.com",
		"a b":                   "a%20b",
		"100%":                  "100%25",
		"\x00\x01\x1f\t\r\n":    "%00%01%1F%09%0D%0A",
		"\x7f":                  "%7F",
		"üñí+/?&=:;\"'<>[]{}\\": "üñí+/?&=:;\"'<>[]{}\\",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
		if got, err := url.PathUnescape(escape(in)); err != nil || got != in {
			t.Errorf("escape(%q) does not unescape back: %q, %v", in, got, err)
		}
	}
	if got := clean("MAIL FROM:<a%b c>\r\n"); got != "MAIL FROM:<a%b c>%0D%0A" {
		t.Errorf("clean: %q", got)
	}
}

func TestRequestErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		url    string
		header http.Header
		req    *auth.Request
	}{
		{"ftp url", "ftp://127.0.0.1/", nil, imapLogin("u", "p")},
		{"bad url", "http://[::1", nil, imapLogin("u", "p")},
		{"unknown mechanism", "http://127.0.0.1:1/", nil, &auth.Request{Mechanism: "CRAM-MD5"}},
		{"CR in Header", "http://127.0.0.1:1/", http.Header{"X-Key": {"a\r\nAuth-Status: OK"}}, imapLogin("u", "p")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{URL: tt.url, Header: tt.header}
			_, err := c.Authenticate(context.Background(), tt.req)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}
