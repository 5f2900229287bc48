// Command mailbench is a load tool for mail TLS endpoints: mailedge's
// gateway and the peers it is compared with (HAProxy, nginx stream and
// mail, stunnel). It speaks SMTP, IMAP and POP3 with implicit TLS (RFC
// 8314) or STARTTLS (RFC 3207, RFC 9051, RFC 2595) and measures:
//
//	full     full TLS handshakes/s at -c (with -tls starttls: whole STARTTLS dialogues)
//	resumed  resumed handshakes/s (TLS 1.3 tickets), with the count that resumed
//	login    sessions/s: connect, TLS, login, logout
//	rtt      request/response latency (NOOP) on one established session
//	seq      one client, sequential connects: latency per connection
//	bulk1    one stream: IMAP-like XFETCH download, or SMTP DATA upload with -proto smtp
//	bulk16   16 streams of the same
//	idle     -n logged-in sessions held: the proxy's RSS per session and CPU
//	idlefetch the same, each session first downloading -size bytes, then in IMAP IDLE
//	idleappend the same, each session first uploading -size bytes (APPEND), then in IDLE
//
// A test name may carry a scale: full@64 is the full test with 64 clients,
// rtt@16 16 sessions each in a closed loop of round trips, idle@9000 9000
// sessions held; each scale is a row of its own. -client picks the kind
// of client (X25519 only by default; mlkem, tls12, rsa), and each result
// records the key exchange and version the handshakes negotiated.
//
// With -pid (a process or a comma-separated list, such as nginx's master
// and workers) it reads the proxy's CPU (utime+stime, /proc/PID/stat) and
// RSS (VmRSS, /proc/PID/status) and reports CPU per operation and per GB.
//
// With -tls passthrough the client speaks implicit TLS, as to a proxy
// that passes the connection through by its SNI (-sni) to a backend that
// terminates TLS itself (serve -imaps); the results form groups of their
// own ("full imap passthrough"), so that the proxy's CPU per
// passed-through connection is compared apart from terminated ones.
//
//	mailbench -addr 127.0.0.1:993 -proto imap -insecure -tests full,rtt -pid 1234
//	mailbench serve -imap 127.0.0.1:1143 -smtp 127.0.0.1:1025 -auth 127.0.0.1:1180
//	mailbench serve -imaps 127.0.0.1:1993 -cert tenant.pem -key tenant.key
//	mailbench -addr 127.0.0.1:992 -tls passthrough -sni mail.tenant.example -insecure -tests full
//	mailbench summarize -base gateway results/*.json
//
// "serve" runs the plain-text backend the proxies forward to (an IMAP-like
// server with XFETCH, an SMTP sink, a POP3 responder, and an nginx mail
// auth_http responder) and, with -imaps, the same IMAP-like server behind
// TLS with its own certificate; "summarize" turns repeated JSON runs into
// medians, ranges and ratios (see bench/compare.sh).
package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return runServe(ctx, args[1:], stdout, stderr)
		case "floor":
			return runFloor(stdout, stderr)
		case "summarize":
			return runSummarize(args[1:], stdout, stderr)
		}
	}
	return runLoad(ctx, args, stdout, stderr)
}

// loadFlags are the load generator's parsed flags.
type loadFlags struct {
	addr, proto, mode, tests, ca, sni, pid, jsonOut, label string
	client                                                 string
	insecure                                               bool
	c, n, rep                                              int
	d, hold, timeout                                       time.Duration
	chunk                                                  int64
	user, pass                                             string
}

func parseLoadFlags(args []string, stderr io.Writer) (*loadFlags, error) {
	fs := flag.NewFlagSet("mailbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &loadFlags{}
	fs.StringVar(&f.addr, "addr", "", "endpoint HOST:PORT (required)")
	fs.StringVar(&f.proto, "proto", "imap", "imap, smtp or pop3")
	fs.StringVar(&f.mode, "tls", "implicit", "implicit, starttls, or passthrough (implicit TLS through a proxy's SNI passthrough to a backend that terminates it, as mailbench serve -imaps; results are a group of their own)")
	fs.StringVar(&f.tests, "tests", "full,resumed,login,rtt,seq,bulk1,bulk16", "tests to run, comma-separated, or all: "+strings.Join(testNames, ","))
	fs.IntVar(&f.c, "c", 8, "concurrency of full, resumed, login and idle's opening")
	fs.DurationVar(&f.d, "d", 5*time.Second, "duration of each timed test")
	fs.IntVar(&f.n, "n", 1000, "sessions the idle test holds")
	fs.DurationVar(&f.hold, "hold", 2*time.Second, "how long idle holds its sessions while measuring CPU")
	fs.Int64Var(&f.chunk, "size", 1<<20, "bytes per bulk operation (one XFETCH or one message)")
	fs.StringVar(&f.ca, "ca", "", "PEM file of the CA that signed the endpoint's certificate")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the certificate (saves client CPU)")
	fs.StringVar(&f.client, "client", "x25519", "the client: x25519 (TLS 1.3, X25519 only: every endpoint negotiates the same), mlkem (TLS 1.3 with Go's default groups, the X25519MLKEM768 hybrid first, as browsers and recent mail clients offer), tls12 (TLS 1.2, ECDHE with X25519 (P-256 offered too), AES-128-GCM), or rsa (as x25519, and the server's certificate must be RSA)")
	fs.StringVar(&f.sni, "sni", "mail.example.com", "TLS server name to send and verify")
	fs.StringVar(&f.pid, "pid", "", "proxy process id(s), comma-separated, for CPU and RSS from /proc")
	fs.StringVar(&f.user, "user", "bench@example.com", "login name")
	fs.StringVar(&f.pass, "pass", "bench", "password")
	fs.StringVar(&f.jsonOut, "json", "", "write results as JSON to this file ('-': standard output instead of the table)")
	fs.StringVar(&f.label, "label", "", "label stored in the JSON results (the proxy's name)")
	fs.IntVar(&f.rep, "rep", 0, "repetition number stored in the JSON results")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each network operation")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case f.addr == "":
		return nil, errors.New("-addr is required")
	case f.proto != "imap" && f.proto != "smtp" && f.proto != "pop3":
		return nil, fmt.Errorf("-proto %q: want imap, smtp or pop3", f.proto)
	case f.mode != "implicit" && f.mode != "starttls" && f.mode != "passthrough":
		return nil, fmt.Errorf("-tls %q: want implicit, starttls or passthrough", f.mode)
	case !slices.Contains(clientKinds, f.client):
		return nil, fmt.Errorf("-client %q: want %s", f.client, strings.Join(clientKinds, ", "))
	case f.c < 1 || f.n < 1 || f.d <= 0 || f.hold <= 0 || f.chunk < 1 || f.timeout <= 0:
		return nil, errors.New("-c, -n, -d, -hold, -size and -timeout must be positive")
	}
	if f.tests == "all" {
		f.tests = strings.Join(testNames, ",")
	}
	return f, nil
}

// clientKinds are -client's values; the first is the default.
var clientKinds = []string{"x25519", "mlkem", "tls12", "rsa"}

// tlsBase is the client config. The default is TLS 1.3 with X25519 only,
// so every endpoint negotiates the same key exchange (Go would otherwise
// offer the hybrid X25519MLKEM768 first); the other kinds are the clients
// people really use (issue 19): Go's default groups (X25519MLKEM768, with
// an X25519 share too, so a server without ML-KEM picks X25519 at no
// extra round trip), TLS 1.2, and an RSA certificate, which the client
// checks so that a proxy serving another one is an error, not a row.
func (f *loadFlags) tlsBase() (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         f.sni,
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		InsecureSkipVerify: f.insecure,
	}
	switch f.client {
	case "mlkem":
		cfg.CurvePreferences = nil
	case "tls12":
		// P-256 too, as TLS 1.2 clients offer it: before TLS 1.3 the
		// groups also name the curves an ECDSA certificate may use
		// (RFC 8422 §5.1.1), and OpenSSL refuses a P-256 certificate to
		// a client that offers X25519 alone.
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		cfg.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	case "rsa":
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			if _, ok := cs.PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
				return fmt.Errorf("-client rsa: the server's certificate has a %T key, not RSA", cs.PeerCertificates[0].PublicKey)
			}
			return nil
		}
	}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no PEM certificate", f.ca)
		}
	}
	return cfg, nil
}

