//go:build unix

package integration_test

import (
	"context"
	"io"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sclient drives "openssl s_client" as an interactive client: lines go to
// its stdin when the expected answer has appeared on its stdout.
type sclient struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *logbook
	next  int // index of the first output line not yet consumed
	done  chan struct{}
	close context.CancelFunc
}

func startSClient(t *testing.T, e *env, addr, name string, extra ...string) *sclient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	args := append([]string{"s_client", "-connect", addr, "-servername", name, "-bind", clientIP + ":0",
		"-CAfile", e.caFile, "-verify_return_error", "-crlf", "-ign_eof"}, extra...)
	cmd := exec.CommandContext(ctx, "openssl", args...)
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	s := &sclient{t: t, cmd: cmd, in: in, out: newLogbook(io.Discard), done: make(chan struct{}), close: cancel}
	require.NoError(t, cmd.Start())
	go func() {
		s.out.consume(stdout)
		cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		in.Close()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
		cancel()
		<-s.done
	})
	return s
}

// expect waits for an output line matching pattern and returns it.
func (s *sclient) expect(pattern string) string {
	s.t.Helper()
	p := regexp.MustCompile(pattern)
	line := s.out.wait(s.t, s.next, 20*time.Second, p)
	_, i, _ := s.out.find(s.next, p)
	s.next = i + 1
	return line
}

func (s *sclient) send(line string) {
	s.t.Helper()
	_, err := io.WriteString(s.in, line+"\n")
	require.NoError(s.t, err)
}

// TestOpenSSLSNI connects to the IMAPS listener once per SNI name with
// certificate verification against the suite's CA: each name must get its
// own certificate, and the session must log in and read.
func TestOpenSSLSNI(t *testing.T) {
	e := need(t)
	for _, name := range sniNames {
		t.Run(name, func(t *testing.T) {
			s := startSClient(t, e, e.gw.addr["imaps"], name)
			s.expect(`^subject=CN ?= ?` + regexp.QuoteMeta(name) + `$`)
			s.expect(`Verify return code: 0 \(ok\)`)
			s.expect(`^\* OK`)
			s.send("a LOGIN " + user + " " + pass)
			s.expect(`^a OK`)
			s.send("b SELECT INBOX")
			s.expect(`^\* \d+ EXISTS`)
			s.expect(`^b OK`)
			s.send("c LOGOUT")
			s.expect(`^c OK`)
		})
	}
}

// TestOpenSSLSTARTTLS uses s_client's -starttls for SMTP (submission:
// AUTH and a message), IMAP and POP3 (log in and read).
func TestOpenSSLSTARTTLS(t *testing.T) {
	e := need(t)
	tok := token("openssl")
	t.Run("smtp", func(t *testing.T) {
		s := startSClient(t, e, e.gw.addr["submission"], sniNames[1], "-starttls", "smtp")
		s.expect(`^subject=CN ?= ?` + regexp.QuoteMeta(sniNames[1]) + `$`)
		s.expect(`Verify return code: 0 \(ok\)`)
		// s_client already sent its EHLO; the next one goes to Postfix.
		s.send("EHLO client.example")
		s.expect(`^250 `)
		s.send("AUTH PLAIN AGRlbW9AZXhhbXBsZS5jb20AZGVtbw==") // \0demo@example.com\0demo
		s.expect(`^235 `)
		s.send("mail from:<" + user + ">") // lower case: s_client treats a leading R or Q as a command
		s.expect(`^250 `)
		s.send("rcpt to:<" + user + ">")
		s.expect(`^250 `)
		s.send("data")
		s.expect(`^354 `)
		s.send("Subject: " + tok + "\n\nbody line for " + tok + "\n.. a dot-stuffed line\n.")
		s.expect(`^250 .*queued`)
		s.send("quit")
		s.expect(`^221 `)
		assertDelivered(t, e, tok, wireDot)
	})
	for _, tt := range []struct {
		proto, listener, login, loggedIn, read, readOK string
	}{
		{"imap", "imap", "a LOGIN " + user + " " + pass, `^a OK`, "b SEARCH SUBJECT " + tok, `^\* SEARCH \d+`},
		{"pop3", "pop3", "USER " + user, `^\+OK`, "", ""},
	} {
		t.Run(tt.proto, func(t *testing.T) {
			s := startSClient(t, e, e.gw.addr[tt.listener], sniNames[2], "-starttls", tt.proto)
			s.expect(`^subject=CN ?= ?` + regexp.QuoteMeta(sniNames[2]) + `$`)
			s.expect(`Verify return code: 0 \(ok\)`)
			s.send(tt.login)
			s.expect(tt.loggedIn)
			if tt.proto == "pop3" {
				s.send("PASS " + pass)
				s.expect(`^\+OK`)
				s.send("STAT")
				line := s.expect(`^\+OK \d+ \d+`)
				assert.NotEqual(t, "+OK 0 0", line)
				s.send("QUIT")
				return
			}
			s.send("s EXAMINE INBOX")
			s.expect(`^s OK`)
			s.send(tt.read)
			s.expect(tt.readOK)
			s.send("c LOGOUT")
			s.expect(`^c OK`)
		})
	}
}
