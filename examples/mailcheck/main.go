// Command mailcheck verifies the TLS side of a mail deployment, what a loop
// of openssl s_client over the names of a multi-domain Postfix and Dovecot
// host does, for every endpoint and name at once: it
// connects to each target with each SNI name (implicit TLS, or after the
// protocol's STARTTLS), and prints the TLS version, cipher, certificate
// subject and SANs, issuer, days until expiry, chain verification and name
// match. It exits 1 when any check fails or a certificate expires within
// -warn-days, 2 on bad usage.
//
//	go run ./examples/mailcheck -ca ca.pem -names mail.example.com,mail.example.net \
//	    -target 127.0.0.1:10993/imaps -target 127.0.0.1:10587/smtp+starttls
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailedge/mailedge/sni"
	"github.com/mailedge/mailedge/starttls"
)

// target is one endpoint: address, protocol, and whether TLS starts at once.
type target struct {
	addr     string
	proto    starttls.Protocol
	starttls bool
	label    string
}

// result is one row of the report.
type result struct {
	Name       string    `json:"name"`
	Target     string    `json:"target"`
	Mode       string    `json:"mode"`
	TLSVersion string    `json:"tls_version,omitempty"`
	Cipher     string    `json:"cipher,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	SANs       []string  `json:"sans,omitempty"`
	Issuer     string    `json:"issuer,omitempty"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	DaysLeft   int       `json:"days_left"`
	Verified   bool      `json:"verified"`
	NameMatch  bool      `json:"name_match"`
	Error      string    `json:"error,omitempty"`
	OK         bool      `json:"ok"`
}

var modes = map[string]struct {
	proto    starttls.Protocol
	starttls bool
}{
	"smtps": {starttls.SMTP, false}, "imaps": {starttls.IMAP, false}, "pop3s": {starttls.POP3, false},
	"smtp+starttls": {starttls.SMTP, true}, "imap+starttls": {starttls.IMAP, true}, "pop3+starttls": {starttls.POP3, true},
}

func parseTarget(s string) (target, error) {
	addr, mode, ok := strings.Cut(s, "/")
	m, known := modes[mode]
	if !ok || !known {
		return target{}, fmt.Errorf("-target %q: want HOST:PORT/MODE, MODE one of smtps, imaps, pop3s, smtp+starttls, imap+starttls, pop3+starttls", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return target{}, fmt.Errorf("-target %q: %w", s, err)
	}
	return target{addr: addr, proto: m.proto, starttls: m.starttls, label: mode}, nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mailcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var targets multi
	fs.Var(&targets, "target", "HOST:PORT/MODE, MODE smtps|imaps|pop3s|smtp+starttls|imap+starttls|pop3+starttls (repeatable)")
	names := fs.String("names", "", "comma-separated SNI names to ask for")
	sniMap := fs.String("sni-map", "", "Postfix-style SNI map file: its host names are checked too")
	caFile := fs.String("ca", "", "PEM file of trusted roots (default: the system roots)")
	warnDays := fs.Int("warn-days", 14, "fail when a certificate expires within this many days")
	timeout := fs.Duration("timeout", 10*time.Second, "per-check timeout")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ts, nameList, roots, err := setup(targets, *names, *sniMap, *caFile)
	if err != nil {
		fmt.Fprintln(stderr, "mailcheck:", err)
		return 2
	}
	var results []result
	failed := false
	for _, t := range ts {
		for _, n := range nameList {
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			r := check(ctx, t, n, roots, *warnDays)
			cancel()
			failed = failed || !r.OK
			results = append(results, r)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(results)
	} else {
		printTable(stdout, results)
	}
	if failed {
		return 1
	}
	return 0
}

func setup(targets []string, names, sniMap, caFile string) ([]target, []string, *x509.CertPool, error) {
	if len(targets) == 0 {
		return nil, nil, nil, errors.New("no -target given")
	}
	var ts []target
	for _, s := range targets {
		t, err := parseTarget(s)
		if err != nil {
			return nil, nil, nil, err
		}
		ts = append(ts, t)
	}
	var list []string
	for _, n := range strings.Split(names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			list = append(list, n)
		}
	}
	if sniMap != "" {
		f, err := os.Open(sniMap)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-sni-map: %w", err)
		}
		lines, err := sni.ParsePostfixMap(f)
		f.Close()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-sni-map %s: %w", sniMap, err)
		}
		for _, l := range lines {
			// A wildcard or ".domain" entry is checked with a name below it.
			n := strings.TrimPrefix(strings.TrimPrefix(l.Name, "*"), ".")
			if n != l.Name {
				n = "mailcheck." + n
			}
			list = append(list, n)
		}
	}
	if len(list) == 0 {
		return nil, nil, nil, errors.New("no names: give -names or -sni-map")
	}
	var roots *x509.CertPool
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("-ca %s: no PEM certificate found", caFile)
		}
	}
	return ts, list, roots, nil
}

// check connects to t asking for name, without verifying during the
// handshake so that a bad certificate can still be described, then verifies
// the chain and the name itself.
func check(ctx context.Context, t target, name string, roots *x509.CertPool, warnDays int) result {
	r := result{Name: name, Target: t.addr, Mode: t.label}
	cfg := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{t.proto.String()}}
	state, err := connect(ctx, t, cfg)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	leaf := state.PeerCertificates[0]
	r.TLSVersion, r.Cipher = tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite)
	r.Subject, r.SANs, r.Issuer, r.NotAfter = leaf.Subject.String(), leaf.DNSNames, leaf.Issuer.String(), leaf.NotAfter
	r.DaysLeft = int(time.Until(leaf.NotAfter).Hours() / 24)
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	r.Verified = verr == nil
	r.NameMatch = leaf.VerifyHostname(name) == nil
	var problems []string
	if verr != nil {
		problems = append(problems, verr.Error())
	}
	if !r.NameMatch {
		problems = append(problems, "certificate does not match "+name)
	}
	if r.DaysLeft < warnDays {
		problems = append(problems, fmt.Sprintf("expires in %d days (< %d)", r.DaysLeft, warnDays))
	}
	r.Error = strings.Join(problems, "; ")
	r.OK = len(problems) == 0
	return r
}

func connect(ctx context.Context, t target, cfg *tls.Config) (tls.ConnectionState, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer raw.Close()
	if t.starttls {
		up, err := (&starttls.Client{Protocol: t.proto, TLSConfig: cfg, Hostname: "mailcheck.invalid"}).Upgrade(ctx, raw)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer up.Conn.Close()
		return up.Conn.ConnectionState(), nil
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	defer tc.Close()
	return tc.ConnectionState(), nil
}

func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTARGET\tMODE\tTLS\tCIPHER\tSUBJECT\tSANS\tISSUER\tDAYS\tVERIFIED\tMATCH\tRESULT")
	for _, r := range rs {
		status := "ok"
		if !r.OK {
			status = "FAIL: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%v\t%v\t%s\n", r.Name, r.Target, r.Mode, r.TLSVersion,
			r.Cipher, r.Subject, strings.Join(r.SANs, ","), r.Issuer, r.DaysLeft, r.Verified, r.NameMatch, status)
	}
	tw.Flush()
}
