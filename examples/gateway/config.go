package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/sni"
)

// listenSpec is one -listen flag: NAME=ADDR,proto=P,tls=T,mode=M,pool=POOL[,limit][,auth[=on|off|relay]][,verify=V,client-ca=FILE]
type listenSpec struct {
	Name     string
	Addr     string
	Proto    string // smtp, imap, pop3
	TLS      string // implicit, starttls
	Mode     string // require, allow, disallow (starttls only)
	Pool     string
	Limit    bool           // apply the rate limits (port 25 style)
	Inspect  bool           // SMTP message/recipient rate through the inspector
	ProxyIn  bool           // accept an inbound PROXY header from trusted networks
	Auth     bool           // take the login at the edge (auth.Server)
	Relay    bool           // with Auth: inbound SMTP, routed by the first RCPT TO (auth.Server.Relay)
	Verify   sni.ClientAuth // verify=: client certificates (nginx ssl_verify_client)
	ClientCA string         // client-ca=: the CA bundle that verifies them (nginx ssl_client_certificate)
	flagText string
}

// backendSpec is one -backend flag: POOL=ADDR,security=S,proxy=V,xclient,imapid,weight=N,...
type backendSpec struct {
	Pool       string
	Addr       string
	Name       string
	Security   string // plain, tls, starttls
	Proxy      string // "", v1, v2
	XCLIENT    bool
	IMAPID     bool
	Weight     int
	ServerName string
	CAFile     string
	Insecure   bool
	Probe      string // none, greeting, smtp, imap, pop3, tls
	Interval   time.Duration
	Timeout    time.Duration
	DownTime   time.Duration
	User, Pass string
	Rise, Fall int     // rise=, fall=: the checker's; 0: monitor's defaults
	Jitter     float64 // jitter=: the checker's; 0: monitor's default, negative: none
	Mailbox    string  // mailbox=: the IMAP probe's; "": INBOX
	Examine    bool    // examine: the IMAP probe opens the mailbox with EXAMINE
	// identity=besteffort: a backend without XCLIENT or ID is used anyway
	IdentityBestEffort bool
	flagText           string
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// splitSpec splits "HEAD=ADDR,k=v,flag" into head, addr and options.
func splitSpec(s string) (head, addr string, opts map[string]string, err error) {
	parts := strings.Split(s, ",")
	h, a, ok := strings.Cut(parts[0], "=")
	if !ok || h == "" || a == "" {
		return "", "", nil, fmt.Errorf("%q: want NAME=ADDR[,key=value...]", s)
	}
	opts = make(map[string]string)
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		opts[strings.ToLower(k)] = v
	}
	return h, a, opts, nil
}

func parseListen(s string) (listenSpec, error) {
	name, addr, o, err := splitSpec(s)
	if err != nil {
		return listenSpec{}, fmt.Errorf("-listen %w", err)
	}
	ls := listenSpec{Name: name, Addr: addr, Proto: o["proto"], TLS: o["tls"], Mode: o["mode"], Pool: o["pool"], flagText: s}
	_, ls.Limit = o["limit"]
	_, ls.Inspect = o["inspect"]
	_, ls.ProxyIn = o["proxy"]
	if v, ok := o["auth"]; ok {
		switch v {
		case "", "on":
			ls.Auth = true
		case "off":
		case "relay":
			ls.Auth, ls.Relay = true, true
		default:
			return ls, fmt.Errorf("-listen %q: auth=%q: want on, off or relay", s, v)
		}
	}
	if ls.Pool == "" {
		ls.Pool = name
	}
	if err := oneOf("proto", ls.Proto, "smtp", "imap", "pop3"); err != nil {
		return ls, fmt.Errorf("-listen %q: %w", s, err)
	}
	if ls.TLS == "" {
		ls.TLS = "implicit"
	}
	if err := oneOf("tls", ls.TLS, "implicit", "starttls"); err != nil {
		return ls, fmt.Errorf("-listen %q: %w", s, err)
	}
	if ls.Mode == "" {
		ls.Mode = "require"
	}
	if err := oneOf("mode", ls.Mode, "require", "allow", "disallow"); err != nil {
		return ls, fmt.Errorf("-listen %q: %w", s, err)
	}
	if ls.Relay && ls.Proto != "smtp" {
		return ls, fmt.Errorf("-listen %q: auth=relay is for an SMTP listener (port 25)", s)
	}
	if err := parseVerify(&ls, o); err != nil {
		return ls, fmt.Errorf("-listen %q: %w", s, err)
	}
	return ls, checkKeys(o, "-listen", s, "proto", "tls", "mode", "pool", "limit", "inspect", "proxy", "auth", "verify", "client-ca")
}

// parseVerify reads the client-certificate options of a listener:
// verify=off|optional|on|optional_no_ca and client-ca=FILE, which the two
// verifying modes need and the others do not take.
func parseVerify(ls *listenSpec, o map[string]string) error {
	v, err := sni.ParseClientAuth(o["verify"])
	if err != nil {
		return fmt.Errorf("verify=: %w", err)
	}
	ls.Verify, ls.ClientCA = v, o["client-ca"]
	switch {
	case (v == sni.OptionalClientCert || v == sni.RequireClientCert) && ls.ClientCA == "":
		return fmt.Errorf("verify=%s needs client-ca=FILE (the CAs that issue client certificates)", v)
	case (v == sni.NoClientCert || v == sni.OptionalClientCertNoCA) && ls.ClientCA != "":
		return fmt.Errorf("client-ca= is used only with verify=on or verify=optional, not verify=%s", v)
	}
	return nil
}

