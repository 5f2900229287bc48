//go:build unix

package integration_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wire is a line dialogue with a server, for the tests that need to see
// exact replies.
type wire struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dialFrom connects to addr from the source address src.
func dialFrom(ctx context.Context, src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// dialWire connects from clientIP (src if given) to addr, with implicit
// TLS for serverName if it is not empty.
func dialWire(t testing.TB, addr, serverName string, src ...string) *wire {
	t.Helper()
	from := clientIP
	if len(src) > 0 {
		from = src[0]
	}
	c, err := dialFrom(context.Background(), from, addr)
	require.NoError(t, err)
	w := &wire{t: t, conn: c}
	if serverName != "" {
		tc := tls.Client(c, suite.tlsConfig(serverName))
		require.NoError(t, tc.Handshake())
		w.conn = tc
	}
	w.conn.SetDeadline(time.Now().Add(20 * time.Second))
	w.r = bufio.NewReader(w.conn)
	t.Cleanup(func() { w.conn.Close() })
	return w
}

// startTLS switches the dialogue to TLS for serverName.
func (w *wire) startTLS(serverName string) {
	w.t.Helper()
	require.Zero(w.t, w.r.Buffered(), "bytes after the STARTTLS answer")
	tc := tls.Client(w.conn, suite.tlsConfig(serverName))
	require.NoError(w.t, tc.Handshake())
	w.conn = tc
	w.conn.SetDeadline(time.Now().Add(20 * time.Second))
	w.r = bufio.NewReader(tc)
}

func (w *wire) send(line string) {
	w.t.Helper()
	_, err := w.conn.Write([]byte(line + "\r\n"))
	require.NoError(w.t, err)
}

func (w *wire) line() string {
	w.t.Helper()
	s, err := w.r.ReadString('\n')
	require.NoError(w.t, err, "after %q", s)
	return strings.TrimRight(s, "\r\n")
}

// until reads lines up to and including the first starting with prefix and
// returns them all.
func (w *wire) until(prefix string) []string {
	w.t.Helper()
	var out []string
	for {
		l := w.line()
		out = append(out, l)
		if strings.HasPrefix(l, prefix) {
			return out
		}
	}
}

// smtpReply reads one (possibly multiline) SMTP reply.
func (w *wire) smtpReply() []string {
	w.t.Helper()
	var out []string
	for {
		l := w.line()
		out = append(out, l)
		if len(l) < 4 || l[3] != '-' {
			return out
		}
	}
}

func (e *env) tlsConfig(serverName string) *tls.Config {
	return &tls.Config{ServerName: serverName, RootCAs: e.ca.Pool(), MinVersion: tls.VersionTLS12}
}

// token returns a unique word for a message, so a test finds its own mail.
func token(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// waitFileWith waits until a file under dir contains s and returns its
// content. It polls: the servers write mail and logs without telling us.
func waitFileWith(t testing.TB, dir, s string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var found string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || found != "" {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
				found = string(b)
			}
			return nil
		})
		if found != "" {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("no file under %s contains %q after %v", dir, s, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLogLine waits until a line of the file at path contains every one of
// parts, and returns it.
func waitLogLine(t testing.TB, path string, limit time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if containsAll(l, parts) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line of %s contains all of %q after %v%s", path, parts, limit, tail(path, 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// maildir is where the demo account's mail is delivered.
func (e *env) maildir() string { return filepath.Join(e.home, user, "Maildir") }

// run runs a client program with a deadline and returns its combined output.
func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	require.NoError(t, err, "%s %s\n%s", name, strings.Join(args, " "), out)
	return out
}

// hostPort splits a listener address into host and port.
func hostPort(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

// readFile returns the file's content, or "" if it cannot be read.
func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// close ends the client side of the dialogue.
func (w *wire) close() { w.conn.Close() }
