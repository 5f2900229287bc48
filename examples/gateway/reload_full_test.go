package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/mailtest"
)

// imapLine opens a plain session on a STARTTLS (mode=allow) IMAP listener
// and returns its greeting, with a reader and the connection open. When
// the gateway greeted, a command it does not answer itself (SELECT) hands
// the session over to the backend, whose answer it reads.
func imapLine(t *testing.T, addr string) (string, *bufio.Reader, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	if strings.HasPrefix(line, "* OK") {
		_, err := fmt.Fprintf(c, "h SELECT INBOX\r\n")
		require.NoError(t, err)
		for {
			l, err := r.ReadString('\n')
			require.NoError(t, err)
			if strings.HasPrefix(l, "h ") {
				break
			}
		}
	}
	return line, r, c
}

// noop sends a NOOP with tag and reads up to its tagged answer.
func noop(t *testing.T, r *bufio.Reader, c net.Conn, tag string) string {
	t.Helper()
	_, err := fmt.Fprintf(c, "%s NOOP\r\n", tag)
	require.NoError(t, err)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, tag+" ") {
			return line
		}
	}
}

// SIGHUP reloads the whole configuration under live sessions: a kept
// listener's pool and the limits change, a listener is removed and one is
// added; the session in flight goes on with its backend, new sessions go
// to the new pool, the in-flight count carries over; a bad file and a
// change that needs a restart keep the running configuration and say why.
func TestReloadConfiguration(t *testing.T) {
	start := func(name string) string {
		sys, err := mailtest.New(mailtest.Options{Logger: discardLog()})
		require.NoError(t, err)
		a, err := sys.Start(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { sys.Close() })
		return a.IMAP
	}
	alpha, beta := start("alpha"), start("beta")
	dir := t.TempDir()
	cert := testCertFlag(t, dir)
	ports, err := testnet.FreePorts("127.0.0.1", 3)
	require.NoError(t, err)
	keep, gone, added := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	conf := filepath.Join(dir, "gateway.conf")
	write := func(lines ...string) {
		require.NoError(t, os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	}
	common := []string{"-cert " + cert + ",default", "-watch 0", "-grace 1s"}
	write(append(common,
		"-listen keep="+keep+",proto=imap,tls=starttls,mode=allow,pool=p,limit",
		"-listen gone="+gone+",proto=imap,tls=starttls,mode=allow,pool=p",
		"-backend p="+alpha+",name=alpha,probe=none",
		"-limits inflight=5")...)

	args := []string{"-config", conf}
	o, err := parseFlags(args, os.Stderr)
	require.NoError(t, err)
	logs := new(syncBuffer)
	g, err := build(o, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	g.args = args
	hup := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, g.start(ctx, hup))
	t.Cleanup(func() { cancel(); g.shutdown(5 * time.Second) })
	sighup := func(want string) {
		t.Helper()
		before := strings.Count(logs.String(), want)
		hup <- syscall.SIGHUP
		testnet.WaitFor(t, 10*time.Second, want, func() bool { return strings.Count(logs.String(), want) > before })
	}

	// A live session on the kept listener, on alpha.
	_, liveR, live := imapLine(t, keep)
	assert.Contains(t, noop(t, liveR, live, "a"), "a OK")
	_, gr, gc := imapLine(t, gone)
	assert.Contains(t, noop(t, gr, gc, "g"), "g OK")

	write(append(common,
		"-listen keep="+keep+",proto=imap,tls=starttls,mode=allow,pool=q,limit",
		"-listen added="+added+",proto=imap,tls=starttls,mode=allow,pool=q",
		"-backend q="+beta+",name=beta,probe=none",
		"-limits inflight=2")...)
	sighup("configuration reloaded")
	assert.Contains(t, logs.String(), `msg="certificates reloaded"`, "the certificates too")

	// The session in flight goes on, on alpha.
	assert.Contains(t, noop(t, liveR, live, "b"), "b OK")
	// A new session on the kept listener goes to beta; the live one
	// still counts, so a third is over inflight=2.
	_, nr, nc := imapLine(t, keep)
	assert.Contains(t, noop(t, nr, nc, "n"), "n OK")
	refused, _, _ := imapLine(t, keep)
	assert.True(t, strings.HasPrefix(refused, "* BYE"), "over the carried-over in-flight count: %q", refused)
	for _, c := range []net.Conn{nc, live} {
		fmt.Fprintf(c, "z LOGOUT\r\n")
		c.Close()
	}
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	testnet.WaitFor(t, 10*time.Second, "the sessions' lines", func() bool {
		return regexp.MustCompile(`listener=keep .*backend=beta`).MatchString(logs.String()) &&
			regexp.MustCompile(`listener=keep .*backend=alpha`).MatchString(logs.String())
	})
	// The added listener serves; the removed one is closed, and its
	// session was cut after -grace.
	_, ar, ac := imapLine(t, added)
	assert.Contains(t, noop(t, ar, ac, "x"), "x OK")
	_, err = net.DialTimeout("tcp", gone, time.Second)
	assert.Error(t, err, "the removed listener is closed")
	testnet.WaitFor(t, 10*time.Second, "the removed listener's session cut after -grace", func() bool {
		return strings.Contains(logs.String(), "sessions of a removed listener closed")
	})
	// Every session of the first generation has ended: the gateway keeps
	// nothing of it.
	testnet.WaitFor(t, 10*time.Second, "the first generation forgotten", func() bool {
		g.mu.RLock()
		defer g.mu.RUnlock()
		return len(g.retired) == 0
	})

	// A bad file: the running configuration stays, and the log says where.
	write(append(common, "-listen keep="+keep+",proto=imap,tls=starttls,mode=allow,pool=q", "-grace soon")...)
	sighup("reload failed")
	assert.Contains(t, logs.String(), "gateway.conf:5")
	_, kr, kc := imapLine(t, keep)
	assert.Contains(t, noop(t, kr, kc, "k"), "k OK")
	_, ar2, ac2 := imapLine(t, added)
	assert.Contains(t, noop(t, ar2, ac2, "y"), "y OK", "the added listener still serves")

	// An option bound to the process: refused, nothing changes.
	write(append(common,
		"-listen keep="+keep+",proto=imap,tls=starttls,mode=allow,pool=q",
		"-backend q="+beta+",name=beta,probe=none", "-replica other")...)
	sighup("reload failed")
	assert.Contains(t, logs.String(), "-replica changed, which needs a restart")
	assert.Equal(t, 2, len(g.addrs()), "keep and added")
}
