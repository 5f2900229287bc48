// Command gateway is mailedge's complete mail TLS gateway: implicit TLS and
// STARTTLS listeners for SMTP, IMAP and POP3, certificates chosen by SNI,
// backend pools with health checks, PROXY/XCLIENT identity, login at the
// edge with per-user routing, rate limits, structured logs and Prometheus
// metrics.
//
// With no -listen flag it runs the embedded demo: a demo CA and certificates
// for mail.example.com (default), mail.example.net and mail.example.org, and
// two in-process demo mail systems, A for the users of example.com
// (demo@example.com / demo, alice@example.com / wonderland) and B for those
// of example.net (bob@example.net / builder), behind listeners that take
// the login and route it by a users file, on the loopback ports it prints.
//
//	go run ./examples/gateway
//	go run ./examples/gateway -cert /etc/ssl/mail.pem,/etc/ssl/mail.key \
//	    -listen imaps=0.0.0.0:993,proto=imap,tls=implicit,pool=imap \
//	    -backend imap=10.0.0.5:143,security=plain,proxy=v2,probe=imap
//
// A listener with auth takes the client's login at the gateway and routes
// it by user: -auth-file (a users file with per-domain routing) or
// -auth-http (an nginx auth_http service) says where each user's mailbox is.
//
//	go run ./examples/gateway -cert /etc/ssl/mail.pem,/etc/ssl/mail.key \
//	    -auth-file /etc/mailedge/users \
//	    -listen imaps=0.0.0.0:993,proto=imap,tls=implicit,pool=imap,auth \
//	    -backend a/imap=10.0.0.5:143,probe=imap -backend b/imap=10.0.0.6:143,probe=imap
//
// with "*@example.com - pool=a" and "*@example.net - pool=b" in the users
// file.
//
// SIGHUP reloads the whole configuration (the flags and the -config file
// read again: listeners, pools, limits, certificates, users; sessions in
// flight untouched, see reload.go); SIGTERM or SIGINT stops accepting, lets
// sessions finish for -grace, then exits.
//
// -metrics ADDR serves Prometheus /metrics and, for a load balancer or
// Kubernetes, /healthz (liveness: 200 while the accept loops run or the
// gateway drains) and /readyz (readiness: 200 when every listener accepts
// and certificates are loaded, 503 with the reasons otherwise and from the
// moment SIGTERM is received).
//
// A fleet of gateways shares its state through Redis (docs/scale-out.md):
// -redis ADDR|URL makes the limits and login limits fleet-wide, with
// -redis-fail choosing per class what happens while Redis does not answer;
// -ticket-keys redis|FILE shares the TLS session-ticket keys so that a
// session resumes on any replica.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailedge/mailedge/auth/authhttp"
	"github.com/mailedge/mailedge/ratelimit/redisstore"
	"github.com/mailedge/mailedge/sni/acme"
	"github.com/mailedge/mailedge/sni/ticketkeys"
)

