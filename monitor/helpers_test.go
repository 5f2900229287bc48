package monitor

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/require"
)

const testHost = "mail.example.test"

// pki is a CA and a server certificate for testHost.
type pki struct {
	ca     *mailtest.CA
	server *tls.Config
	roots  *x509.CertPool
}

// newPKI issues a leaf for testHost; leaf may replace it (expired, soon).
func newPKI(t *testing.T, issue func(*mailtest.CA) (*mailtest.Leaf, error)) pki {
	t.Helper()
	ca, err := mailtest.GenerateCA("monitor test CA")
	require.NoError(t, err)
	if issue == nil {
		issue = func(ca *mailtest.CA) (*mailtest.Leaf, error) { return ca.Issue(mailtest.CertOptions{}, testHost) }
	}
	leaf, err := issue(ca)
	require.NoError(t, err)
	return pki{ca: ca, server: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}, roots: ca.Pool()}
}

// client returns a client config trusting the CA and naming name.
func (p pki) client(name string) *tls.Config {
	return &tls.Config{RootCAs: p.roots, ServerName: name, MinVersion: tls.VersionTLS12}
}

// listen returns a loopback listener closed and drained at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// serveFunc runs handle on every connection to a loopback listener, each in
// its own goroutine, until the test ends; cleanup closes the listener and
// waits for every handler. Handlers must return when the client closes.
func serveFunc(t testing.TB, tlsCfg *tls.Config, handle func(net.Conn)) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tlsCfg != nil {
				c = tls.Server(c, tlsCfg)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// script greets with greeting and then answers lines: for each line read,
// reply(line) is written; an empty reply answers nothing. It returns when
// the client closes.
func script(greeting string, reply func(line string) string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := io.WriteString(c, greeting); err != nil {
			return
		}
		buf := make([]byte, 4096)
		var pending []byte
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			pending = append(pending, buf[:n]...)
			for {
				i := indexLF(pending)
				if i < 0 {
					break
				}
				line := string(pending[:i])
				pending = pending[i+1:]
				if len(line) > 0 && line[len(line)-1] == '\r' {
					line = line[:len(line)-1]
				}
				if r := reply(line); r != "" {
					if _, err := io.WriteString(c, r); err != nil {
						return
					}
				}
			}
		}
	}
}

func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// silent accepts and says nothing until the client leaves.
func silent(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// closedAddr returns an address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// quietLog discards server logs.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// Probe budgets in tests: silentBudget for servers that never answer (the
// reasons quote it), okBudget for everything else, generous because the
// test machine is shared and the race detector is slow.
const (
	silentBudget = 300 * time.Millisecond
	okBudget     = 10 * time.Second
)
