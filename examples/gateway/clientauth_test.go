package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

func TestClientCertFlags(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	c, err := mailtest.GenerateCA("flags CA")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ca, c.CertPEM, 0o600))
	for _, tc := range []struct{ opts, want string }{
		{"verify=on", "verify=on needs client-ca=FILE"},
		{"verify=optional", "verify=optional needs client-ca=FILE"},
		{"verify=maybe,client-ca=" + ca, `"maybe": want off, optional, on or optional_no_ca`},
		{"client-ca=" + ca, "client-ca= is used only with verify=on or verify=optional, not verify=off"},
		{"verify=optional_no_ca,client-ca=" + ca, "not verify=optional_no_ca"},
	} {
		_, err := parseListen("i=127.0.0.1:0,proto=imap,tls=implicit,pool=p," + tc.opts)
		assert.ErrorContains(t, err, tc.want, tc.opts)
	}
	// A bundle that does not load stops the gateway before it serves.
	for _, bad := range []string{"/nonexistent/ca.pem", writeTemp(t, "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")} {
		o, err := parseFlags([]string{"-cert", testCertFlag(t, t.TempDir()), "-backend", "p=127.0.0.1:1,probe=none",
			"-listen", "i=127.0.0.1:0,proto=imap,tls=implicit,pool=p,verify=on,client-ca=" + bad}, io.Discard)
		require.NoError(t, err)
		_, err = build(o, discardLog())
		assert.ErrorContains(t, err, "client-ca=", bad)
	}
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
	return p
}

// proxiedIMAP is an IMAP backend that reads a PROXY v2 header first and
// reports the client-certificate part of its SSL TLV, then greets and
// stays until the client leaves.
type proxiedIMAP struct {
	addr string
	seen chan tlvparse.PP2SSL
}

func startProxiedIMAP(t *testing.T) *proxiedIMAP {
	b := &proxiedIMAP{seen: make(chan tlvparse.PP2SSL, 16)}
	b.addr = testnet.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		h, err := proxyproto.Read(r)
		if err != nil {
			return
		}
		tlvs, err := h.TLVs()
		if err != nil {
			return
		}
		ssl, _ := tlvparse.FindSSL(tlvs)
		b.seen <- ssl
		io.WriteString(c, "* OK [CAPABILITY IMAP4rev1] backend ready\r\n")
		io.Copy(io.Discard, r)
	})
	return b
}

// clientCerts is the test's PKI: the CA the gateway trusts for clients,
// another CA, and their certificates, written as files for real clients.
type clientCerts struct {
	dir               string
	serverCA, trusted *mailtest.CA
	good, stranger    *mailtest.Leaf
	expired, imposter *mailtest.Leaf
	caFile, certFlag  string
}

func newClientCerts(t *testing.T) *clientCerts {
	t.Helper()
	p := &clientCerts{dir: t.TempDir()}
	var err error
	p.serverCA, err = mailtest.GenerateCA("server CA")
	require.NoError(t, err)
	leaf, err := p.serverCA.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	c, k, err := leaf.WriteFiles(p.dir, "server")
	require.NoError(t, err)
	p.certFlag = c + "," + k + ",default"
	p.trusted, err = mailtest.GenerateCA("client CA")
	require.NoError(t, err)
	p.caFile, err = p.trusted.WriteCA(p.dir, "client-ca.pem")
	require.NoError(t, err)
	p.good, err = p.trusted.Issue(mailtest.CertOptions{}, "alice.example.com")
	require.NoError(t, err)
	p.expired, err = p.trusted.Expired(mailtest.ECDSA, "old.example.com")
	require.NoError(t, err)
	// Another CA that even calls itself "client CA": names are not trust.
	other, err := mailtest.GenerateCA("client CA")
	require.NoError(t, err)
	p.imposter, err = other.Issue(mailtest.CertOptions{}, "alice.example.com")
	require.NoError(t, err)
	another, err := mailtest.GenerateCA("another CA")
	require.NoError(t, err)
	p.stranger, err = another.Issue(mailtest.CertOptions{}, "mallory.example.com")
	require.NoError(t, err)
	return p
}

// dialCert makes a TLS handshake as an IMAP client presenting leaf (none
// if nil), whatever CAs the server names, and reads the first line.
func dialCert(t *testing.T, addr string, roots *x509.CertPool, leaf *mailtest.Leaf) (string, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "mail.example.com", NextProtos: []string{"imap"}}
	if leaf != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// Each of nginx's ssl_verify_client modes on an implicit-TLS IMAP listener,