func newBench(f *loadFlags) (*bench, error) {
	cfg, err := f.tlsBase()
	if err != nil {
		return nil, err
	}
	if f.client == clientKinds[0] {
		f.client = "" // the default's rows keep their names
	}
	b := &bench{
		t:      target{Addr: f.addr, Proto: f.proto, TLS: f.mode, User: f.user, Pass: f.pass, Timeout: f.timeout, Seen: &tlsSeen{}},
		client: f.client,
		base:   cfg,
		c:      f.c, d: f.d, idleN: f.n, hold: f.hold, chunk: f.chunk,
		body: uploadBody(int(f.chunk)),
	}
	if f.pid != "" {
		pids, err := parsePIDs(f.pid)
		if err != nil {
			return nil, err
		}
		b.proc = &procWatcher{Root: "/proc", PIDs: pids}
	}
	return b, nil
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseLoadFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "mailbench:", err)
		}
		return 2
	}
	b, err := newBench(f)
	if err != nil {
		fmt.Fprintln(stderr, "mailbench:", err)
		return 2
	}
	var results []Result
	failed := false
	for _, name := range strings.Split(f.tests, ",") {
		r, err := b.runTest(ctx, strings.TrimSpace(name))
		if err != nil {
			fmt.Fprintln(stderr, "mailbench:", err)
			failed = true
			continue
		}
		r.Label, r.Rep = f.label, f.rep
		failed = failed || r.Ops == 0
		results = append(results, r)
	}
	if err := report(f.jsonOut, results, stdout); err != nil {
		fmt.Fprintln(stderr, "mailbench:", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// report writes the table to stdout, and the JSON to a file or, with
// "-", to stdout instead of the table.
func report(jsonOut string, rs []Result, stdout io.Writer) error {
	switch jsonOut {
	case "-":
		return writeJSON(stdout, rs)
	case "":
	default:
		fh, err := os.Create(jsonOut)
		if err != nil {
			return err
		}
		if err := writeJSON(fh, rs); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return writeTable(stdout, rs)
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mailbench serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := map[string]*string{
		"imap":  fs.String("imap", "127.0.0.1:0", "IMAP-like backend address ('' to disable)"),
		"smtp":  fs.String("smtp", "127.0.0.1:0", "SMTP sink address ('' to disable)"),
		"pop3":  fs.String("pop3", "127.0.0.1:0", "POP3 responder address ('' to disable)"),
		"auth":  fs.String("auth", "", "nginx mail auth_http responder address ('' to disable)"),
		"imaps": fs.String("imaps", "", "IMAP-like backend behind implicit TLS, with -cert and -key: the tenant server of SNI passthrough ('' to disable)"),
	}
	certFile := fs.String("cert", "", "PEM certificate (chain) of the -imaps listener")
	keyFile := fs.String("key", "", "PEM private key of the -imaps listener")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := serveTLSConfig(*addrs["imaps"], *certFile, *keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "mailbench serve:", err)
		return 2
	}
	m := make(map[string]string)
	for k, v := range addrs {
		m[k] = *v
	}
	if err := serveBackend(ctx, m, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "mailbench serve:", err)
		return 1
	}
	return 0
}

// serveTLSConfig is the -imaps listener's config: the certificate of
// -cert and -key, TLS 1.3 and X25519 as the proxies under test are set
// up, or nil without -imaps.
func serveTLSConfig(imaps, certFile, keyFile string) (*tls.Config, error) {
	switch {
	case imaps == "" && certFile == "" && keyFile == "":
		return nil, nil
	case imaps == "":
		return nil, errors.New("-cert and -key are for -imaps, which is not set")
	case certFile == "" || keyFile == "":
		return nil, errors.New("-imaps needs -cert and -key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-cert/-key: %w", err)
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{cert},
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}, nil
}
