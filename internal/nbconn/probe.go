package nbconn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// TLSSafe reports whether a *tls.Conn over a Conn may be read in
// non-blocking mode: whether crypto/tls, as built into this program, hands
// ErrWouldBlock back unchanged and keeps the connection usable, the bytes
// of a partial record included, for the next Read. crypto/tls does so for
// any net.Error whose Temporary reports true, but does not document it, so
// a Go release could change it. TLSSafe runs a self-test the first time it
// is called: a TLS handshake over a Unix socket pair in memory, then the
// reads a bridge makes. Its answer is kept for the life of the process.
// Where it reports false, read a *tls.Conn over a Conn only in blocking
// mode. It is always false where Conn cannot read without blocking.
func TLSSafe() bool { return tlsSafe() }

// tlsSafe is the self-test's result, computed once: a fact about the
// program, not configuration.
var tlsSafe = sync.OnceValue(func() bool { return probeTLS() == nil })

// probeTLS is the self-test of TLSSafe; it returns why the behaviour is
// not the one relied on.
func probeTLS() error {
	a, b, err := socketPair()
	if err != nil {
		return err
	}
	nb, ok := Wrap(a).(*Conn)
	if !ok {
		a.Close()
		b.Close()
		return errors.New("nbconn: socket pair not wrapped")
	}
	cert, pool, err := probeCert()
	if err != nil {
		a.Close()
		b.Close()
		return err
	}
	srv := tls.Server(nb, &tls.Config{Certificates: []tls.Certificate{cert}})
	defer srv.Close()
	split := &splitWriter{Conn: b}
	cli := tls.Client(split, &tls.Config{RootCAs: pool, ServerName: probeName})
	defer cli.Close()
	// The socket pair is closed on every path, which ends the handshake
	// if it is stuck; the deadline bounds it otherwise.
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(context.Background()) }()
	cerr := cli.HandshakeContext(context.Background())
	if serr := <-errc; cerr == nil {
		cerr = serr
	}
	if cerr != nil {
		return fmt.Errorf("nbconn: probe handshake: %w", cerr)
	}
	return probeReads(srv, nb, cli, split)
}

// probeReads makes the reads a bridge makes on srv over nb: with nothing
// queued, then with half a record queued, then with the rest.
func probeReads(srv *tls.Conn, nb *Conn, cli *tls.Conn, split *splitWriter) error {
	nb.SetNonblocking(true)
	buf := make([]byte, 64)
	if _, err := srv.Read(buf); !errors.Is(err, ErrWouldBlock) {
		return fmt.Errorf("nbconn: read with nothing queued: got %v; want ErrWouldBlock", err)
	}
	split.hold = 7 // the record header and two bytes
	const msg = "probe"
	if _, err := cli.Write([]byte(msg)); err != nil {
		return err
	}
	if _, err := srv.Read(buf); !errors.Is(err, ErrWouldBlock) {
		return fmt.Errorf("nbconn: read of half a record: got %v; want ErrWouldBlock", err)
	}
	if err := split.release(); err != nil {
		return err
	}
	// A Unix stream socket queues what is written before write returns,
	// so the rest of the record is there to read now.
	n, err := srv.Read(buf)
	if err != nil || string(buf[:n]) != msg {
		return fmt.Errorf("nbconn: read after ErrWouldBlock: got %q, %v; want %q", buf[:n], err, msg)
	}
	return nil
}

// probeName is the name in the self-test's certificate.
const probeName = "nbconn.probe.invalid"

// probeCert makes a self-signed Ed25519 certificate (fast to make) and a
// pool that trusts it.
func probeCert() (tls.Certificate, *x509.CertPool, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{probeName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// splitWriter writes the first hold bytes of the next write and keeps the
// rest until release.
type splitWriter struct {
	net.Conn
	hold int
	held []byte
}

func (s *splitWriter) Write(p []byte) (int, error) {
	if s.hold > 0 && len(p) > s.hold {
		s.held = append(s.held, p[s.hold:]...)
		_, err := s.Conn.Write(p[:s.hold])
		s.hold = 0
		return len(p), err
	}
	return s.Conn.Write(p)
}

func (s *splitWriter) release() error {
	_, err := s.Conn.Write(s.held)
	s.held = nil
	return err
}
