package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// gatewayFixture is the bench backend with mailedge.Proxy listeners in
// front of it, as the gateway would run them.
type gatewayFixture struct {
	caFile string
	addrs  map[string]string // "imap/implicit" -> proxy address
}

func newGatewayFixture(t *testing.T) *gatewayFixture {
	t.Helper()
	be, bound, err := startBackend(map[string]string{"imap": "127.0.0.1:0", "smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0"}, nil)
	require.NoError(t, err)
	t.Cleanup(be.close)
	ca, err := mailtest.GenerateCA("mailbench test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir, "ca")
	require.NoError(t, err)
	rsaLeaf, err := ca.Issue(mailtest.CertOptions{Key: mailtest.RSA}, "rsa.example.com")
	require.NoError(t, err)
	var res sni.Resolver
	require.NoError(t, res.AddDefault(&leaf.TLS))
	require.NoError(t, res.Add(&rsaLeaf.TLS))
	f := &gatewayFixture{caFile: caFile, addrs: make(map[string]string)}
	protos := map[string]starttls.Protocol{"imap": starttls.IMAP, "smtp": starttls.SMTP, "pop3": starttls.POP3}
	for name, proto := range protos {
		for _, implicit := range []bool{true, false} {
			p := &mailedge.Proxy{
				Server:   &starttls.Server{Protocol: proto, TLSConfig: res.TLSConfig(sni.Policy{}), Hostname: "mail.example.com"},
				Implicit: implicit,
				Backend:  &backend.Dialer{Addr: bound[name], Protocol: proto},
			}
			mode := map[bool]string{true: "implicit", false: "starttls"}[implicit]
			f.addrs[name+"/"+mode] = serveProxy(t, p)
		}
	}
	return f
}

func serveProxy(t *testing.T, p *mailedge.Proxy) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.Serve(ctx, l) })
	t.Cleanup(func() {
		l.Close()
		cancel()
		wg.Wait()
	})
	return l.Addr().String()
}

func TestEndToEnd(t *testing.T) {
	leaktest.Check(t)
	f := newGatewayFixture(t)
	dir := t.TempDir()
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name, proto, mode, tests string
	}{
		{"imap implicit", "imap", "implicit", "idle,full,resumed,login,rtt,seq,bulk1,bulk16,first"},
		{"smtp upload", "smtp", "implicit", "login,bulk1"},
		{"imap starttls", "imap", "starttls", "full,login"},
		{"smtp starttls", "smtp", "starttls", "full,rtt"},
		{"pop3 starttls", "pop3", "starttls", "full,login,rtt"},
	}
	var files []string
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, strconv.Itoa(i)+".json")
			files = append(files, out)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"-addr", f.addrs[tt.proto+"/"+tt.mode], "-proto", tt.proto, "-tls", tt.mode,
				"-ca", f.caFile, "-tests", tt.tests, "-d", "150ms", "-c", "2", "-n", "10", "-hold", "50ms", "-size", "65536",
				"-pid", pid, "-json", out, "-label", "gateway"}, &stdout, &stderr)
			require.Equal(t, 0, code, "stderr: %s\nstdout: %s", stderr.String(), stdout.String())
			var rs []Result
			b, err := os.ReadFile(out)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &rs))
			require.Len(t, rs, len(strings.Split(tt.tests, ",")))
			for _, r := range rs {
				assert.Positive(t, r.Ops, r.Test)
				assert.Zero(t, r.Errors, "%s: %s", r.Test, r.FirstError)
				assert.Equal(t, tt.proto, r.Proto)
				switch r.Test {
				case "resumed":
					assert.Equal(t, r.Ops, r.Resumed, "every resumed handshake resumes")
				case "bulk1", "bulk16":
					size := int64(65536)
					if r.Proto == "smtp" {
						size = int64(len(uploadBody(65536)))
					}
					assert.Equal(t, r.Ops*size, r.Bytes)
				case "idle":
					assert.Equal(t, 10, r.Sessions)
					assert.Positive(t, r.RSSAfterKiB)
				default:
					assert.GreaterOrEqual(t, r.ProxyCPUs, 0.0, "CPU read from /proc")
				}
				assert.Contains(t, stdout.String(), r.Test)
			}
		})
	}
	var sum bytes.Buffer
	require.Equal(t, 0, run(context.Background(), append([]string{"summarize"}, files...), &sum, os.Stderr))
	assert.Contains(t, sum.String(), "| full imap | proxy CPU µs/op |")
	assert.Contains(t, sum.String(), "| first imap | proxy CPU µs/op |")
	assert.Regexp(t, `\| STARTTLS dialogue \+ handshake ≤ 1\.15× implicit TLS handshake, same first command \(imap, proxy CPU\) \| [0-9.]+ proxy CPU µs/op \| [0-9.]+ gateway first imap \|`, sum.String())
	assert.Contains(t, sum.String(), "| STARTTLS with its first command ≤ 1.15× implicit TLS without one (imap, proxy CPU) |")
}

