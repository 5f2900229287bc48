package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/testcert"
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
	be, bound, err := startBackend(map[string]string{"imap": "127.0.0.1:0", "smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(be.close)
	ca, err := testcert.NewCA("mailbench test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(testcert.Options{}, "mail.example.com")
	require.NoError(t, err)
	dir := t.TempDir()
	caFile, err := ca.WriteCA(dir, "ca")
	require.NoError(t, err)
	var res sni.Resolver
	require.NoError(t, res.AddDefault(&leaf.TLS))
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

func TestBackendLiteralLogin(t *testing.T) {
	leaktest.Check(t)
	be, bound, err := startBackend(map[string]string{"imap": "127.0.0.1:0"})
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
