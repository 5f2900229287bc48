package bridge

import (
	"net"

	"github.com/mailedge/mailedge/internal/nbconn"
)

// WrapConn returns the conn to make a *tls.Conn on when Join or Start will
// copy that TLS session: use it under tls.Server or tls.Client, between
// Accept (or Dial) and the handshake,
//
//	tc := tls.Server(bridge.WrapConn(conn), cfg)
//
// for a *tls.Conn built outside this module (a certmagic or autocert
// tls.Config, a listener of your own). For a *net.TCPConn or *net.UnixConn
// it returns the socket wrapper that the starttls and backend packages put
// under every *tls.Conn they make; any other conn it returns unchanged.
//
// The wrapper passes everything to the socket and behaves like it until
// the bridge takes the *tls.Conn: the bridge then reads the TLS stream
// without blocking, waits for the socket without holding a buffer, and
// parks an idle session in a Poller with no goroutine. A *tls.Conn made
// directly on the socket works too, but the bridge cannot tell whether it
// holds a decrypted record, so each of its directions keeps a goroutine
// blocked in a one-byte read for the session's life.
//
// Wrap the socket itself, before anything reads from it: a conn that may
// hold bytes read ahead (a PROXY protocol or buffering wrapper) is returned
// unchanged, and its *tls.Conn takes the slow path.
func WrapConn(c net.Conn) net.Conn { return nbconn.Wrap(c) }