// TestClientKinds runs the clients people really use (-client) and the
// scaled tests (name@N) through the gateway's Proxy, which offers
// X25519MLKEM768 and TLS 1.2 by default and picks the RSA certificate by
// name.
func TestClientKinds(t *testing.T) {
	leaktest.Check(t)
	f := newGatewayFixture(t)
	addr := f.addrs["imap/implicit"]
	dir := t.TempDir()
	load := func(t *testing.T, out string, args ...string) (int, []Result, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"-addr", addr, "-ca", f.caFile, "-d", "150ms", "-c", "2", "-n", "4",
			"-hold", "50ms", "-size", "65536", "-pid", strconv.Itoa(os.Getpid()), "-json", out, "-label", "gateway"}, args...), &stdout, &stderr)
		var rs []Result
		if b, err := os.ReadFile(out); err == nil {
			require.NoError(t, json.Unmarshal(b, &rs))
		}
		return code, rs, stdout.String() + stderr.String()
	}
	mlkem, tls12 := filepath.Join(dir, "mlkem.json"), filepath.Join(dir, "tls12.json")
	code, rs, out := load(t, mlkem, "-client", "mlkem", "-tests", "full,idlefetch@3,rtt@3,full@3,idleappend@2")
	require.Equal(t, 0, code, out)
	require.Len(t, rs, 5)
	for _, r := range rs {
		assert.Zero(t, r.Errors, "%s: %s", r.Test, r.FirstError)
		assert.Equal(t, "mlkem", r.Client)
		assert.Equal(t, "X25519MLKEM768", r.KeyExchange, r.Test)
		assert.Equal(t, "TLS 1.3", r.Version, r.Test)
	}
	assert.Equal(t, 3, rs[1].Sessions, "idlefetch@3 holds three sessions")
	assert.Equal(t, int64(3), rs[1].Ops, "each fetched and went into IDLE")
	assert.Positive(t, rs[1].RSSAfterKiB)
	assert.Equal(t, 3, rs[2].Concurrency, "rtt@3 runs three closed loops")
	assert.Equal(t, 3, rs[3].Concurrency)
	assert.Equal(t, int64(2), rs[4].Ops, "each appended and went into IDLE")

	code, rs, out = load(t, tls12, "-client", "tls12", "-tests", "full,resumed")
	require.Equal(t, 0, code, out)
	require.Len(t, rs, 2)
	for _, r := range rs {
		assert.Zero(t, r.Errors, "%s: %s", r.Test, r.FirstError)
		assert.Equal(t, "TLS 1.2", r.Version, r.Test)
		assert.Equal(t, "X25519", r.KeyExchange, r.Test)
	}
	assert.Equal(t, rs[1].Ops, rs[1].Resumed, "TLS 1.2 tickets resume")

	code, rs, out = load(t, filepath.Join(dir, "rsa.json"), "-client", "rsa", "-sni", "rsa.example.com", "-tests", "full")
	require.Equal(t, 0, code, out)
	assert.Zero(t, rs[0].Errors, rs[0].FirstError)
	code, _, out = load(t, filepath.Join(dir, "ecdsa.json"), "-client", "rsa", "-tests", "full")
	assert.Equal(t, 1, code, "an ECDSA certificate is an error for the RSA client")
	assert.Contains(t, out, "not RSA")

	var sum bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"summarize", mlkem, tls12}, &sum, os.Stderr))
	assert.Contains(t, sum.String(), "| full imap mlkem | proxy CPU µs/op |")
	assert.Contains(t, sum.String(), "| idlefetch imap mlkem (3 sessions) | KiB/session |")
	assert.Contains(t, sum.String(), "| rtt imap mlkem (3 clients) | ops/s |")
	assert.Contains(t, sum.String(), "- full imap tls12: gateway: TLS 1.2 X25519")
	assert.Contains(t, sum.String(), "- full imap mlkem: gateway: TLS 1.3 X25519MLKEM768")
}

