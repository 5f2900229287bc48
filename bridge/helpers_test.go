package bridge

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/mailedge/mailedge/internal/nbconn"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/require"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	a, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	return a.(*net.TCPConn), r.c.(*net.TCPConn)
}

// tlsConfigs returns a server and a client config that trust each other.
func tlsConfigs(t testing.TB) (srv, cli *tls.Config) {
	t.Helper()
	ca, err := mailtest.GenerateCA("bridge test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example")
	require.NoError(t, err)
	srv = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	cli = &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.example"}
	return srv, cli
}

// tlsPair returns a loopback TCP connection with TLS on it, handshake done:
// the first conn is the TLS client end, the second the server end. Both
// are over nbconn, as the starttls and backend packages make them.
func tlsPair(t testing.TB, srv, cli *tls.Config) (*tls.Conn, *tls.Conn) {
	t.Helper()
	a, b := tcpPair(t)
	return handshakePair(t, tls.Client(nbconn.Wrap(a), cli), tls.Server(nbconn.Wrap(b), srv))
}

// handshakePair runs the handshake between tc and ts.
func handshakePair(t testing.TB, tc, ts *tls.Conn) (*tls.Conn, *tls.Conn) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- ts.HandshakeContext(context.Background()) }()
	require.NoError(t, tc.HandshakeContext(context.Background()))
	require.NoError(t, <-errc)
	return tc, ts
}

// legs is what a test holds around a running Join: the client's end, the
// backend's end, and Join's result when it returns.
type legs struct {
	client, backend net.Conn
	done            chan joinResult
}

// startJoin builds two loopback legs (plain or TLS) and runs Join between
// their inner ends.
func startJoin(t testing.TB, ctx context.Context, useTLS bool, opt Options) *legs {
	t.Helper()
	var client, proxyC, proxyS, backend net.Conn
	if useTLS {
		srv, cli := tlsConfigs(t)
		client, proxyC = tlsPair(t, srv, cli)  // TLS ends at the proxy
		proxyS, backend = tlsPair(t, srv, cli) // and starts again
	} else {
		client, proxyC = tcpPair(t)
		proxyS, backend = tcpPair(t)
	}
	l := &legs{client: client, backend: backend, done: make(chan joinResult, 1)}
	go func() {
		st, err := Join(ctx, proxyC, proxyS, opt)
		l.done <- joinResult{st, err}
	}()
	t.Cleanup(func() { client.Close(); backend.Close() })
	return l
}

// closeWriteConn half-closes c, which must support it.
func closeWriteConn(t testing.TB, c net.Conn) {
	t.Helper()
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
}