// with the cases of nginx's mail_imap_ssl.t and more: the identity reaches
// the backend in the PROXY v2 SSL TLV and the session log line, and a
// refusal is a TLS alert counted by reason.
func TestClientCertModes(t *testing.T) {
	p := newClientCerts(t)
	be := startProxiedIMAP(t)
	logs := new(syncBuffer)
	o, err := parseFlags([]string{"-cert", p.certFlag, "-backend", "imap=" + be.addr + ",proxy=v2,probe=none",
		"-listen", "on=127.0.0.1:0,proto=imap,tls=implicit,pool=imap,verify=on,client-ca=" + p.caFile,
		"-listen", "optional=127.0.0.1:0,proto=imap,tls=implicit,pool=imap,verify=optional,client-ca=" + p.caFile,
		"-listen", "noca=127.0.0.1:0,proto=imap,tls=implicit,pool=imap,verify=optional_no_ca",
		"-listen", "off=127.0.0.1:0,proto=imap,tls=implicit,pool=imap",
		"-metrics", "127.0.0.1:0", "-watch", "0"}, io.Discard)
	require.NoError(t, err)
	g, err := build(o, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, g.start(ctx, make(chan os.Signal)))
	t.Cleanup(func() { cancel(); g.shutdown(5 * time.Second) })
	addr := make(map[string]string)
	for i, l := range g.listeners {
		addr[g.specs[i].Name] = l.Addr().String()
	}
	roots := p.serverCA.Pool()

	type want int
	const (
		refused want = iota
		anonymous
		verified
		unverified
	)
	cases := []struct {
		listener, what string
		leaf           *mailtest.Leaf
		want           want
	}{
		{"on", "no certificate", nil, refused},
		{"on", "a certificate of the trusted CA", p.good, verified},
		{"on", "a certificate of another CA", p.stranger, refused},
		{"on", "another CA with the trusted CA's name", p.imposter, refused},
		{"on", "an expired certificate of the trusted CA", p.expired, refused},
		{"optional", "no certificate", nil, anonymous},
		{"optional", "a certificate of the trusted CA", p.good, verified},
		{"optional", "a certificate of another CA", p.stranger, refused},
		{"noca", "a certificate of another CA", p.stranger, unverified},
		{"noca", "no certificate", nil, anonymous},
		{"off", "a certificate nobody asked for", p.good, anonymous},
	}
	for _, c := range cases {
		line, err := dialCert(t, addr[c.listener], roots, c.leaf)
		if c.want == refused {
			require.Error(t, err, "%s: %s", c.listener, c.what)
			var alert tls.AlertError
			assert.True(t, errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls: "),
				"%s: %s: a TLS alert, got %v", c.listener, c.what, err)
			continue
		}
		require.NoError(t, err, "%s: %s", c.listener, c.what)
		assert.True(t, strings.HasPrefix(line, "* OK"), line)
		ssl := <-be.seen
		assert.True(t, ssl.ClientSSL(), "%s: %s", c.listener, c.what)
		cn, hasCN := ssl.ClientCN()
		switch c.want {
		case anonymous:
			assert.False(t, ssl.ClientCertConn(), "%s: %s", c.listener, c.what)
			assert.False(t, hasCN)
		case verified:
			assert.True(t, ssl.ClientCertConn())
			assert.True(t, ssl.Verified(), "%s: %s", c.listener, c.what)
			assert.Equal(t, c.leaf.Cert.Subject.CommonName, cn)
		case unverified:
			assert.True(t, ssl.ClientCertConn())
			assert.False(t, ssl.Verified(), "%s: %s: not verified", c.listener, c.what)
			assert.Equal(t, c.leaf.Cert.Subject.CommonName, cn)
		}
	}

	// Every session has its line; the verified and unverified identities
	// are in them.
	testnet.WaitFor(t, 10*time.Second, "the session lines", func() bool {
		return strings.Count(logs.String(), "msg=session") >= len(cases)
	})
	out := logs.String()
	assert.Contains(t, out, `client_cert="CN=alice.example.com" client_cert_verified=true`)
	assert.Contains(t, out, `client_cert="CN=mallory.example.com" client_cert_verified=false`)
	assert.Contains(t, out, "client CAs loaded")
	for _, c := range []struct {
		listener, reason string
		n                float64
	}{{"on", "client_cert_missing", 1}, {"on", "client_cert_invalid", 3}, {"optional", "client_cert_invalid", 1}} {
		assert.Equal(t, c.n, counterValue(t, g, "mailedge_client_failures_total", c.listener, c.reason), "%s %s", c.listener, c.reason)
	}
}