func TestSplitTest(t *testing.T) {
	for _, tt := range []struct {
		in, test string
		n        int
		err      string
	}{
		{"full", "full", 0, ""},
		{"full@64", "full", 64, ""},
		{"idlefetch@1000", "idlefetch", 1000, ""},
		{"full@0", "", 0, "positive"},
		{"full@x", "", 0, "positive"},
		{"bulk1@4", "", 0, "takes no scale"},
	} {
		test, n, err := splitTest(tt.in)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.test, test)
		assert.Equal(t, tt.n, n)
	}
}

func TestBackendLiteralLogin(t *testing.T) {
	leaktest.Check(t)
	be, bound, err := startBackend(map[string]string{"imap": "127.0.0.1:0"}, nil)
	require.NoError(t, err)
	defer be.close()
	c, err := net.Dial("tcp", bound["imap"])
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	read := func() string {
		l, err := r.ReadString('\n')
		require.NoError(t, err)
		return l
	}
	assert.Contains(t, read(), "* OK")
	// nginx's mail proxy logs in with synchronising literals.
	_, err = c.Write([]byte("1 LOGIN {4}\r\n"))
	require.NoError(t, err)
	assert.Equal(t, "+ go ahead\r\n", read())
	_, err = c.Write([]byte("user {4}\r\n"))
	require.NoError(t, err)
	assert.Equal(t, "+ go ahead\r\n", read())
	_, err = c.Write([]byte("pass\r\n2 XFETCH 5\r\n"))
	require.NoError(t, err)
	assert.Equal(t, "1 OK LOGIN done\r\n", read())
	assert.Equal(t, "* XFETCH {5}\r\n", read())
	assert.Equal(t, "01234\r\n", read())
	assert.Equal(t, "2 OK XFETCH done\r\n", read())
}

func TestLiteralSize(t *testing.T) {
	tests := []struct {
		line       string
		n          int
		sync, isLi bool
	}{
		{"a LOGIN {4}", 4, true, true},
		{"a LOGIN {4+}", 4, false, true},
		{"a NOOP", 0, false, false},
		{"a X {}", 0, false, false},
		{"a X {-1}", 0, false, false},
		{"a X 4}", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			n, sync, ok := literalSize([]byte(tt.line))
			assert.Equal(t, tt.isLi, ok)
			assert.Equal(t, tt.n, n)
			assert.Equal(t, tt.sync, sync)
		})
	}
}

func FuzzIMAPCommand(f *testing.F) {
	f.Add([]byte("1 LOGIN {4}\r\nuser {4+}\r\npass\r\n"))
	f.Add([]byte("a NOOP\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		cmd, err := imapCommand(bufio.NewReader(bytes.NewReader(in)), w)
		if err == nil && len(cmd) > len(in) {
			t.Fatalf("command %q longer than the input %q", cmd, in)
		}
	})
}

