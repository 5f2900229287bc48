package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailedge/mailedge/mailtest"
)

// demoNames are the demo domains; the first is the default certificate.
var demoNames = []string{"mail.example.com", "mail.example.net", "mail.example.org"}

// demoStore is one of the demo's two mail systems: the users of
// example.com log in on A, those of example.net on B.
type demoStore struct {
	pool   string // the users file's pool=; the gateway's pools are pool/<listener pool>
	member string // the member name in the session log's backend=
	opts   mailtest.Options
	system *mailtest.System
	addrs  mailtest.Addrs
}

// demoUser is an account of the demo, printed at startup.
type demoUser struct{ user, password, store string }

// demoUsers are the demo's accounts: demo@example.com (the one account
// before logins were taken at the edge) and one user per store.
var demoUsers = []demoUser{
	{"demo@example.com", "demo", "a"},
	{"alice@example.com", "wonderland", "a"},
	{"bob@example.net", "builder", "b"},
}

// demoSetup is the embedded default deployment: a demo CA, a certificate per
// demo domain written to dir, the two in-process demo mail systems, the
// users file that routes logins to them, and the flags that put the
// gateway in front of them on the loopback ports of the README.
type demoSetup struct {
	dir       string
	caFile    string
	usersFile string // "" when the command line names its own -auth-file or -auth-http
	stores    []*demoStore
	args      []string // -cert, -listen, -backend, -limits and -auth-file flags
}

// close stops the demo mail systems.
func (ds *demoSetup) close() {
	for _, st := range ds.stores {
		if st.system != nil {
			st.system.Close()
		}
	}
}

