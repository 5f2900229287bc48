package mailtest

// The test CA: certificates generated in memory for tests and demos, a CA,
// leaf certificates for DNS names (exact and wildcard) with ECDSA P-256 or
// RSA keys, expired and not-yet-valid leaves, and PEM files in a folder.
// Nothing here is meant for production trust: keys are generated per call
// and live only as long as the values that hold them.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyType selects the algorithm of a generated key.
type KeyType int

const (
	// ECDSA is an ECDSA P-256 key, the default: fast to generate and to sign.
	ECDSA KeyType = iota
	// RSA is an RSA key of 2048 bits unless Options.RSABits says otherwise.
	RSA
)

// String returns "ECDSA" or "RSA".
func (k KeyType) String() string {
	if k == RSA {
		return "RSA"
	}
	return "ECDSA"
}

// CA is a self-signed certificate authority that issues leaves.
type CA struct {
	Cert    *x509.Certificate // the self-signed CA certificate
	Key     crypto.Signer     // its ECDSA P-256 key
	CertPEM []byte            // Cert as PEM, for a client's CA file
	KeyPEM  []byte            // Key as PKCS #8 PEM
}

// CertOptions describe a leaf certificate. The zero value is an ECDSA leaf
// valid from an hour ago for 90 days.
type CertOptions struct {
	// Key is the key algorithm. If zero, ECDSA P-256.
	Key KeyType
	// RSABits is the RSA modulus size. If zero, 2048.
	RSABits int
	// NotBefore is the start of validity. If zero, one hour ago.
	NotBefore time.Time
	// NotAfter is the end of validity. If zero, NotBefore plus 90 days.
	NotAfter time.Time
	// CommonName is the subject CN. If empty, the first DNS name.
	CommonName string
	// NoSANs leaves the DNS SANs out, so only the CN names the host
	// (a legacy certificate).
	NoSANs bool
	// IPs are IP address SANs.
	IPs []net.IP
}

// NewCA returns a fresh ECDSA P-256 certificate authority for the test tb,
// named after it. It fails tb if the key cannot be generated.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	ca, err := GenerateCA("mailtest CA for " + tb.Name())
	if err != nil {
		tb.Fatalf("mailtest: new CA: %v", err)
	}
	return ca
}

// GenerateCA returns a fresh ECDSA P-256 certificate authority named name.
// It is NewCA for programs that have no testing.TB, such as a demo.
func GenerateCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"mailedge test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: keyPEM}, nil
}

// Pool returns a certificate pool that trusts only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Leaf is an issued certificate with its key, parsed and as PEM.
type Leaf struct {
	TLS     tls.Certificate   // Leaf field set; Certificate holds leaf then CA
	Cert    *x509.Certificate // the parsed leaf
	CertPEM []byte            // leaf followed by the CA certificate (a full chain)
	KeyPEM  []byte            // the leaf's key as PKCS #8 PEM
}

// Issue signs a leaf for names with opt. Names may include wildcards such as
// "*.example.com".
func (ca *CA) Issue(opt CertOptions, names ...string) (*Leaf, error) {
	key, err := newKey(opt)
	if err != nil {
		return nil, err
	}
	nb := opt.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	na := opt.NotAfter
	if na.IsZero() {
		na = nb.Add(90 * 24 * time.Hour)
	}
	cn := opt.CommonName
	if cn == "" && len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  opt.IPs,
	}
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if !opt.NoSANs {
		tmpl.DNSNames = names
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	chainPEM := append(pemBlock("CERTIFICATE", der), ca.CertPEM...)
	return &Leaf{
		TLS:     tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: cert},
		Cert:    cert,
		CertPEM: chainPEM,
		KeyPEM:  keyPEM,
	}, nil
}

// Expired issues a leaf for names whose validity ended a day ago.
func (ca *CA) Expired(key KeyType, names ...string) (*Leaf, error) {
	now := time.Now()
	return ca.Issue(CertOptions{Key: key, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}, names...)
}

// NotYetValid issues a leaf for names whose validity starts tomorrow.
func (ca *CA) NotYetValid(key KeyType, names ...string) (*Leaf, error) {
	now := time.Now()
	return ca.Issue(CertOptions{Key: key, NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)}, names...)
}

// MustIssue is Issue for a test: it fails tb instead of returning an error.
func (ca *CA) MustIssue(tb testing.TB, opt CertOptions, names ...string) *Leaf {
	tb.Helper()
	leaf, err := ca.Issue(opt, names...)
	if err != nil {
		tb.Fatalf("mailtest: issue %v: %v", names, err)
	}
	return leaf
}

// ServerConfig returns a server TLS configuration that presents a new leaf
// for names (ECDSA, valid now), failing tb if it cannot be issued.
func (ca *CA) ServerConfig(tb testing.TB, names ...string) *tls.Config {
	tb.Helper()
	leaf := ca.MustIssue(tb, CertOptions{}, names...)
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
}

// ClientConfig returns a client TLS configuration that trusts only this CA
// and expects serverName.
func (ca *CA) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), ServerName: serverName}
}

// WriteFiles writes the leaf's chain and key as PEM into dir under the given
// base name and returns the paths (base.crt, base.key).
func (l *Leaf) WriteFiles(dir, base string) (certFile, keyFile string, err error) {
	certFile = filepath.Join(dir, base+".crt")
	keyFile = filepath.Join(dir, base+".key")
	if err = os.WriteFile(certFile, l.CertPEM, 0o600); err != nil {
		return "", "", err
	}
	if err = os.WriteFile(keyFile, l.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// WriteCA writes the CA certificate as PEM to dir/name and returns the path.
func (ca *CA) WriteCA(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, ca.CertPEM, 0o644)
}

func newKey(opt CertOptions) (crypto.Signer, error) {
	if opt.Key == RSA {
		bits := opt.RSABits
		if bits == 0 {
			bits = 2048
		}
		return rsa.GenerateKey(rand.Reader, bits)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testcert: marshal key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// Throwaway returns a certificate for names signed by a fresh CA that is
// then forgotten: for examples that must run without any setup.
func Throwaway(names ...string) (*tls.Certificate, error) {
	ca, err := GenerateCA("throwaway CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(CertOptions{}, names...)
	if err != nil {
		return nil, err
	}
	return &leaf.TLS, nil
}