func parseBackend(s string) (backendSpec, error) {
	pool, addr, o, err := splitSpec(s)
	if err != nil {
		return backendSpec{}, fmt.Errorf("-backend %w", err)
	}
	b := backendSpec{Pool: pool, Addr: addr, Name: o["name"], Security: o["security"], Proxy: o["proxy"],
		ServerName: o["servername"], CAFile: o["ca"], Probe: o["probe"], User: o["user"], Pass: o["pass"], flagText: s}
	_, b.XCLIENT = o["xclient"]
	_, b.IMAPID = o["imapid"]
	_, b.Insecure = o["insecure"]
	if b.Name == "" {
		b.Name = addr
	}
	if b.Security == "" {
		b.Security = "plain"
	}
	bad := func(err error) (backendSpec, error) { return b, fmt.Errorf("-backend %q: %w", s, err) }
	if err := oneOf("security", b.Security, "plain", "tls", "starttls", "passthrough"); err != nil {
		return bad(err)
	}
	if err := oneOf("proxy", b.Proxy, "", "v1", "v2"); err != nil {
		return bad(err)
	}
	if err := checkPassthroughMember(&b); err != nil {
		return bad(err)
	}
	if b.Probe == "" {
		b.Probe = "greeting"
	}
	if err := oneOf("probe", b.Probe, "none", "greeting", "smtp", "imap", "pop3", "tls", "connect"); err != nil {
		return bad(err)
	}
	b.Weight = 1
	if w, ok := o["weight"]; ok {
		if b.Weight, err = strconv.Atoi(w); err != nil || b.Weight < 1 {
			return bad(fmt.Errorf("weight %q: want a positive integer", w))
		}
	}
	for key, dst := range map[string]*time.Duration{"interval": &b.Interval, "timeout": &b.Timeout, "downtime": &b.DownTime} {
		if v, ok := o[key]; ok {
			if *dst, err = time.ParseDuration(v); err != nil || *dst <= 0 {
				return bad(fmt.Errorf("%s %q: want a positive duration like 5s", key, v))
			}
		}
	}
	if err := parseCheckOptions(&b, o); err != nil {
		return bad(err)
	}
	return b, checkKeys(o, "-backend", s, "name", "security", "proxy", "xclient", "imapid", "weight",
		"servername", "ca", "insecure", "probe", "interval", "timeout", "downtime", "user", "pass",
		"rise", "fall", "jitter", "mailbox", "examine", "identity")
}

func oneOf(key, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s=%q: want one of %s", key, v, strings.Join(allowed, ", "))
}

func checkKeys(o map[string]string, flagName, s string, known ...string) error {
	for k := range o {
		found := false
		for _, kk := range known {
			found = found || k == kk
		}
		if !found {
			return fmt.Errorf("%s %q: unknown option %q", flagName, s, k)
		}
	}
	return nil
}

// parseLimits reads "inflight=15,connrate=60,msgrate=100,rcptrate=300,unit=60s"
// and the login limits "authrate=N,loginfailures=N,userloginfailures=N,lockout=15m".
func parseLimits(s string) (ratelimit.Limits, error) {
	var l ratelimit.Limits
	if s == "" {
		return l, nil
	}
	counts := map[string]*int{
		"inflight": &l.InFlight, "connrate": &l.ConnRate, "msgrate": &l.MessageRate, "rcptrate": &l.RecipientRate,
		"authrate": &l.AuthRate, "loginfailures": &l.LoginFailures, "userloginfailures": &l.UserLoginFailures,
	}
	durations := map[string]*time.Duration{"unit": &l.Unit, "lockout": &l.Lockout}
	for _, p := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if dst, ok := durations[k]; ok {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return ratelimit.Limits{}, fmt.Errorf("-limits %s=%q: want a positive duration", k, v)
			}
			*dst = d
			continue
		}
		dst, ok := counts[k]
		if !ok {
			return ratelimit.Limits{}, fmt.Errorf("-limits: unknown key %q (want inflight, connrate, msgrate, rcptrate, unit, authrate, loginfailures, userloginfailures, lockout)", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return ratelimit.Limits{}, fmt.Errorf("-limits %s=%q: want a non-negative integer", k, v)
		}
		*dst = n
	}
	return l, nil
}

// readConfigFile returns the flags written in path, one flag per line as on
// the command line ("-listen imaps=0.0.0.0:993,proto=imap"); '#' starts a
// comment. Errors name the file and line.
func readConfigFile(path string) ([]configLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []configLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, val, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(name, "-") {
			return nil, fmt.Errorf("%s:%d: want a flag like -listen ..., got %q", path, n, line)
		}
		if name == "-config" || name == "--config" {
			return nil, fmt.Errorf("%s:%d: -config cannot be nested", path, n)
		}
		cl := configLine{where: fmt.Sprintf("%s:%d", path, n), args: []string{name}}
		if v := strings.TrimSpace(val); v != "" {
			cl.args = append(cl.args, v)
		}
		lines = append(lines, cl)
	}
	return lines, sc.Err()
}

// configLine is one flag of a -config file and where it is.
type configLine struct {
	where string // file:line
	args  []string
}

var _ flag.Value = (*multiFlag)(nil)