// TestPassthroughEndToEnd: mailbench serve's imaps listener, with its own
// certificate for mail.tenant.example, behind a mailedge.Proxy that passes
// that name through by SNI and terminates others; -tls passthrough with
// the tenant's name reaches the tenant (the client verifies the tenant's
// certificate against the tenant's CA, which the proxy does not hold),
// and the results are a group of their own in the summary.
func TestPassthroughEndToEnd(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	tenantCA, err := mailtest.GenerateCA("tenant CA")
	require.NoError(t, err)
	tenantLeaf, err := tenantCA.Issue(mailtest.CertOptions{}, "mail.tenant.example")
	require.NoError(t, err)
	certFile, keyFile, err := tenantLeaf.WriteFiles(dir, "tenant")
	require.NoError(t, err)
	tenantCAFile, err := tenantCA.WriteCA(dir, "tenant-ca")
	require.NoError(t, err)
	cfg, err := serveTLSConfig("127.0.0.1:0", certFile, keyFile)
	require.NoError(t, err)
	be, bound, err := startBackend(map[string]string{"imap": "127.0.0.1:0", "imaps": "127.0.0.1:0"}, cfg)
	require.NoError(t, err)
	t.Cleanup(be.close)

	ca, err := mailtest.GenerateCA("gateway CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.example.com")
	require.NoError(t, err)
	caFile, err := ca.WriteCA(dir, "ca")
	require.NoError(t, err)
	rsaLeaf, err := ca.Issue(mailtest.CertOptions{Key: mailtest.RSA}, "rsa.example.com")
	require.NoError(t, err)
	var res sni.Resolver
	require.NoError(t, res.AddDefault(&leaf.TLS))
	require.NoError(t, res.Add(&rsaLeaf.TLS))
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: res.TLSConfig(sni.Policy{}), Hostname: "mail.example.com"},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: bound["imap"], Protocol: starttls.IMAP},
		Passthrough: mailedge.PassthroughNames(map[string]mailedge.Backend{
			"mail.tenant.example": &backend.Dialer{Addr: bound["imaps"], Protocol: starttls.IMAP, Passthrough: true}}),
	}
	addr := serveProxy(t, p)

	pid := strconv.Itoa(os.Getpid())
	load := func(t *testing.T, out string, args ...string) []Result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"-addr", addr, "-proto", "imap", "-d", "150ms", "-c", "2", "-size", "65536",
			"-pid", pid, "-json", out, "-label", "gateway"}, args...), &stdout, &stderr)
		require.Equal(t, 0, code, "stderr: %s\nstdout: %s", stderr.String(), stdout.String())
		var rs []Result
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &rs))
		return rs
	}
	passFile, termFile := filepath.Join(dir, "pass.json"), filepath.Join(dir, "term.json")
	rs := load(t, passFile, "-tls", "passthrough", "-sni", "mail.tenant.example", "-ca", tenantCAFile, "-tests", "full,login,bulk1")
	require.Len(t, rs, 3)
	for _, r := range rs {
		assert.Equal(t, "passthrough", r.TLS, r.Test)
		assert.Positive(t, r.Ops, r.Test)
		assert.Zero(t, r.Errors, "%s: %s", r.Test, r.FirstError)
		assert.GreaterOrEqual(t, r.ProxyCPUs, 0.0, "CPU read from /proc")
	}
	assert.Equal(t, rs[2].Ops*65536, rs[2].Bytes, "XFETCH from the tenant through the passthrough")
	// The same port terminates the gateway's own name.
	rs = load(t, termFile, "-sni", "mail.example.com", "-ca", caFile, "-tests", "full")
	require.Len(t, rs, 1)
	assert.Equal(t, "implicit", rs[0].TLS)
	assert.Zero(t, rs[0].Errors, rs[0].FirstError)

	// The tenant's name with the gateway's CA fails: the certificate is the tenant's.
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-addr", addr, "-tls", "passthrough", "-sni", "mail.tenant.example", "-ca", caFile,
		"-tests", "full", "-d", "50ms", "-c", "1"}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stdout.String(), "certificate signed by unknown authority")

	var sum bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"summarize", passFile, termFile}, &sum, os.Stderr))
	assert.Contains(t, sum.String(), "| full imap passthrough | proxy CPU µs/op |")
	assert.Contains(t, sum.String(), "| full imap | proxy CPU µs/op |")
	assert.Contains(t, sum.String(), "| passthrough: proxy CPU per passed-through connection ≤ best peer (HAProxy req_ssl_sni, nginx ssl_preread) |")
}

func TestServeFlags(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	ca, err := mailtest.GenerateCA("tenant CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "mail.tenant.example")
	require.NoError(t, err)
	certFile, keyFile, err := leaf.WriteFiles(dir, "tenant")
	require.NoError(t, err)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"imaps without a certificate", []string{"-imaps", "127.0.0.1:0"}, "-imaps needs -cert and -key"},
		{"imaps without a key", []string{"-imaps", "127.0.0.1:0", "-cert", certFile}, "-imaps needs -cert and -key"},
		{"certificate without imaps", []string{"-cert", certFile, "-key", keyFile}, "-cert and -key are for -imaps"},
		{"missing file", []string{"-imaps", "127.0.0.1:0", "-cert", certFile, "-key", filepath.Join(dir, "none.pem")}, "-cert/-key:"},
		{"key is no key", []string{"-imaps", "127.0.0.1:0", "-cert", certFile, "-key", certFile}, "-cert/-key:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, run(context.Background(), append([]string{"serve"}, tt.args...), &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.want)
		})
	}

	// With a certificate, serve prints the imaps address and speaks IMAP
	// over TLS there until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	out := new(syncBuffer)
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-imap", "", "-smtp", "", "-pop3", "", "-imaps", "127.0.0.1:0", "-cert", certFile, "-key", keyFile}, out, io.Discard)
	}()
	var addr string
	require.Eventually(t, func() bool {
		_, addr, _ = strings.Cut(strings.TrimSpace(out.String()), "imaps=")
		return addr != ""
	}, 10*time.Second, 10*time.Millisecond)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "mail.tenant.example"})
	require.NoError(t, err)
	greeting, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] mailbench backend ready\r\n", greeting)
	assert.Equal(t, tls.VersionTLS13, int(c.ConnectionState().Version))
	c.Close()
	cancel()
	assert.Equal(t, 0, <-done)
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
