//go:build unix

package integration_test

import (
	"fmt"
	"io"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mailedge/mailedge/mailtest"
)

// Addresses of the three hops (see doc.go).
const (
	serverIP  = "127.0.0.1"
	gatewayIP = "127.0.0.2"
	clientIP  = "127.0.0.3"
)

// sniNames are the gateway's certificate names; the first is the default.
var sniNames = []string{"mail.example.com", "mail.example.net", "mail.example.org"}

// backendName is the name on the servers' own certificate.
const backendName = "backend.mail.internal"

// env is everything TestMain starts and the tests share.
type env struct {
	dir    string
	ca     *mailtest.CA
	caFile string
	// certFiles maps each SNI name to its certificate and key files.
	certFiles map[string][2]string
	serials   map[string]string // SNI name -> serial (hex) of the served leaf
	home      string            // mail homes, one per user
	dovecot   *dovecot          // main instance: IMAP, POP3, SASL for Postfix
	haA, haB  *dovecot          // the failover pool's two members
	postfix   *postfix
	gw        *gateway
}

// startEnv builds and starts everything; on error it returns what it has
// started so far for the caller to stop.
func startEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "mailedge-integration-")
	if err != nil {
		return nil, err
	}
	// Dovecot and Postfix drop privileges: they must reach their files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	e := &env{dir: dir, certFiles: make(map[string][2]string), serials: make(map[string]string)}
	o, err := mailOwner()
	if err != nil {
		return e, err
	}
	if err := e.writeCerts(); err != nil {
		return e, err
	}
	if err := e.makeHome(o); err != nil {
		return e, err
	}
	if err := e.startServers(o); err != nil {
		return e, err
	}
	gw, err := startGateway(e)
	e.gw = gw
	return e, err
}

func mailOwner() (owner, error) {
	u, err := osuser.Lookup("dovecot")
	if err != nil {
		return owner{}, fmt.Errorf("user dovecot: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return owner{UID: uid, GID: gid}, nil
}

func (e *env) writeCerts() error {
	ca, err := mailtest.GenerateCA("mailedge integration CA")
	if err != nil {
		return err
	}
	e.ca = ca
	if e.caFile, err = ca.WriteCA(e.dir, "ca.pem"); err != nil {
		return err
	}
	for _, name := range append([]string{backendName}, sniNames...) {
		if err := e.issue(name); err != nil {
			return err
		}
	}
	return nil
}

// issue writes a new leaf for name over its files, atomically (rename), and
// records its serial.
func (e *env) issue(name string) error {
	leaf, err := e.ca.Issue(mailtest.CertOptions{}, name)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(e.dir, "issue-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	c, k, err := leaf.WriteFiles(tmp, name)
	if err != nil {
		return err
	}
	dstC, dstK := filepath.Join(e.dir, name+".crt"), filepath.Join(e.dir, name+".key")
	if err := os.Rename(k, dstK); err != nil {
		return err
	}
	if err := os.Rename(c, dstC); err != nil {
		return err
	}
	e.certFiles[name] = [2]string{dstC, dstK}
	e.serials[name] = fmt.Sprintf("%X", leaf.Cert.SerialNumber)
	return nil
}

func (e *env) makeHome(o owner) error {
	e.home = filepath.Join(e.dir, "home")
	for _, d := range []string{e.home, filepath.Join(e.home, user)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chown(d, o.UID, o.GID); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) startServers(o owner) error {
	be := e.certFiles[backendName]
	var err error
	mk := func(name string) *dovecot {
		if err != nil {
			return nil
		}
		var d *dovecot
		d, err = newDovecot(name, filepath.Join(e.dir, "dovecot-"+name), e.home, be[0], be[1], o)
		if err == nil {
			err = d.start()
		}
		return d
	}
	e.dovecot, e.haA, e.haB = mk("main"), mk("ha-a"), mk("ha-b")
	if err != nil {
		return err
	}
	sasl := filepath.Join(e.dovecot.Dir, "run", "auth-client")
	// Postfix's ports are free when picked but bound only later, and a
	// parallel test's outgoing connection may take one as its source port
	// meanwhile: its master then fails with "Address already in use"; pick
	// new ports and try again.
	for attempt := 1; ; attempt++ {
		if e.postfix, err = newPostfix(filepath.Join(e.dir, "postfix"), e.home, be[0], be[1], sasl, o); err != nil {
			return err
		}
		err = e.postfix.start()
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return err
		}
	}
}

// stop tears everything down, gateway first; safe on a partial env.
func (e *env) stop() {
	if e.gw != nil {
		e.gw.stop()
	}
	if e.postfix != nil {
		e.postfix.stop()
	}
	for _, d := range []*dovecot{e.dovecot, e.haA, e.haB} {
		if d != nil {
			d.stop()
		}
	}
	if os.Getenv("MAILEDGE_INTEGRATION_KEEP") == "" {
		os.RemoveAll(e.dir)
	} else {
		fmt.Fprintln(os.Stderr, "integration: kept", e.dir)
	}
}

// dumpLogs copies the tails of every log to w, for a failed run.
func (e *env) dumpLogs(w io.Writer) {
	files := []string{filepath.Join(e.dir, "gateway.log")}
	for _, d := range []*dovecot{e.dovecot, e.haA, e.haB} {
		if d != nil {
			files = append(files, filepath.Join(d.Dir, "dovecot.log"), filepath.Join(d.Dir, "master.out"))
		}
	}
	if e.postfix != nil {
		files = append(files, e.postfix.maillog())
	}
	for _, f := range files {
		fmt.Fprintln(w, tail(f, 40))
	}
}

func chownTo(path, name string) error {
	u, err := osuser.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}
