package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mailedge/mailedge/internal/demo"
	"github.com/mailedge/mailedge/internal/testcert"
)

// demoNames are the demo domains; the first is the default certificate.
var demoNames = []string{"mail.example.com", "mail.example.net", "mail.example.org"}

// demoSetup is the embedded default deployment: a demo CA, a certificate per
// demo domain written to dir, the in-process demo mail system, and the flags
// that put the gateway in front of it on the loopback ports of the README.
type demoSetup struct {
	dir    string
	caFile string
	system *demo.System
	args   []string // -cert, -listen and -backend flags
}

// startDemo starts the demo. With fixedPorts false the gateway listeners
// take ephemeral ports (tests); otherwise the README's 10xxx ports.
func startDemo(ctx context.Context, dir string, fixedPorts bool, log *slog.Logger) (*demoSetup, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "mailedge-demo-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("-demo-dir: %w", err)
	}
	ca, err := testcert.NewCA("mailedge demo CA")
	if err != nil {
		return nil, err
	}
	ds := &demoSetup{dir: dir}
	if ds.caFile, err = ca.WriteCA(dir, "ca.pem"); err != nil {
		return nil, fmt.Errorf("-demo-dir: %w", err)
	}
	for i, name := range demoNames {
		leaf, err := ca.Issue(testcert.Options{}, name)
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
	beLeaf, err := ca.Issue(testcert.Options{}, "backend.mail.internal")
	if err != nil {
		return nil, err
	}
	sys, err := demo.New(demo.Options{
		Logger:    log.With("component", "demo-backend"),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{beLeaf.TLS}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		return nil, err
	}
	addrs, err := sys.Start(ctx)
	if err != nil {
		sys.Close()
		return nil, err
	}
	ds.system = sys
	be := func(pool, addr, opts string) { ds.args = append(ds.args, "-backend", pool+"="+addr+","+opts) }
	tlsOpts := "servername=backend.mail.internal,ca=" + ds.caFile
	be("imap", addrs.IMAP, "security=plain,probe=imap")
	be("pop3", addrs.POP3, "security=plain,probe=pop3")
	be("smtps", addrs.Submissions, "security=tls,probe=greeting,"+tlsOpts)
	be("submission", addrs.Submission, "security=starttls,probe=smtp,"+tlsOpts)
	be("mx", addrs.MX, "security=plain,probe=smtp")
	l := func(name, port, opts string) {
		addr := "127.0.0.1:" + port
		if !fixedPorts {
			addr = "127.0.0.1:0"
		}
		ds.args = append(ds.args, "-listen", name+"="+addr+","+opts)
	}
	l("imaps", "10993", "proto=imap,tls=implicit,pool=imap")
	l("smtps", "10465", "proto=smtp,tls=implicit,pool=smtps")
	l("pop3s", "10995", "proto=pop3,tls=implicit,pool=pop3")
	l("imap", "10143", "proto=imap,tls=starttls,mode=require,pool=imap")
	l("submission", "10587", "proto=smtp,tls=starttls,mode=require,pool=submission")
	l("pop3", "10110", "proto=pop3,tls=starttls,mode=require,pool=pop3")
	l("smtp", "10025", "proto=smtp,tls=starttls,mode=allow,pool=mx,limit,inspect")
	// Port 25 as Mailu runs it behind Traefik: InFlightConn 15, Postfix anvil
	// rates.
	ds.args = append(ds.args, "-limits", "inflight=15,connrate=60,msgrate=100,rcptrate=300,unit=60s")
	return ds, nil
}

// printTable writes the endpoints and ready-to-paste client commands.
func (ds *demoSetup) printTable(w io.Writer) {
	ca := filepath.Clean(ds.caFile)
	fmt.Fprintf(w, `
mailedge demo gateway: account demo@example.com / demo, CA %s

  port   protocol  TLS                       backend
  10993  IMAP      implicit                  demo IMAP (offload, plain)
  10465  SMTP      implicit                  demo submissions (bridging, TLS)
  10995  POP3      implicit                  demo POP3 (offload, plain)
  10143  IMAP      STARTTLS require          demo IMAP (offload, plain)
  10587  SMTP      STARTTLS require          demo submission (bridging, STARTTLS)
  10110  POP3      STARTTLS require          demo POP3 (offload, plain)
  10025  SMTP      STARTTLS allow, limited   demo MX (local domains only)

  openssl s_client -connect 127.0.0.1:10993 -servername mail.example.net -CAfile %[1]s
  openssl s_client -connect 127.0.0.1:10587 -starttls smtp -servername mail.example.org -CAfile %[1]s
  curl --cacert %[1]s --connect-to mail.example.com:10993:127.0.0.1:10993 'imaps://mail.example.com:10993/INBOX;UID=1' -u demo@example.com:demo
  curl --cacert %[1]s --ssl-reqd --connect-to mail.example.com:10110:127.0.0.1:10110 pop3://mail.example.com:10110/1 -u demo@example.com:demo
  swaks --server 127.0.0.1:10587 --tls --tls-ca-path %[1]s --auth PLAIN --auth-user demo@example.com --auth-password demo --from demo@example.com --to demo@example.com
  swaks --server 127.0.0.1:10465 --tls-on-connect --auth PLAIN --auth-user demo@example.com --auth-password demo --from demo@example.com --to demo@example.com

`, ca)
}
