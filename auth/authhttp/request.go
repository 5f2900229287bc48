package authhttp

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/internal/netaddr"
	"github.com/mailedge/mailedge/internal/tlsname"
	"github.com/mailedge/mailedge/starttls"
)

// newRequest builds the GET nginx would send for req. Header names are
// spelt as nginx spells them (Client-IP, Auth-SSL, Auth-SMTP-Helo): they
// are set in the map directly, since http.Header.Set would canonicalise
// them to Client-Ip.
func (c *Client) newRequest(ctx context.Context, req *auth.Request) (*http.Request, error) {
	method, ok := authMethod(req.Mechanism)
	if !ok {
		return nil, fmt.Errorf("%w: mechanism %q has no auth_http method", ErrConfig, req.Mechanism)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %v", ErrConfig, err)
	}
	if s := hreq.URL.Scheme; s != "http" && s != "https" {
		return nil, fmt.Errorf("%w: URL scheme %q is not http or https", ErrConfig, s)
	}
	h := hreq.Header
	set := func(k, v string) { h[k] = []string{v} }
	set("User-Agent", "") // nginx sends none; "" keeps net/http's out
	set("Auth-Method", method)
	set("Auth-User", escape(req.User))
	set("Auth-Pass", escape(string(req.Password)))
	set("Auth-Protocol", req.Protocol.String())
	set("Auth-Login-Attempt", strconv.Itoa(max(req.Attempt, 1)))
	if ip := netaddr.IP(req.Client); ip.IsValid() {
		set("Client-IP", ip.String())
	}
	if req.Protocol == starttls.SMTP {
		// nginx sends Client-Host on SMTP only: the name resolved, or
		// [UNAVAILABLE] without a resolver. mailedge resolves nothing.
		set("Client-Host", "[UNAVAILABLE]")
	}
	if req.Mechanism == auth.None {
		// nginx sends the client's whole command lines; the request has
		// the addresses only.
		set("Auth-SMTP-Helo", clean(req.Helo))
		set("Auth-SMTP-From", "MAIL FROM:<"+clean(req.MailFrom)+">")
		set("Auth-SMTP-To", "RCPT TO:<"+clean(req.RcptTo)+">")
	}
	if req.TLS != nil {
		set("Auth-SSL", "on")
		set("Auth-SSL-Protocol", tlsname.Version(req.TLS.Version))
		set("Auth-SSL-Cipher", tlsname.Cipher(req.TLS.CipherSuite))
		cert := req.ClientCert
		switch {
		case cert != nil:
			set("Auth-SSL-Verify", "SUCCESS")
		case len(req.TLS.PeerCertificates) == 0:
			set("Auth-SSL-Verify", "NONE")
		default:
			// A certificate the listener did not verify (nginx's
			// optional_no_ca): FAILED:reason, and the certificate's
			// details, so that the auth service can decide what it proves.
			cert = req.TLS.PeerCertificates[0]
			set("Auth-SSL-Verify", "FAILED:certificate not verified")
		}
		if cert != nil {
			set("Auth-SSL-Subject", clean(cert.Subject.String()))
			set("Auth-SSL-Issuer", clean(cert.Issuer.String()))
			set("Auth-SSL-Serial", serial(cert))
			sum := sha1.Sum(cert.Raw)
			set("Auth-SSL-Fingerprint", hex.EncodeToString(sum[:]))
			if c.PassClientCert {
				set("Auth-SSL-Cert", escape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))))
			}
		}
	}
	for k, vs := range c.Header {
		for _, v := range vs {
			if hasCTL(v) {
				return nil, fmt.Errorf("%w: Header %q has a control character", ErrConfig, k)
			}
		}
		h[k] = append(h[k], vs...)
	}
	return hreq, nil
}

// authMethod is nginx's Auth-Method for a mechanism. nginx says "plain" for
// SASL LOGIN too: the password reached the proxy in the clear either way.
func authMethod(mechanism string) (string, bool) {
	switch mechanism {
	case auth.Plain, auth.Login:
		return "plain", true
	case auth.External:
		return "external", true
	case auth.None:
		return "none", true
	}
	return "", false
}

const upperHex = "0123456789ABCDEF"

// escape is nginx's ngx_escape_uri(NGX_ESCAPE_MAIL_AUTH) for Auth-User,
// Auth-Pass and Auth-SSL-Cert: space, "%" and the bytes below 0x20 become
// %XX with upper-case hex, every other byte is kept (UTF-8 as is). DEL
// (0x7f) is escaped too, which nginx does not do: net/http refuses it in a
// header, and a service that unescapes gets the same bytes back.
func escape(s string) string {
	return escapeIf(s, func(b byte) bool { return b <= ' ' || b == '%' || b == 0x7f })
}

// clean escapes the control characters of a value nginx sends as it is
// (Auth-SMTP-Helo, From, To, the certificate names), so that no header can
// be split: a CR becomes %0D. Values without one go unchanged.
func clean(s string) string {
	return escapeIf(s, func(b byte) bool { return b < ' ' || b == 0x7f })
}

func escapeIf(s string, esc func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if esc(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if esc(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// serial is the certificate's serial number as OpenSSL's i2a_ASN1_INTEGER
// prints it for nginx's Auth-SSL-Serial: upper-case hex, two digits a byte.
func serial(cert *x509.Certificate) string {
	if cert.SerialNumber == nil {
		return ""
	}
	b := cert.SerialNumber.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	s := strings.ToUpper(hex.EncodeToString(b))
	if cert.SerialNumber.Sign() < 0 {
		s = "-" + s
	}
	return s
}
