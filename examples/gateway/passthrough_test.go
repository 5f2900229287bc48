package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

const tenantGreeting = "* OK [CAPABILITY IMAP4rev1] tenant IMAP ready\r\n"

// tenantIMAP is a tenant's own IMAPS server behind a PROXY v2 header,
// with a certificate from the tenant's own CA: the gateway never holds it.
type tenantIMAP struct {
	addr    string
	caFile  string
	roots   *tls.Config
	headers chan *proxyproto.Header
}

func startTenant(t *testing.T) *tenantIMAP {
	t.Helper()
	ca, err := mailtest.GenerateCA("tenant CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.tenant.example")
	require.NoError(t, err)
	caFile, err := ca.WriteCA(t.TempDir(), "tenant-ca.pem")
	require.NoError(t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	tn := &tenantIMAP{caFile: caFile, roots: &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.tenant.example"},
		headers: make(chan *proxyproto.Header, 8)}
	tn.addr = testnet.Serve(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			return // a probe's connect, or not a PROXY header
		}
		if !h.Command.IsLocal() { // LOCAL: the gateway's health probe (probe=tls)
			tn.headers <- h
		}
		tc := tls.Server(bufferedConn{c, br}, cfg)
		if tc.Handshake() != nil {
			return
		}
		io.WriteString(tc, tenantGreeting)
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(line, " ")
		io.WriteString(tc, "* BYE tenant\r\n"+tag+" OK LOGOUT completed\r\n")
		tc.Close() // close_notify, as a server that logs out sends it
	})
	return tn
}

// bufferedConn reads through a bufio.Reader holding bytes already read.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestPassthroughSharedPort: the demo's imaps port terminates
// mail.example.com with the gateway's certificate and passes
// mail.tenant.example through to the tenant's own server, to Go's
// crypto/tls and to openssl s_client, which each verify the tenant's
// certificate against the tenant's CA and read its greeting; the tenant
// sees a PROXY v2 header with the client's address and the SNI name; the
// session log line and the metrics say what happened.
func TestPassthroughSharedPort(t *testing.T) {
	tn := startTenant(t)
	logs := new(syncBuffer)
	d := startDemoGateway(t, logs, true, "-metrics", "127.0.0.1:0",
		"-backend", "tenant="+tn.addr+",security=passthrough,proxy=v2,probe=tls,ca="+tn.caFile+",servername=mail.tenant.example",
		"-passthrough", "imaps:mail.tenant.example=tenant")
	addr := d.addrs["imaps"]

	t.Run("crypto/tls", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, tn.roots)
		require.NoError(t, err, "the tenant's certificate, verified with the tenant's CA")
		defer c.Close()
		assert.Equal(t, "mail.tenant.example", c.ConnectionState().PeerCertificates[0].Subject.CommonName)
		r := bufio.NewReader(c)
		greeting, err := r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, tenantGreeting, greeting)
		h := <-tn.headers
		assert.Equal(t, c.LocalAddr().String(), h.SourceAddr.String(), "the client's address")
		assert.Equal(t, addr, h.DestinationAddr.String())
		tlvs, err := h.TLVs()
		require.NoError(t, err)
		require.NotEmpty(t, tlvs)
		assert.Equal(t, proxyproto.PP2_TYPE_AUTHORITY, tlvs[0].Type)
		assert.Equal(t, "mail.tenant.example", string(tlvs[0].Value))
		_, err = io.WriteString(c, "a1 LOGOUT\r\n")
		require.NoError(t, err)
		rest, _ := io.ReadAll(r)
		assert.Contains(t, string(rest), "a1 OK LOGOUT")
	})
	t.Run("openssl s_client", func(t *testing.T) {
		openssl := needProgram(t, "openssl")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-servername", "mail.tenant.example",
			"-CAfile", tn.caFile, "-verify_return_error", "-verify_hostname", "mail.tenant.example", "-quiet")
		cmd.Stdin = strings.NewReader("a1 LOGOUT\r\n")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "tenant IMAP ready")
		assert.Contains(t, string(out), "a1 OK LOGOUT")
		h := <-tn.headers
		tlvs, err := h.TLVs()
		require.NoError(t, err)
		require.NotEmpty(t, tlvs)
		assert.Equal(t, "mail.tenant.example", string(tlvs[0].Value), "-servername reaches the tenant as PP2_TYPE_AUTHORITY")
	})
	t.Run("terminated", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, clientTLS(d.roots, "mail.example.com"))
		require.NoError(t, err, "the gateway's own certificate")
		defer c.Close()
		greeting, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
		assert.NotContains(t, greeting, "tenant")
	})
	assert.Empty(t, tn.headers)

	// Two passed-through sessions in the log and the metrics, the
	// listener's label on them.
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "passthrough=true") >= 2 }, 10*time.Second, 10*time.Millisecond)
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "passthrough=true") {
			assert.Contains(t, line, "listener=imaps")
			assert.Contains(t, line, "sni=mail.tenant.example")
			assert.Contains(t, line, "backend="+tn.addr)
			assert.Contains(t, line, "outcome=ok")
		}
	}
	assert.GreaterOrEqual(t, sessionsOK(t, d.g, "imaps"), 2.0, "passed-through sessions counted under their listener")
}

