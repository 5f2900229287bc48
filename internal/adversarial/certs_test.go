package adversarial_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/starttls"
)

// hugeRSA is an RSA leaf over crypto/tls's 8192-bit client limit. An
// 8200-bit key takes seconds to minutes to generate, so the test binary
// makes it once.
var hugeRSA struct {
	once sync.Once
	leaf *mailtest.Leaf
	err  error
}

func hugeRSALeaf(ca *mailtest.CA) (*mailtest.Leaf, error) {
	hugeRSA.once.Do(func() {
		hugeRSA.leaf, hugeRSA.err = ca.Issue(mailtest.CertOptions{Key: mailtest.RSA, RSABits: 8200}, "mail.example.com")
	})
	return hugeRSA.leaf, hugeRSA.err
}

// selfSignedCert returns a leaf for name that signs itself: right name,
// valid dates, no trusted issuer.
func selfSignedCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testBackendCertificates: a backend whose certificate has the wrong name,
// has expired, is self-signed or has an RSA key over 8192 bits is refused
// by its own check (not by the deadline), over implicit TLS and STARTTLS.
func testBackendCertificates(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	wrongName, err := p.ca.Issue(mailtest.CertOptions{}, "other.example.net")
	require.NoError(t, err)
	expired, err := p.ca.Expired(mailtest.ECDSA, "mail.example.com")
	require.NoError(t, err)
	selfSigned := selfSignedCert(t, "mail.example.com")
	if testing.Short() {
		t.Log("-short: RSA 8200 case left out (key generation is slow)")
	}
	certs := []struct {
		name string
		cert tls.Certificate
	}{
		{"wrong_name", wrongName.TLS},
		{"expired", expired.TLS},
		{"self_signed", selfSigned},
	}
	if !testing.Short() {
		huge, err := hugeRSALeaf(p.ca)
		require.NoError(t, err)
		certs = append(certs, struct {
			name string
			cert tls.Certificate
		}{"rsa_8200", huge.TLS})
	}
	for _, cc := range certs {
		cfg := &tls.Config{Certificates: []tls.Certificate{cc.cert}}
		for _, sec := range []starttls.Security{starttls.TLS, starttls.STARTTLS} {
			handle := func(c net.Conn) { tls.Server(c, cfg).Handshake() }
			if sec == starttls.STARTTLS {
				handle = script{"220 fake\r\n", map[string]string{"EHLO": smtpCaps, "STARTTLS": "220 go ahead\r\n"}, cfg}.Serve
			}
			f := newFake(t, handle)
			d := &backend.Dialer{Addr: f.Addr(), Protocol: starttls.SMTP, Security: sec,
				TLSConfig: p.client.Clone(), HandshakeTimeout: ioWait}
			ctx, cancel := context.WithTimeout(context.Background(), 2*ioWait)
			conn, err := d.Dial(ctx, backend.ClientInfo{})
			cancel()
			if conn != nil {
				conn.Close()
			}
			require.Error(t, err, "%s over %s accepted", cc.name, sec)
			assert.False(t, isTimeout(err), "%s over %s: refused by the deadline, not the check: %v", cc.name, sec, err)
			assert.NotErrorIs(t, err, context.DeadlineExceeded)
			t.Logf("%s over %s: %v", cc.name, sec, err)
		}
	}
}