// counterValue returns the value of a counter with the listener and reason
// labels, 0 if it has none yet.
func counterValue(t *testing.T, g *gateway, name, listener, reason string) float64 {
	t.Helper()
	mfs, err := g.metrics.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["listener"] == listener && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Real clients with client certificates on a verify=on listener that takes
// the login: openssl s_client and curl log in with SASL EXTERNAL as the
// certificate's name, and are refused with an alert without one. A SIGHUP
// reloads the CA bundle: the old CA's clients are refused after it.
func TestClientCertRealClients(t *testing.T) {
	openssl, curl := needProgram(t, "openssl"), needProgram(t, "curl")
	p := newClientCerts(t)
	demoUser, err := p.trusted.Issue(mailtest.CertOptions{}, "demo@example.com")
	require.NoError(t, err)
	crt, key, err := demoUser.WriteFiles(p.dir, "demo")
	require.NoError(t, err)
	// EXTERNAL needs a line of the user's own; pass= logs in at the backend.
	users := writeTemp(t, "users", "demo@example.com {PLAIN}demo pool=a pass=demo\n")
	logs := new(syncBuffer)
	d := startDemoGateway(t, logs, false, "-auth-file", users,
		"-listen", "mtls=127.0.0.1:0,proto=imap,tls=implicit,pool=imap,auth,verify=on,client-ca="+p.caFile)
	addr := d.addrs["mtls"]
	_, port, _ := net.SplitHostPort(addr)

	sclient := func(cert bool) (string, error) {
		args := []string{"s_client", "-connect", addr, "-servername", "mail.example.com", "-CAfile", d.ds.caFile,
			"-verify_return_error", "-alpn", "imap", "-crlf", "-quiet"}
		if cert {
			args = append(args, "-cert", crt, "-key", key)
		}
		cmd := exec.Command(openssl, args...)
		// AUTHENTICATE EXTERNAL with an empty initial response: the
		// identity is the certificate's.
		cmd.Stdin = strings.NewReader("A1 AUTHENTICATE EXTERNAL =\nA2 SELECT INBOX\nA3 LOGOUT\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := sclient(true)
	require.NoError(t, err, out)
	assert.Contains(t, out, "A1 OK")
	assert.Contains(t, out, "A2 OK")
	out, _ = sclient(false)
	assert.Contains(t, out, "alert certificate required", out)
	assert.NotContains(t, out, "A1 OK")

	curlList := func(cert bool) (string, error) {
		args := []string{"-sS", "--max-time", "20", "--cacert", d.ds.caFile, "--resolve", "mail.example.com:" + port + ":127.0.0.1",
			"--login-options", "AUTH=EXTERNAL", "-u", "demo@example.com:", "imaps://mail.example.com:" + port + "/"}
		if cert {
			args = append(args, "--cert", crt, "--key", key)
		}
		out, err := exec.Command(curl, args...).CombinedOutput()
		return string(out), err
	}
	out, err = curlList(true)
	require.NoError(t, err, out)
	assert.Contains(t, out, "INBOX")
	out, err = curlList(false)
	assert.Error(t, err, out)
	assert.NotContains(t, out, "INBOX")

	testnet.WaitFor(t, 10*time.Second, "the session lines", func() bool {
		return strings.Count(logs.String(), "listener=mtls") >= 4
	})
	assert.Contains(t, logs.String(), `user=demo@example.com bytes_in=`)
	assert.Contains(t, logs.String(), `client_cert="CN=demo@example.com" client_cert_verified=true`)

	// A new CA bundle, reloaded by SIGHUP: the old CA's clients are
	// refused, the new CA's admitted.
	next, err := mailtest.GenerateCA("next client CA")
	require.NoError(t, err)
	tmp := p.caFile + ".new"
	require.NoError(t, os.WriteFile(tmp, next.CertPEM, 0o600))
	require.NoError(t, os.Rename(tmp, p.caFile))
	d.hup <- syscall.SIGHUP
	testnet.WaitFor(t, 10*time.Second, "the CA reload", func() bool { return strings.Contains(logs.String(), "client CAs reloaded") })
	out, _ = sclient(true)
	assert.Contains(t, out, "alert", "the old CA's certificate after the reload")
	assert.NotContains(t, out, "A1 OK")
	l, err := next.Issue(mailtest.CertOptions{}, "demo@example.com")
	require.NoError(t, err)
	crt, key, err = l.WriteFiles(p.dir, "demo-next")
	require.NoError(t, err)
	out, err = sclient(true)
	require.NoError(t, err, out)
	assert.Contains(t, out, "A1 OK")
}
