// Package acmetest runs a private ACME CA for tests: Let's Encrypt's pebble
// (RFC 8555) and its pebble-challtestsrv as the DNS server pebble asks,
// both on free loopback ports and killed when the test ends. Every name
// resolves to 127.0.0.1, so pebble validates HTTP-01 on HTTPPort of
// loopback; DNS-01 TXT records are set through DNSProvider.
//
// The binaries come from PATH or $(go env GOPATH)/bin:
//
//	go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3
//	go install github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.3
//
// A test that needs them skips without them, unless
// MAILEDGE_INTEGRATION=require (CI) makes that a failure.
package acmetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

// Profile names the pebble certificate profiles Start configures.
const (
	// ProfileDefault issues certificates valid for 90 days.
	ProfileDefault = "default"
	// ProfileShort issues certificates valid for Options.ShortValidity.
	ProfileShort = "short"
)

// Options configure Start.
type Options struct {
	// ShortValidity is the validity of ProfileShort's certificates. If
	// zero, 30 seconds.
	ShortValidity time.Duration
}

// Pebble is a running pebble with its DNS server.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// RootCAs trusts pebble's HTTPS certificate (not the certificates it
	// issues; see IssuerRoots).
	RootCAs *x509.CertPool
	// CAFile is a PEM file of RootCAs' CA.
	CAFile string
	// HTTPPort is the port on 127.0.0.1 where pebble validates HTTP-01.
	HTTPPort int
	// DNSAddr is the DNS server (host:port) that resolves every name to
	// 127.0.0.1 and serves the TXT records of DNS-01: pebble-challtestsrv,
	// which pebble asks.
	DNSAddr string
	// ResolverAddr is the DNS server (host:port, UDP) for a DNS-01
	// client's lookups: it answers SOA queries (a name's zone is its last
	// two labels) and passes the rest to DNSAddr.
	ResolverAddr string

	t         testing.TB
	bin       string
	config    string
	mgmt      string // pebble's management API, host:port
	challMgmt string // challtestsrv's management API, host:port
	client    *http.Client

	mu  sync.Mutex
	cmd *exec.Cmd
	out *bytes.Buffer
}

// Need returns the paths of pebble and pebble-challtestsrv. It skips the
// test without them, unless MAILEDGE_INTEGRATION=require makes that a
// failure. MAILEDGE_INTEGRATION=off and -short skip it.
func Need(t testing.TB) (pebble, challtestsrv string) {
	t.Helper()
	require := testnet.Integration(t, "pebble")
	pebble, err1 := lookBin("pebble")
	challtestsrv, err2 := lookBin("pebble-challtestsrv")
	if err1 != nil || err2 != nil {
		testnet.Missing(t, require, "pebble", "go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3 github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.3")
	}
	return pebble, challtestsrv
}

// lookBin finds name in PATH or in $(go env GOPATH)/bin.
func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			return "", err
		}
		gopath = strings.TrimSpace(string(out))
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// Start starts pebble-challtestsrv and pebble for the test; both are
// killed when it ends.
func Start(t testing.TB, opt Options) *Pebble {
	t.Helper()
	pebbleBin, challBin := Need(t)
	dir := t.TempDir()
	ports, err := testnet.FreePorts("127.0.0.1", 6)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	p := &Pebble{
		t: t, bin: pebbleBin,
		HTTPPort:  ports[0],
		DNSAddr:   addr(1),
		mgmt:      addr(2),
		challMgmt: addr(3),
	}
	listen := addr(4)
	p.Directory = "https://" + listen + "/dir"

	ca, err := mailtest.GenerateCA("acmetest pebble HTTPS CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(mailtest.CertOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := leaf.WriteFiles(dir, "pebble")
	if err != nil {
		t.Fatal(err)
	}
	if p.CAFile, err = ca.WriteCA(dir, "pebble-https-ca.pem"); err != nil {
		t.Fatal(err)
	}
	p.RootCAs = ca.Pool()
	p.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.RootCAs}, DisableKeepAlives: true,
	}}

	short := opt.ShortValidity
	if short == 0 {
		short = 30 * time.Second
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": p.mgmt,
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                p.HTTPPort,
		"tlsPort":                 ports[5], // TLS-ALPN-01 is never offered by the clients under test
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			ProfileDefault: map[string]any{"description": "90 days", "validityPeriod": 90 * 24 * 3600},
			ProfileShort:   map[string]any{"description": "short-lived, for renewal tests", "validityPeriod": int(short.Seconds())},
		},
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.config = filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(p.config, data, 0o600); err != nil {
		t.Fatal(err)
	}

	p.startChallSrv(challBin)
	p.startSOAServer(t)
	t.Cleanup(p.Kill)
	p.Start()
	return p
}

