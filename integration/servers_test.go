//go:build unix

package integration_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/mailedge/mailedge/internal/testnet"
)

// The account every server knows.
const (
	user = "demo@example.com"
	pass = "demo"
)

// owner is the system user mail is stored as (Dovecot's userdb and
// Postfix's virtual delivery).
type owner struct{ UID, GID int }

// dovecot is one private Dovecot instance run in the foreground (-F) as a
// child process, so the suite can stop and restart it.
type dovecot struct {
	Name, Dir, Home   string
	CertFile, KeyFile string
	UID, GID          int
	IMAP, IMAPProxy   int
	POP3, POP3Proxy   int
	conf              string
	cmd               *exec.Cmd
	done              chan struct{} // closed when cmd has been waited for
	waitErrs          error
}

func newDovecot(name, dir, home, certFile, keyFile string, o owner) (*dovecot, error) {
	d := &dovecot{Name: name, Dir: dir, Home: home, CertFile: certFile, KeyFile: keyFile, UID: o.UID, GID: o.GID}
	ports, err := testnet.FreePorts("127.0.0.1", 4)
	if err != nil {
		return nil, err
	}
	d.IMAP, d.IMAPProxy, d.POP3, d.POP3Proxy = ports[0], ports[1], ports[2], ports[3]
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(user+":{PLAIN}"+pass+"\n"), 0o644); err != nil {
		return nil, err
	}
	d.conf = filepath.Join(dir, "dovecot.conf")
	return d, render("dovecot.conf.tmpl", d.conf, d)
}

// start runs the master and waits until the IMAP port greets as ready
// (after "Waiting for authentication process" has passed).
func (d *dovecot) start() error {
	logf, err := os.OpenFile(filepath.Join(d.Dir, "master.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("dovecot", "-F", "-c", d.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("dovecot %s: %w", d.Name, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() {
		d.waitErrs = cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	return waitGreeting(fmt.Sprintf("127.0.0.1:%d", d.IMAP), "* OK [CAPABILITY", d.done, 20*time.Second)
}

// stop ends the master (SIGTERM, then SIGKILL) and waits for it; stopping
// a stopped instance does nothing.
func (d *dovecot) stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	d.cmd = nil
}

// postfix is one private Postfix instance; its master daemonizes, so it is
// stopped with "postfix stop".
type postfix struct {
	Dir, Home             string
	CertFile, KeyFile     string
	SASLPath              string
	UID, GID              int
	Plain, Proxy, Wrapper int
	WrapperProxy          int
	started               bool
}

func newPostfix(dir, home, certFile, keyFile, saslPath string, o owner) (*postfix, error) {
	p := &postfix{Dir: dir, Home: home, CertFile: certFile, KeyFile: keyFile, SASLPath: saslPath, UID: o.UID, GID: o.GID}
	ports, err := testnet.FreePorts("127.0.0.1", 4)
	if err != nil {
		return nil, err
	}
	p.Plain, p.Proxy, p.Wrapper, p.WrapperProxy = ports[0], ports[1], ports[2], ports[3]
	if err := os.MkdirAll(filepath.Join(dir, "spool"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := chownTo(filepath.Join(dir, "data"), "postfix"); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "vmailbox"), []byte(user+" "+user+"/Maildir/\n"), 0o644); err != nil {
		return nil, err
	}
	if err := render("main.cf.tmpl", filepath.Join(dir, "main.cf"), p); err != nil {
		return nil, err
	}
	return p, render("master.cf.tmpl", filepath.Join(dir, "master.cf"), p)
}

func (p *postfix) start() error {
	// "check" creates the queue directories with their owners.
	for _, verb := range []string{"check", "start"} {
		if out, err := exec.Command("postfix", "-c", p.Dir, verb).CombinedOutput(); err != nil {
			return fmt.Errorf("postfix %s: %w: %s%s", verb, err, out, tail(p.maillog(), 10))
		}
	}
	p.started = true
	return waitGreeting(fmt.Sprintf("127.0.0.1:%d", p.Plain), "220 ", nil, 20*time.Second)
}

func (p *postfix) stop() {
	if !p.started {
		return
	}
	p.started = false
	if exec.Command("postfix", "-c", p.Dir, "stop").Run() == nil {
		return
	}
	if b, err := os.ReadFile(filepath.Join(p.Dir, "spool", "pid", "master.pid")); err == nil {
		var pid int
		if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

func (p *postfix) maillog() string { return filepath.Join(p.Dir, "maillog") }

// render writes the template testdata/name filled with data to dst.
func render(name, dst string, data any) error {
	tmpl, err := template.ParseFiles(filepath.Join("testdata", name))
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := tmpl.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	return f.Close()
}

// waitGreeting dials addr until its first line starts with prefix, the
// process behind done exits, or the wait is over.
func waitGreeting(addr, prefix string, done <-chan struct{}, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	last := errors.New("no attempt")
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("%s: server exited before it was ready (last: %v)", addr, last)
		default:
		}
		line, err := firstLine(addr)
		if err == nil && strings.HasPrefix(line, prefix) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("greeting %q", line)
		}
		last = err
		time.Sleep(100 * time.Millisecond) // polling a process we cannot be notified by
	}
	return fmt.Errorf("%s: not ready after %v: %w", addr, wait, last)
}

func firstLine(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// tail returns the last n lines of the file at path, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n" + path + ":\n" + strings.Join(lines, "\n")
}