func TestPassthroughFlagErrors(t *testing.T) {
	tenant := "-backend=tenant=127.0.0.1:1,security=passthrough"
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"syntax", []string{"-passthrough", "imaps=tenant"}, "want LISTENER:NAME=POOL"},
		{"partial wildcard", []string{"-passthrough", "imaps:mail*.example=tenant"}, "wildcard"},
		{"wildcard over tld", []string{"-passthrough", "imaps:*.example=tenant"}, "top-level"},
		{"ip address", []string{"-passthrough", "imaps:192.0.2.1=tenant"}, "IP address"},
		{"not a name", []string{"-passthrough", "imaps:a..b=tenant"}, "not a host name"},
		{"xclient", []string{"-backend", "tenant=127.0.0.1:1,security=passthrough,xclient"}, "no xclient"},
		{"protocol probe", []string{"-backend", "tenant=127.0.0.1:1,security=passthrough,probe=imap"}, "probe=imap"},
		{"connect probe elsewhere", []string{"-backend", "x=127.0.0.1:1,probe=connect"}, "probe=connect"},
		{"unknown listener", []string{tenant, "-passthrough", "nope:mail.tenant.example=tenant"}, `no -listen named "nope"`},
		{"starttls listener", []string{tenant, "-passthrough", "imap:mail.tenant.example=tenant"}, "only on tls=implicit"},
		{"no pool", []string{"-passthrough", "imaps:mail.tenant.example=tenant"}, `no -backend for pool "tenant"`},
		{"greeting member", []string{"-backend", "tenant=127.0.0.1:1,security=tls", "-passthrough", "imaps:mail.tenant.example=tenant"}, "security=tls member"},
		{"unused passthrough member", []string{tenant}, "which no -passthrough names"},
		{"twice", []string{tenant, "-passthrough", "imaps:a.example=tenant", "-passthrough", "imaps:A.example.=tenant"}, "passed through twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := startDemo(context.Background(), t.TempDir(), false, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			defer ds.close()
			o, err := parseFlags(append(ds.args, tt.args...), io.Discard)
			if err == nil {
				_, err = build(o, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestPassthroughName(t *testing.T) {
	for in, want := range map[string]string{
		"Mail.Tenant.Example.": "mail.tenant.example",
		"*.Tenant.example":     "*.tenant.example",
		"bücher.example":       "xn--bcher-kva.example",
	} {
		got, err := passthroughName(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
}

// needProgram returns the path of an external program the test runs
// (see testnet.NeedProgram; .ci/run installs it).
func needProgram(t *testing.T, name string) string {
	t.Helper()
	return testnet.NeedProgram(t, name, "Debian: apt-get install "+name)
}

// sessionsOK reads mailedge_sessions_total{listener, outcome="ok"}.
func sessionsOK(t *testing.T, g *gateway, listener string) float64 {
	t.Helper()
	mfs, err := g.metrics.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "mailedge_sessions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["listener"] == listener && labels["outcome"] == "ok" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