// startDemo starts the demo. With fixedPorts false the gateway listeners
// take ephemeral ports (tests); otherwise the README's 10xxx ports. With
// users, it writes the users file and passes it as -auth-file; otherwise
// the command line must name the authenticator of the logins.
func startDemo(ctx context.Context, dir string, fixedPorts, users bool, log *slog.Logger) (*demoSetup, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "mailedge-demo-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-demo-dir: %w", err)
	}
	ca, err := mailtest.GenerateCA("mailedge demo CA")
	if err != nil {
		return nil, err
	}
	ds := &demoSetup{dir: dir}
	if ds.caFile, err = ca.WriteCA(dir, "ca.pem"); err != nil {
		return nil, fmt.Errorf("-demo-dir: %w", err)
	}
	for i, name := range demoNames {
		opt := mailtest.CertOptions{}
		if i == 0 {
			// The default certificate (served without SNI) names the
			// loopback addresses too, so that clients that check the host
			// name and send no SNI to an address (mbsync, fetchmail,
			// neomutt) verify 127.0.0.1 with the demo CA.
			opt.IPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		leaf, err := ca.Issue(opt, name)
		if err != nil {
			return nil, err
		}
		c, k, err := leaf.WriteFiles(dir, name)
		if err != nil {
			return nil, fmt.Errorf("-demo-dir: %w", err)
		}
		arg := c + "," + k
		if i == 0 {
			arg += ",default"
		}
		ds.args = append(ds.args, "-cert", arg)
	}
	// The demo backends' own certificate, for the bridged legs (SMTPS to an
	// implicit-TLS backend, submission to a STARTTLS backend).
	beLeaf, err := ca.Issue(mailtest.CertOptions{}, "backend.mail.internal")
	if err != nil {
		return nil, err
	}
	beTLS := &tls.Config{Certificates: []tls.Certificate{beLeaf.TLS}, MinVersion: tls.VersionTLS12}
	ds.stores = []*demoStore{
		{pool: "a", member: "demo-a", opts: mailtest.Options{Domains: []string{"example.com", "example.org"}}},
		{pool: "b", member: "demo-b", opts: mailtest.Options{Domains: []string{"example.net"}, Hostname: "mail.example.net"}},
	}
	for _, st := range ds.stores {
		st.opts.Users = make(map[string]string)
		for _, u := range demoUsers {
			if u.store == st.pool {
				st.opts.Users[u.user] = u.password
			}
		}
		st.opts.Logger = log.With("component", "demo-backend", "backend", st.member)
		st.opts.TLSConfig = beTLS
		if st.system, err = mailtest.New(st.opts); err != nil {
			ds.close()
			return nil, err
		}
		if st.addrs, err = st.system.Start(ctx); err != nil {
			ds.close()
			return nil, err
		}
	}
	// Every listener takes the login at the edge; the users file routes
	// the users of example.com to the pools a/..., of example.net to b/...
	// (a login routed to pool NAME goes to NAME/<the listener's pool>).
	tlsOpts := "servername=backend.mail.internal,ca=" + ds.caFile
	for _, st := range ds.stores {
		be := func(pool, addr, opts string) {
			ds.args = append(ds.args, "-backend", st.pool+"/"+pool+"="+addr+",name="+st.member+","+opts)
		}
		be("imap", st.addrs.IMAP, "security=plain,probe=imap")
		be("pop3", st.addrs.POP3, "security=plain,probe=pop3")
		be("smtps", st.addrs.Submissions, "security=tls,probe=greeting,"+tlsOpts)
		be("submission", st.addrs.Submission, "security=starttls,probe=smtp,"+tlsOpts)
		be("mx", st.addrs.MX, "security=plain,probe=smtp")
	}
	l := func(name, port, opts string) {
		addr := "127.0.0.1:" + port
		if !fixedPorts {
			addr = "127.0.0.1:0"
		}
		ds.args = append(ds.args, "-listen", name+"="+addr+","+opts)
	}
	l("imaps", "10993", "proto=imap,tls=implicit,pool=imap,auth")
	l("smtps", "10465", "proto=smtp,tls=implicit,pool=smtps,auth")
	l("pop3s", "10995", "proto=pop3,tls=implicit,pool=pop3,auth")
	l("imap", "10143", "proto=imap,tls=starttls,mode=require,pool=imap,auth")
	l("submission", "10587", "proto=smtp,tls=starttls,mode=require,pool=submission,auth")
	l("pop3", "10110", "proto=pop3,tls=starttls,mode=require,pool=pop3,auth")
	l("smtp", "10025", "proto=smtp,tls=starttls,mode=allow,pool=mx,limit,inspect,auth=relay")
	if users {
		if ds.usersFile, err = writeDemoUsers(dir); err != nil {
			ds.close()
			return nil, fmt.Errorf("-demo-dir: %w", err)
		}
		ds.args = append(ds.args, "-auth-file", ds.usersFile)
	}
	// Port 25 as Mailu runs it behind Traefik: InFlightConn 15, Postfix anvil
	// rates.
	ds.args = append(ds.args, "-limits", "inflight=15,connrate=60,msgrate=100,rcptrate=300,unit=60s")
	return ds, nil
}