// options are the parsed command line.
type options struct {
	listens    []listenSpec
	backends   []backendSpec
	certs      multiFlag
	leDirs     multiFlag
	sniMaps    multiFlag
	strictSNI  bool
	hostname   string
	trusted    string
	acl        string
	limits     string
	metrics    string
	grace      time.Duration
	watch      time.Duration
	demoDir    string
	logLevel   string
	policy     string
	maxSources int
	proxyFrom  string
	pprof      string
	tls        tlsPolicy // -tls-ciphers, -tls-compat, -tls-min, -ticket-lifetime, -any-alpn, -timeouts

	authFile        string        // -auth-file: users file (auth.Static)
	authHTTP        string        // -auth-http: nginx auth_http service URL
	authHTTPHeaders multiFlag     // -auth-http-header 'Name: value'
	authHTTPTimeout time.Duration // -auth-http-timeout

	redis             string        // -redis: host:port or redis:// / rediss:// URL
	redisPasswordFile string        // -redis-password-file
	redisFail         string        // -redis-fail connections=open|closed,...
	redisTimeout      time.Duration // -redis-timeout
	redisLease        time.Duration // -redis-lease
	replica           string        // -replica (default: the host name)
	ticketKeys        string        // -ticket-keys redis|FILE
	ticketRotate      time.Duration // -ticket-rotate

	acmeDomains string // -acme-domains a,b
	acmeEmail   string // -acme-email
	acmeCA      string // -acme-ca: directory URL
	acmeCARoot  string // -acme-ca-root FILE
	acmeHTTP    string // -acme-http ADDR: the HTTP-01 listener
	acmeDir     string // -acme-dir: storage folder

	passthrough []passthroughSpec // -passthrough LISTENER:NAME=POOL

	otelEndpoint string // -otel-endpoint: OTLP/HTTP collector URL
	otelService  string // -otel-service: service.name
	adminFrom    string // -admin-from: networks allowed on /admin/ besides loopback
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	var listens, backends multiFlag
	var config string
	fs.Var(&listens, "listen", "listener NAME=ADDR,proto=smtp|imap|pop3,tls=implicit|starttls[,mode=require|allow|disallow][,pool=POOL][,limit][,inspect][,proxy][,auth[=on|off|relay]][,verify=off|optional|on|optional_no_ca][,client-ca=FILE] (repeatable; proxy: read a PROXY header from -proxy-from sources; auth: take the login at the gateway and route it by -auth-file or -auth-http, relay: an SMTP port 25 listener routed by recipient; verify: ask for client certificates as nginx's ssl_verify_client, on and optional verifying them against client-ca, a PEM bundle reloaded with the certificates)")
	fs.Var(&backends, "backend", "pool member POOL=ADDR[,security=plain|tls|starttls][,proxy=v1|v2][,xclient][,imapid][,weight=N][,name=N][,servername=S][,ca=FILE][,insecure][,probe=none|greeting|smtp|imap|pop3|tls][,interval=5s][,timeout=2s][,downtime=30s][,user=U,pass=P] (repeatable; on a listener with auth, a login routed to pool NAME goes to pool NAME/POOL, POOL the listener's, or else to pool NAME)")
	fs.Var(&o.certs, "cert", "certificate CERTFILE,KEYFILE[,default] (repeatable)")
	fs.Var(&o.leDirs, "le-dir", "Let's Encrypt folder holding live/<name>/ (repeatable)")
	fs.Var(&o.sniMaps, "sni-map", "Postfix-style SNI map source file: 'host key cert' per line (repeatable)")
	fs.BoolVar(&o.strictSNI, "strict-sni", false, "refuse handshakes without SNI or for unknown names instead of serving the default certificate")
	fs.StringVar(&o.hostname, "hostname", "mail.example.com", "name the gateway greets with")
	fs.StringVar(&o.trusted, "trusted", "", "trusted networks exempt from rate limits, e.g. 10.0.0.0/8,192.168.0.0/16")
	fs.StringVar(&o.acl, "acl", "", "access list, first match wins, e.g. 'allow 10.0.0.0/8, deny 0.0.0.0/0'")
	fs.StringVar(&o.limits, "limits", "", "per-source limits for listeners with 'limit': inflight=N,connrate=N,msgrate=N,rcptrate=N,unit=60s; login limits for listeners with 'auth': authrate=N (attempts per source per unit),loginfailures=N (per source),userloginfailures=N (per user name),lockout=15m (failure window)")
	fs.IntVar(&o.maxSources, "max-sources", 0, "cap on tracked rate-limit sources (0: library default)")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus /metrics and the /healthz and /readyz probes on this address")
	fs.DurationVar(&o.grace, "grace", 30*time.Second, "on SIGTERM, how long sessions may finish before they are cut")
	fs.DurationVar(&o.watch, "watch", 30*time.Second, "poll certificate files for renewals this often (0: only on SIGHUP)")
	fs.StringVar(&o.demoDir, "demo-dir", "", "demo mode: folder for ca.pem and the demo certificates (default: a new temp folder)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.policy, "balance", "roundrobin", "pool policy: roundrobin, leastconn or weighted")
	fs.StringVar(&o.proxyFrom, "proxy-from", "", "balancers allowed to send an inbound PROXY header on listeners with 'proxy', e.g. 10.0.0.0/8")
	fs.StringVar(&o.pprof, "pprof", "", "serve net/http/pprof on this address (keep it on loopback)")
	fs.Var(&o.tls.ciphers, "tls-ciphers", "TLS 1.2 cipher suites, comma-separated, by OpenSSL or Go names, e.g. ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES128-GCM-SHA256 (default: Mozilla's intermediate list, AEAD only; TLS 1.3 suites are not configurable)")
	fs.BoolVar(&o.tls.compat, "tls-compat", false, "accept crypto/tls's default TLS 1.2 suites, which add ECDHE with AES-CBC-SHA, for old clients (ignored with -tls-ciphers)")
	fs.Var(&o.tls.minVersion, "tls-min", "lowest TLS version accepted from clients: 1.2 or 1.3 (default 1.2)")
	fs.Var(&o.tls.ticketLifetime, "ticket-lifetime", "sessions older than this are not resumed (a full handshake), at most 168h, or off for no session tickets (default: crypto/tls's 7 days)")
	fs.BoolVar(&o.tls.anyALPN, "any-alpn", false, "accept any ALPN protocol a client offers instead of refusing those that are not the listener's mail protocol (ALPACA)")
	fs.Var(&o.tls.timeouts, "timeouts", "timeouts of one protocol's listeners PROTO:pretls=DUR,handshake=DUR,idle=DUR|off, e.g. imap:pretls=60s,handshake=15s,idle=31m (repeatable, one protocol per flag; pretls: the STARTTLS dialogue, default 5m; handshake: default 15s; idle: the session without traffic, default 31m IMAP, 10m POP3, and for SMTP RFC 5321's per phase: 5m for a command, 2m for the reply to DATA, 3m between data blocks, 10m for the reply to the end of data; idle= replaces them with one)")
	fs.StringVar(&o.authFile, "auth-file", "", "users file for listeners with 'auth' (auth.Static: 'user {SCHEME}password [pool=NAME|host=HOST:PORT]', '*@domain' lines route a domain); reloaded on SIGHUP")
	fs.StringVar(&o.authHTTP, "auth-http", "", "nginx auth_http service URL for listeners with 'auth', e.g. http://127.0.0.1:9000/mail/auth")
	fs.Var(&o.authHTTPHeaders, "auth-http-header", "header sent to -auth-http, 'Name: value' (repeatable), as nginx's auth_http_header")
	fs.DurationVar(&o.authHTTPTimeout, "auth-http-timeout", authhttp.DefaultTimeout, "bound on one -auth-http decision")
	fs.StringVar(&o.redis, "redis", "", "share the limits of listeners with 'limit' and the login limits of listeners with 'auth' across a fleet through Redis: host:port or a redis:// or rediss:// URL (password, database, TLS)")
	fs.StringVar(&o.redisPasswordFile, "redis-password-file", "", "file holding the Redis password (instead of putting it in -redis)")
	fs.StringVar(&o.redisFail, "redis-fail", "", "when Redis does not answer, per class: connections=open|closed,messages=open|closed,logins=open|closed (default all open: count on this replica; closed: refuse with a temporary error)")
	fs.DurationVar(&o.redisTimeout, "redis-timeout", redisstore.DefaultTimeout, "bound on one Redis round trip of the limiter")
	fs.DurationVar(&o.redisLease, "redis-lease", redisstore.DefaultLeaseTTL, "how long this replica's in-flight connections count in Redis after it stops refreshing its lease (a crash, a partition); refreshed every third of it")
	fs.StringVar(&o.replica, "replica", "", "this replica's name among those sharing -redis, unique at a time (default: the host name, the pod's in Kubernetes)")
	fs.StringVar(&o.ticketKeys, "ticket-keys", "", "share TLS session-ticket keys: 'redis' (a key list in -redis, rotated every -ticket-rotate) or a FILE of keys, newest first, written by a secret store")
	fs.DurationVar(&o.ticketRotate, "ticket-rotate", ticketkeys.DefaultRotate, "with -ticket-keys redis, how long a key encrypts before the next replaces it")
	fs.Var((*passthroughFlags)(&o.passthrough), "passthrough", "SNI passthrough LISTENER:NAME=POOL: on the tls=implicit listener LISTENER, connections whose ClientHello names NAME (exact, or *.domain for one label below) go unread to POOL, whose members have security=passthrough and terminate TLS themselves; other names are terminated here (repeatable)")
	fs.StringVar(&o.acmeDomains, "acme-domains", "", "obtain and renew certificates for these names through ACME (comma-separated); they join the SNI selection like -cert ones")
	fs.StringVar(&o.acmeEmail, "acme-email", "", "ACME account contact address (required with -acme-domains)")
	fs.StringVar(&o.acmeCA, "acme-ca", acme.LetsEncrypt, "ACME directory URL")
	fs.StringVar(&o.acmeCARoot, "acme-ca-root", "", "PEM file of roots for the ACME CA's HTTPS certificate (a private CA such as pebble or step-ca)")
	fs.StringVar(&o.acmeHTTP, "acme-http", "", "listen on this address for the CA's HTTP-01 validation, e.g. :80 (required with -acme-domains)")
	fs.StringVar(&o.acmeDir, "acme-dir", "", "folder of the ACME account, certificates, keys and locks; a shared volume shares them across a fleet (default: mailedge/acme in the user config folder)")
	fs.StringVar(&o.otelEndpoint, "otel-endpoint", "", "export each session's stages as OpenTelemetry spans to this OTLP/HTTP collector, e.g. http://otel-collector:4318 (path /v1/traces unless given)")
	fs.StringVar(&o.adminFrom, "admin-from", "", "networks besides loopback allowed on the admin endpoints of -metrics (/admin/pools, /admin/drain, /admin/undrain), e.g. 10.0.0.0/8")
	fs.StringVar(&o.otelService, "otel-service", "mailedge-gateway", "service.name of the spans of -otel-endpoint")
	fs.StringVar(&config, "config", "", "file of flags, one per line as on the command line; '#' comments")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// where says where a -listen or -backend value was written, so that a
	// bad one in a -config file is reported at its line.
	where := map[string]string{}
	if config != "" {
		lines, err := readConfigFile(config)
		if err != nil {
			return nil, fmt.Errorf("-config: %w", err)
		}
		for _, l := range lines {
			if err := fs.Parse(l.args); err != nil {
				return nil, fmt.Errorf("%s: %w", l.where, err)
			}
			if fs.NArg() > 0 {
				return nil, fmt.Errorf("%s: unexpected argument %q", l.where, fs.Arg(0))
			}
			if len(l.args) == 2 {
				where[l.args[1]] = l.where
			}
		}
	}
	at := func(s string, err error) error {
		if w, ok := where[s]; ok {
			return fmt.Errorf("%s: %w", w, err)
		}
		return err
	}
	for _, s := range listens {
		ls, err := parseListen(s)
		if err != nil {
			return nil, at(s, err)
		}
		o.listens = append(o.listens, ls)
	}
	for _, s := range backends {
		b, err := parseBackend(s)
		if err != nil {
			return nil, at(s, err)
		}
		o.backends = append(o.backends, b)
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "gateway:", err)
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, "gateway: -log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if len(o.listens) == 0 {
		// The demo's users file routes its logins, unless the command
		// line names an authenticator of its own.
		ds, err := startDemo(ctx, o.demoDir, true, o.authFile == "" && o.authHTTP == "", log)
		if err != nil {
			fmt.Fprintln(stderr, "gateway: demo:", err)
			return 1
		}
		defer ds.close()
		args = append(ds.args, args...)
		if o, err = parseFlags(args, stderr); err != nil {
			fmt.Fprintln(stderr, "gateway: demo:", err)
			return 1
		}
		ds.printTable(stdout)
	}
	g, err := build(o, log)
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 1
	}
	g.args = args // SIGHUP reads them, and the -config file, again
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := g.start(ctx, hup); err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 1
	}
	fmt.Fprintln(stdout, "gateway: listening on", strings.Join(g.addrs(), " "))
	<-ctx.Done()
	log.Info("shutting down", "grace", o.grace)
	g.shutdown(o.grace)
	return 0
}
