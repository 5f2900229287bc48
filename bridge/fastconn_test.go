package bridge

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/nbconn"
)

// A *tls.Conn made by the caller over WrapConn is one the bridge reads
// without blocking and can park; one made on the bare socket is not.
func TestWrapConn(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	srv, cli := tlsConfigs(t)

	a, b := tcpPair(t)
	defer a.Close()
	_, ts := handshakePair(t, tls.Client(a, cli), tls.Server(WrapConn(b), srv))
	defer ts.Close()
	sock, nb := socketOf(ts)
	if readinessSupported && nbconn.TLSSafe() {
		assert.Same(t, b, sock, "the socket under the *tls.Conn is waited on")
		assert.NotNil(t, nb, "the *tls.Conn is read without blocking")
	} else {
		assert.Nil(t, sock, "no readiness waits on this platform or Go release")
	}

	c, d := tcpPair(t)
	defer c.Close()
	_, bare := handshakePair(t, tls.Client(c, cli), tls.Server(d, srv))
	defer bare.Close()
	sock, nb = socketOf(bare)
	assert.Nil(t, sock, "a *tls.Conn on the bare socket blocks in a read")
	assert.Nil(t, nb)

	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	assert.Same(t, p, WrapConn(p), "a conn that is not a socket is returned unchanged")
}