// startChallSrv starts pebble-challtestsrv with only its DNS server and
// management API, killed when the test ends.
func (p *Pebble) startChallSrv(bin string) {
	t := p.t
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin,
		"-management", p.challMgmt, "-dnsserver", p.DNSAddr,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitTCP(t, p.challMgmt, &out)
}

// Start starts pebble (again) on its ports and waits until its directory
// answers. A restarted pebble is a new CA: new roots, no accounts.
func (p *Pebble) Start() {
	t := p.t
	t.Helper()
	p.mu.Lock()
	p.out = new(bytes.Buffer)
	p.cmd = exec.Command(p.bin, "-config", p.config, "-dnsserver", p.DNSAddr)
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // no random wait before each validation
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce errors
		"PEBBLE_AUTHZREUSE=100",    // renewals reuse the valid authorisations
		"PEBBLE_CHAIN_LENGTH=2")    // leaf, one intermediate, root
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	err := p.cmd.Start()
	out := p.out
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := p.client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble does not answer at %s: %v\n%s", p.Directory, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill kills pebble with SIGKILL and waits for it: a CA outage.
func (p *Pebble) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Output returns pebble's log so far, for failure messages.
func (p *Pebble) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// IssuerRoots returns a pool of the roots of the certificates the running
// pebble issues, from its management API.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if data := p.IssuerRootPEM(t); !pool.AppendCertsFromPEM(data) {
		t.Fatalf("pebble roots: no PEM certificate in %q", data)
	}
	return pool
}

// IssuerRootPEM returns the root of the certificates the running pebble
// issues, as PEM.
func (p *Pebble) IssuerRootPEM(t testing.TB) []byte {
	t.Helper()
	resp, err := p.client.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble roots: %v %s", err, resp.Status)
	}
	return data
}

// waitTCP waits until addr accepts connections.
func waitTCP(t testing.TB, addr string, out *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections: %v\n%s", addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DNSProvider returns a libdns provider (certmagic.DNSProvider) that sets
// and clears TXT records in the test's DNS server.
func (p *Pebble) DNSProvider() *DNSProvider {
	return &DNSProvider{mgmt: "http://" + p.challMgmt, client: &http.Client{Timeout: 10 * time.Second}}
}

// DNSProvider sets TXT records through pebble-challtestsrv's management
// API, as a DNS host's API would.
type DNSProvider struct {
	mgmt   string
	client *http.Client
}

// AppendRecords implements libdns.RecordAppender for TXT records.
func (d *DNSProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	for _, rec := range recs {
		rr := rec.RR()
		if rr.Type != "TXT" {
			return nil, fmt.Errorf("acmetest: only TXT records, not %s", rr.Type)
		}
		host := libdns.AbsoluteName(rr.Name, zone)
		if err := d.post(ctx, "/set-txt", map[string]string{"host": host, "value": rr.Data}); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// DeleteRecords implements libdns.RecordDeleter: it clears every TXT
// record of each record's name.
func (d *DNSProvider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	for _, rec := range recs {
		if err := d.post(ctx, "/clear-txt", map[string]string{"host": libdns.AbsoluteName(rec.RR().Name, zone)}); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

func (d *DNSProvider) post(ctx context.Context, path string, body map[string]string) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.mgmt+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("acmetest: %s: %s", path, resp.Status)
	}
	return nil
}