// writeDemoUsers writes the demo's users file (auth.Static, Dovecot's
// passwd-file format) into dir: two domain lines that route, and the
// accounts, alice's and bob's passwords hashed as doveadm pw -s SSHA256
// prints them.
func writeDemoUsers(dir string) (string, error) {
	var b strings.Builder
	b.WriteString(`# mailedge demo users file (-auth-file), reloaded on SIGHUP.
# <user> <password> [pool=NAME | host=HOST:PORT] ...; *@domain lines route a
# whole domain. A login routed to pool NAME goes, on each listener, to the
# gateway's pool NAME/<listener pool>: a/imap, a/pop3, a/submission, ...
*@example.com  -  pool=a
*@example.net  -  pool=b
`)
	for _, u := range demoUsers {
		pw := "{PLAIN}" + u.password
		if u.user != "demo@example.com" {
			pw = ssha256(u.password)
		}
		fmt.Fprintf(&b, "%-18s %s\n", u.user, pw)
	}
	path := filepath.Join(dir, "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// ssha256 is password in Dovecot's {SSHA256} scheme: base64 of
// sha256(password + salt) followed by the salt.
func ssha256(password string) string {
	salt := make([]byte, 8)
	rand.Read(salt)
	sum := sha256.Sum256(append([]byte(password), salt...))
	return "{SSHA256}" + base64.StdEncoding.EncodeToString(append(sum[:], salt...))
}

// printTable writes the endpoints, the accounts and where their logins
// land, and ready-to-paste client commands.
func (ds *demoSetup) printTable(w io.Writer) {
	ca := filepath.Clean(ds.caFile)
	if ds.usersFile == "" {
		fmt.Fprintf(w, "\nmailedge demo gateway: CA %s\nlogins are decided by the -auth-file or -auth-http of the command line\n", ca)
	} else {
		fmt.Fprintf(w, "\nmailedge demo gateway: CA %s\nlogins are taken at the gateway and routed by domain (users file %s):\n", ca, ds.usersFile)
		for _, u := range demoUsers {
			fmt.Fprintf(w, "  %-30s -> backend %s (member demo-%s)\n", u.user+" / "+u.password, strings.ToUpper(u.store), u.store)
		}
	}
	fmt.Fprint(w, `
  port   protocol  TLS                       backend (A for example.com, B for example.net)
  10993  IMAP      implicit                  demo IMAP (offload, plain)
  10465  SMTP      implicit                  demo submissions (bridging, TLS)
  10995  POP3      implicit                  demo POP3 (offload, plain)
  10143  IMAP      STARTTLS require          demo IMAP (offload, plain)
  10587  SMTP      STARTTLS require          demo submission (bridging, STARTTLS)
  10110  POP3      STARTTLS require          demo POP3 (offload, plain)
  10025  SMTP      STARTTLS allow, limited   demo MX, by recipient (local domains only)

`)
	if ds.usersFile != "" {
		fmt.Fprint(w, `  curl --ssl-reqd -k imaps://127.0.0.1:10993/ -u alice@example.com:wonderland   # lands on backend A
  curl --ssl-reqd -k imaps://127.0.0.1:10993/ -u bob@example.net:builder        # lands on backend B
  (each session's log line, msg=session, shows user= and the member as backend=demo-a or backend=demo-b)

`)
	}
	fmt.Fprintf(w, `  openssl s_client -connect 127.0.0.1:10993 -servername mail.example.net -CAfile %[1]s
  openssl s_client -connect 127.0.0.1:10587 -starttls smtp -servername mail.example.org -CAfile %[1]s
  curl --cacert %[1]s --connect-to mail.example.com:10993:127.0.0.1:10993 'imaps://mail.example.com:10993/INBOX;UID=1' -u demo@example.com:demo
  curl --cacert %[1]s --ssl-reqd --connect-to mail.example.com:10110:127.0.0.1:10110 pop3://mail.example.com:10110/1 -u demo@example.com:demo
  swaks --server 127.0.0.1:10587 --tls --tls-ca-path %[1]s --auth PLAIN --auth-user demo@example.com --auth-password demo --from demo@example.com --to demo@example.com
  swaks --server 127.0.0.1:10465 --tls-on-connect --auth PLAIN --auth-user demo@example.com --auth-password demo --from demo@example.com --to demo@example.com
  swaks --server 127.0.0.1:10025 --from someone@example.org --to bob@example.net   # port 25: routed by recipient, to B

  clients that check the host name verify 127.0.0.1 against the demo CA (the default certificate names it):
  fetchmail -c --ssl --sslcertck --sslcertfile %[1]s -p IMAP -P 10993 -u demo@example.com 127.0.0.1
  neomutt -F /dev/null -e 'set ssl_ca_certificates_file=%[1]s' -f 'imaps://demo%%40example.com@127.0.0.1:10993/'
  mbsync (~/.mbsyncrc): IMAPAccount demo / Host 127.0.0.1 / Port 10993 / TLSType IMAPS / CertificateFile %[1]s / User demo@example.com / Pass demo

`, ca)
}
