package starttls

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// realServer is a listener whose single connection is served by s.Serve;
// after STARTTLS a small scripted backend answers on the TLS session, the
// way a handed-over backend would, so that a real client can finish.
type realServer struct {
	addr string
	res  chan serveResult // Serve's result, delivered once
	seen chan []string    // the commands the post-TLS backend received
}

func startRealServer(t *testing.T, s *Server) *realServer {
	t.Helper()
	if s.Timeout == 0 {
		s.Timeout = srvSafety
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rs := &realServer{addr: ln.Addr().String(), res: make(chan serveResult, 1), seen: make(chan []string, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			rs.res <- serveResult{err: err}
			return
		}
		defer conn.Close()
		sess, err := s.Serve(context.Background(), conn)
		rs.res <- serveResult{sess: sess, err: err}
		if err == nil {
			rs.seen <- afterTLS(s.Protocol, sess.Conn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return rs
}

// afterTLS plays a minimal backend on an upgraded session until the client
// quits, and returns the command lines it received.
func afterTLS(p Protocol, conn net.Conn) []string {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var seen []string
	for {
		raw, err := mailwire.ReadLine(br, 8192)
		line := mailwire.TrimEOL(raw)
		if err != nil {
			return seen
		}
		cmd := string(line)
		seen = append(seen, cmd)
		reply, quit := afterTLSReply(p, cmd)
		if _, err := conn.Write([]byte(reply)); err != nil || quit {
			return seen
		}
	}
}

func afterTLSReply(p Protocol, cmd string) (reply string, quit bool) {
	verb, _, _ := strings.Cut(cmd, " ")
	switch p {
	case SMTP:
		switch strings.ToUpper(verb) {
		case "EHLO":
			return crlf("250-backend.test", "250 AUTH PLAIN"), false
		case "QUIT":
			return crlf("221 2.0.0 bye"), true
		}
		return crlf("502 5.5.2 no"), false
	case IMAP:
		_, name, _ := strings.Cut(cmd, " ")
		switch strings.ToUpper(name) {
		case "CAPABILITY":
			return crlf("* CAPABILITY IMAP4rev1 AUTH=PLAIN", verb+" OK done"), false
		case "LOGOUT":
			return crlf("* BYE bye", verb+" OK done"), true
		}
		return crlf(verb + " BAD no"), false
	}
	switch strings.ToUpper(verb) {
	case "CAPA":
		return crlf("+OK", "USER", "."), false
	case "QUIT":
		return crlf("+OK bye"), true
	}
	return crlf("-ERR no"), false
}

func TestServeGoSMTPClient(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	rs := startRealServer(t, &Server{Protocol: SMTP, TLSConfig: pki.server, Hostname: "mx.test"})
	c, err := smtp.DialStartTLS(rs.addr, pki.client)
	require.NoError(t, err)
	ok, params := c.Extension("AUTH") // the EHLO after TLS goes to the backend
	assert.True(t, ok)
	assert.Equal(t, "PLAIN", params)
	state, isTLS := c.TLSConnectionState()
	assert.True(t, isTLS)
	assert.Equal(t, "mail.example.test", state.ServerName)
	require.NoError(t, c.Quit())

	r := <-rs.res
	require.NoError(t, r.err)
	assert.True(t, r.sess.TLS)
	assert.Equal(t, "EHLO", r.sess.HeloVerb)
	assert.Equal(t, []string{"EHLO localhost", "QUIT"}, <-rs.seen)
}

func TestServeGoIMAPClient(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	pki := newSrvPKI(t)
	rs := startRealServer(t, &Server{Protocol: IMAP, TLSConfig: pki.server, Hostname: "imap.test"})
	c, err := imapclient.DialStartTLS(rs.addr, &imapclient.Options{TLSConfig: pki.client})
	require.NoError(t, err)
	defer c.Close()
	caps, err := c.Capability().Wait() // asked again after TLS, of the backend
	require.NoError(t, err)
	assert.True(t, caps.Has(imap.AuthCap("PLAIN")))
	assert.False(t, caps.Has(imap.CapLoginDisabled))
	require.NoError(t, c.Logout().Wait())

	r := <-rs.res
	require.NoError(t, r.err)
	assert.True(t, r.sess.TLS)
	seen := <-rs.seen
	require.NotEmpty(t, seen)
	assert.True(t, strings.HasSuffix(seen[len(seen)-1], " LOGOUT"), "got %q", seen)
}
