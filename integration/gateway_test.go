//go:build unix

package integration_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/testnet"
)

// gateway is examples/gateway running as a child process.
type gateway struct {
	addr map[string]string // listener name -> 127.0.0.2:port
	cmd  *exec.Cmd
	log  *logbook
	done chan struct{}
}

// The failover pool's timings (Checker Interval, Timeout, DownTime; Fall
// is the library's default of 3).
const (
	haInterval = 300 * time.Millisecond
	haTimeout  = time.Second
	haDownTime = 300 * time.Millisecond
	// inflight is the per-source limit on the "mx" listener.
	inflight = 2
)

// listenerSpecs are the gateway's listeners: name, protocol, TLS, extra
// options; the pool is named after the listener unless given.
var listenerSpecs = []string{
	"imaps:proto=imap,tls=implicit,pool=imap",
	"pop3s:proto=pop3,tls=implicit,pool=pop3",
	"imap:proto=imap,tls=starttls,mode=require,pool=imapst",
	"imapplain:proto=imap,tls=starttls,mode=allow,pool=imap",
	"pop3:proto=pop3,tls=starttls,mode=require,pool=pop3",
	"smtps:proto=smtp,tls=implicit,pool=smtps",
	"submission:proto=smtp,tls=starttls,mode=require,pool=submission",
	"mx:proto=smtp,tls=starttls,mode=allow,pool=mx,limit",
	"ha:proto=imap,tls=implicit,pool=ha",
}

// extraBackends add -backend flags for listeners that files built with
// extra tags (xclient_test.go) append to listenerSpecs.
var extraBackends []func(e *env) string

// gatewayArgs returns the command line for e's servers.
func gatewayArgs(e *env, ports []int) (args []string, addr map[string]string) {
	addr = make(map[string]string)
	for i, spec := range listenerSpecs {
		name, opts, _ := strings.Cut(spec, ":")
		addr[name] = fmt.Sprintf("%s:%d", gatewayIP, ports[i])
		args = append(args, "-listen", name+"="+addr[name]+","+opts)
	}
	for i, name := range sniNames {
		arg := e.certFiles[name][0] + "," + e.certFiles[name][1]
		if i == 0 {
			arg += ",default"
		}
		args = append(args, "-cert", arg)
	}
	d, p := e.dovecot, e.postfix
	tlsOpts := ",servername=" + backendName + ",ca=" + e.caFile
	creds := ",user=" + user + ",pass=" + pass
	ha := fmt.Sprintf(",interval=%v,timeout=%v,downtime=%v", haInterval, haTimeout, haDownTime)
	backends := []string{
		// Offload to Dovecot's haproxy ports: PROXY v2 with the SSL TLV.
		// The probes open with a PROXY LOCAL header, as HAProxy's
		// check-send-proxy does (no login: a LOCAL header claims no TLS).
		fmt.Sprintf("imap=127.0.0.1:%d,security=plain,proxy=v2,probe=imap", d.IMAPProxy),
		fmt.Sprintf("pop3=127.0.0.1:%d,security=plain,proxy=v2,probe=pop3", d.POP3Proxy),
		// STARTTLS on Dovecot's side, with the login-and-list probe.
		fmt.Sprintf("imapst=127.0.0.1:%d,security=starttls,probe=imap%s%s,interval=20s", d.IMAP, tlsOpts, creds),
		// Bridging to Postfix's wrapper-mode port, client identity by PROXY
		// v2 (XCLIENT on this path: see xclient_test.go).
		fmt.Sprintf("smtps=127.0.0.1:%d,security=tls,proxy=v2,probe=greeting%s", p.WrapperProxy, tlsOpts),
		fmt.Sprintf("submission=127.0.0.1:%d,security=plain,xclient,probe=smtp%s,interval=20s", p.Plain, creds),
		fmt.Sprintf("mx=127.0.0.1:%d,security=plain,proxy=v2,probe=smtp", p.Proxy),
		fmt.Sprintf("ha=127.0.0.1:%d,name=ha-a,security=starttls,probe=imap%s%s%s", e.haA.IMAP, tlsOpts, creds, ha),
		fmt.Sprintf("ha=127.0.0.1:%d,name=ha-b,security=starttls,probe=imap%s%s%s", e.haB.IMAP, tlsOpts, creds, ha),
	}
	for _, f := range extraBackends {
		backends = append(backends, f(e))
	}
	for _, b := range backends {
		args = append(args, "-backend", b)
	}
	args = append(args, "-limits", fmt.Sprintf("inflight=%d,connrate=1000,msgrate=1000,rcptrate=1000,unit=60s", inflight),
		"-trusted", "10.255.255.0/24", "-watch", "0", "-grace", "2s", "-hostname", "mail.example.com")
	return args, addr
}

// startGateway builds examples/gateway and runs it in front of e's servers,
// waiting for "gateway: listening on".
func startGateway(e *env) (*gateway, error) {
	bin := filepath.Join(e.dir, "gateway")
	build := exec.Command("go", "build", "-o", bin, "./examples/gateway")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./examples/gateway: %w\n%s", err, out)
	}
	ports, err := testnet.FreePorts(gatewayIP, len(listenerSpecs))
	if err != nil {
		return nil, err
	}
	args, addr := gatewayArgs(e, ports)
	logFile, err := os.Create(filepath.Join(e.dir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	g := &gateway{addr: addr, log: newLogbook(logFile), done: make(chan struct{})}
	g.cmd = exec.Command(bin, args...)
	stdout, _ := g.cmd.StdoutPipe()
	stderr, _ := g.cmd.StderrPipe()
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); g.log.consume(stderr) }()
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "gateway: listening on") {
				ready <- sc.Text()
			}
		}
	}()
	go func() {
		readers.Wait() // pipes must be drained before Wait
		g.cmd.Wait()
		logFile.Close()
		close(g.done)
	}()
	select {
	case <-ready:
		return g, nil
	case <-g.done:
		return g, fmt.Errorf("gateway exited at start:%s", tail(logFile.Name(), 20))
	case <-time.After(60 * time.Second):
		return g, fmt.Errorf("gateway not listening after 60s")
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (g *gateway) stop() {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
}

// logbook keeps the gateway's log lines and wakes waiters on each new one.
type logbook struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
	copyTo  io.Writer
}

func newLogbook(copyTo io.Writer) *logbook {
	return &logbook{changed: make(chan struct{}), copyTo: copyTo}
}

func (b *logbook) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		b.mu.Lock()
		b.lines = append(b.lines, sc.Text())
		fmt.Fprintln(b.copyTo, sc.Text())
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
	}
}

// mark is the index of the next line, for waiting on lines after an event.
func (b *logbook) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// find returns the first line at or after from matching every pattern.
func (b *logbook) find(from int, patterns ...*regexp.Regexp) (string, int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := from; i < len(b.lines); i++ {
		if matchAll(b.lines[i], patterns) {
			return b.lines[i], i, true
		}
	}
	return "", len(b.lines), false
}

// wait blocks until a line at or after from matches every pattern, or
// fails the test after limit.
func (b *logbook) wait(t testing.TB, from int, limit time.Duration, patterns ...*regexp.Regexp) string {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		b.mu.Lock()
		ch := b.changed
		b.mu.Unlock()
		if line, _, ok := b.find(from, patterns...); ok {
			return line
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("no gateway log line matching %v within %v", patterns, limit)
			return ""
		}
	}
}

func matchAll(s string, patterns []*regexp.Regexp) bool {
	for _, p := range patterns {
		if !p.MatchString(s) {
			return false
		}
	}
	return true
}

// re is regexp.MustCompile, short for test tables.
func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }
