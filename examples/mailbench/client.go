package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errReply is wrapped by every error about an unexpected server reply.
var errReply = errors.New("mailbench: unexpected reply")

// target is the endpoint under test and how to talk to it.
type target struct {
	Addr    string
	Proto   string // imap, smtp, pop3
	TLS     string // implicit, starttls, or passthrough (implicit TLS with a tenant's server behind an SNI passthrough)
	User    string
	Pass    string
	Timeout time.Duration // per operation
	Seen    *tlsSeen      // records each handshake's parameters; may be nil
}

// tlsSeen collects what the handshakes of one test negotiated, so that a
// row says which key exchange and version the proxy chose for the client
// (a peer without ML-KEM answers an ML-KEM client with X25519). The zero
// value is ready; a nil *tlsSeen records nothing.
type tlsSeen struct {
	mu       sync.Mutex
	kex      map[string]int
	versions map[string]int
}

func (t *tlsSeen) add(cs tls.ConnectionState) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kex == nil {
		t.kex, t.versions = make(map[string]int), make(map[string]int)
	}
	t.kex[cs.CurveID.String()]++
	t.versions[tls.VersionName(cs.Version)]++
}

func (t *tlsSeen) reset() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.kex, t.versions = nil, nil
	t.mu.Unlock()
}

// names returns the key exchanges and versions seen, each sorted and
// joined with "+" ("X25519MLKEM768", "TLS 1.3"; "" when none).
func (t *tlsSeen) names() (kex, version string) {
	if t == nil {
		return "", ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	join := func(m map[string]int) string { return strings.Join(slices.Sorted(maps.Keys(m)), "+") }
	return join(t.kex), join(t.versions)
}

// session is one client connection, after the greeting (and, for
// STARTTLS, after the upgrade and the first command over TLS).
type session struct {
	t    *target
	nc   net.Conn // the TLS conn once upgraded
	tc   *tls.Conn
	r    *bufio.Reader
	tag  int
	line []byte
}

// open dials, greets and upgrades to TLS as the target's mode says.
func (t *target) open(ctx context.Context, cfg *tls.Config) (*session, error) {
	d := net.Dialer{Timeout: t.Timeout}
	raw, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	s := &session{t: t, nc: raw}
	s.deadline()
	if t.implicit() {
		err = s.upgrade(ctx, cfg)
		if err == nil {
			err = s.greeting()
		}
	} else {
		s.r = bufio.NewReaderSize(raw, 4096)
		err = s.greeting()
		if err == nil {
			err = s.startTLS(ctx, cfg)
		}
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return s, nil
}

// implicit reports whether TLS starts with the connection: implicit TLS,
// and passthrough, which is implicit TLS whose handshake the proxy passes
// through to the backend.
func (t *target) implicit() bool { return t.TLS != "starttls" }

func (s *session) deadline() {
	s.nc.SetDeadline(time.Now().Add(s.t.Timeout))
}

func (s *session) upgrade(ctx context.Context, cfg *tls.Config) error {
	if s.r != nil && s.r.Buffered() > 0 {
		return fmt.Errorf("%w: data after the STARTTLS answer", errReply)
	}
	s.tc = tls.Client(s.nc, cfg)
	if err := s.tc.HandshakeContext(ctx); err != nil {
		return err
	}
	s.t.Seen.add(s.tc.ConnectionState())
	s.nc = s.tc
	s.r = bufio.NewReaderSize(s.tc, 16<<10)
	return nil
}

// close ends the session without a logout: the cheapest end, the same for
// every peer.
func (s *session) close() { s.nc.Close() }

// resumed reports whether the TLS handshake resumed a session.
func (s *session) resumed() bool { return s.tc != nil && s.tc.ConnectionState().DidResume }

// readLine returns the next line without CRLF; valid until the next read.
func (s *session) readLine() (string, error) {
	line, err := s.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

func (s *session) send(format string, args ...any) error {
	s.line = fmt.Appendf(s.line[:0], format, args...)
	s.line = append(s.line, '\r', '\n')
	_, err := s.nc.Write(s.line)
	return err
}

// greeting reads the server's first words.
func (s *session) greeting() error {
	switch s.t.Proto {
	case "smtp":
		_, err := s.smtpReply(220)
		return err
	case "pop3":
		return s.pop3OK()
	}
	l, err := s.readLine()
	if err == nil && !strings.HasPrefix(l, "* OK") {
		err = fmt.Errorf("%w: greeting %q", errReply, l)
	}
	return err
}

// startTLS runs the protocol's STARTTLS dialogue, the handshake, and the
// first command after it, which goes through to the backend.
func (s *session) startTLS(ctx context.Context, cfg *tls.Config) error {
	var err error
	switch s.t.Proto {
	case "smtp":
		err = s.smtpCmd(250, "EHLO mailbench.invalid")
		if err == nil {
			err = s.smtpCmd(220, "STARTTLS")
		}
	case "pop3":
		err = s.send("STLS")
		if err == nil {
			err = s.pop3OK()
		}
	default:
		err = s.imapCmd("STARTTLS")
	}
	if err != nil {
		return err
	}
	if err := s.upgrade(ctx, cfg); err != nil {
		return err
	}
	return s.firstCommand()
}

// firstCommand asks for capabilities (EHLO, CAPA, CAPABILITY): what a
// client sends first after TLS, through the proxy to the backend.
func (s *session) firstCommand() error {
	switch s.t.Proto {
	case "smtp":
		return s.smtpCmd(250, "EHLO mailbench.invalid")
	case "pop3":
		return s.pop3Multi("CAPA")
	}
	return s.imapCmd("CAPABILITY")
}

// imapCmd sends a tagged command and reads up to its tagged OK.
func (s *session) imapCmd(format string, args ...any) error {
	s.tag++
	tag := "a" + strconv.Itoa(s.tag)
	if err := s.send(tag+" "+format, args...); err != nil {
		return err
	}
	return s.imapTagged(tag)
}

func (s *session) imapTagged(tag string) error {
	for {
		l, err := s.readLine()
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return fmt.Errorf("%w: %q", errReply, l)
			}
			return nil
		}
	}
}

// smtpReply reads one (multi-line) reply and checks its code.
func (s *session) smtpReply(want int) (string, error) {
	for {
		l, err := s.readLine()
		if err != nil {
			return "", err
		}
		if len(l) < 3 || l[:3] != strconv.Itoa(want) {
			return "", fmt.Errorf("%w: %q, want %d", errReply, l, want)
		}
		if len(l) == 3 || l[3] == ' ' {
			return l, nil
		}
	}
}

func (s *session) smtpCmd(want int, format string, args ...any) error {
	if err := s.send(format, args...); err != nil {
		return err
	}
	_, err := s.smtpReply(want)
	return err
}

func (s *session) pop3OK() error {
	l, err := s.readLine()
	if err == nil && !strings.HasPrefix(l, "+OK") {
		err = fmt.Errorf("%w: %q", errReply, l)
	}
	return err
}

// pop3Multi sends cmd and reads a multi-line answer up to ".".
func (s *session) pop3Multi(cmd string) error {
	if err := s.send("%s", cmd); err != nil {
		return err
	}
	if err := s.pop3OK(); err != nil {
		return err
	}
	for {
		l, err := s.readLine()
		if err != nil || l == "." {
			return err
		}
	}
}

// login authenticates (and, for SMTP, says EHLO first).
func (s *session) login() error {
	s.deadline()
	switch s.t.Proto {
	case "smtp":
		if s.t.implicit() {
			if err := s.smtpCmd(250, "EHLO mailbench.invalid"); err != nil {
				return err
			}
		}
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + s.t.User + "\x00" + s.t.Pass))
		return s.smtpCmd(235, "AUTH PLAIN %s", ir)
	case "pop3":
		if err := s.send("USER %s", s.t.User); err != nil {
			return err
		}
		if err := s.pop3OK(); err != nil {
			return err
		}
		if err := s.send("PASS %s", s.t.Pass); err != nil {
			return err
		}
		return s.pop3OK()
	}
	return s.imapCmd("LOGIN %s %s", s.t.User, s.t.Pass)
}

// logout says goodbye politely and waits for the answer.
func (s *session) logout() error {
	s.deadline()
	switch s.t.Proto {
	case "smtp":
		return s.smtpCmd(221, "QUIT")
	case "pop3":
		if err := s.send("QUIT"); err != nil {
			return err
		}
		return s.pop3OK()
	}
	return s.imapCmd("LOGOUT")
}

// noop is the smallest request/response of the protocol.
func (s *session) noop() error {
	s.deadline()
	switch s.t.Proto {
	case "smtp":
		return s.smtpCmd(250, "NOOP")
	case "pop3":
		if err := s.send("NOOP"); err != nil {
			return err
		}
		return s.pop3OK()
	}
	return s.imapCmd("NOOP")
}

// download asks the bulk backend for n bytes with the IMAP-like XFETCH
// command and reads them; it returns the payload bytes received.
func (s *session) download(n int64) (int64, error) {
	s.deadline()
	s.tag++
	tag := "a" + strconv.Itoa(s.tag)
	if err := s.send("%s XFETCH %d", tag, n); err != nil {
		return 0, err
	}
	l, err := s.readLine()
	if err != nil {
		return 0, err
	}
	if l != fmt.Sprintf("* XFETCH {%d}", n) {
		return 0, fmt.Errorf("%w: %q", errReply, l)
	}
	got, err := io.CopyN(io.Discard, s.r, n)
	if err != nil {
		return got, err
	}
	return got, s.imapTagged(tag)
}

// appendMessage uploads body as one message with IMAP APPEND and a
// synchronising literal, and returns the bytes sent.
func (s *session) appendMessage(body []byte) (int64, error) {
	s.deadline()
	s.tag++
	tag := "a" + strconv.Itoa(s.tag)
	if err := s.send("%s APPEND INBOX {%d}", tag, len(body)); err != nil {
		return 0, err
	}
	l, err := s.readLine()
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(l, "+") {
		return 0, fmt.Errorf("%w: APPEND answered %q", errReply, l)
	}
	n, err := s.nc.Write(body)
	if err == nil {
		_, err = s.nc.Write([]byte("\r\n"))
	}
	if err != nil {
		return int64(n), err
	}
	return int64(n), s.imapTagged(tag)
}

// idle starts an RFC 2177 IDLE and returns once the server accepted it
// ("+ idling"); the session then waits, as an IMAP client does between
// fetches, until it is closed.
func (s *session) idle() error {
	if s.t.Proto != "imap" {
		return fmt.Errorf("IDLE is an IMAP command, not %s", s.t.Proto)
	}
	s.deadline()
	s.tag++
	if err := s.send("a%d IDLE", s.tag); err != nil {
		return err
	}
	l, err := s.readLine()
	if err == nil && !strings.HasPrefix(l, "+") {
		err = fmt.Errorf("%w: IDLE answered %q", errReply, l)
	}
	return err
}

// upload sends body as one message with SMTP DATA and returns the body
// bytes sent.
func (s *session) upload(body []byte) (int64, error) {
	s.deadline()
	for _, c := range []struct {
		code int
		cmd  string
	}{{250, "MAIL FROM:<bench@mailbench.invalid>"}, {250, "RCPT TO:<sink@mailbench.invalid>"}, {354, "DATA"}} {
		if err := s.smtpCmd(c.code, "%s", c.cmd); err != nil {
			return 0, err
		}
	}
	n, err := s.nc.Write(body)
	if err != nil {
		return int64(n), err
	}
	return int64(n), s.smtpCmd(250, ".")
}

// uploadBody returns a message body of 1000-octet lines (RFC 5321's
// limit), none starting with a dot, of size rounded down to whole lines
// (at least one).
func uploadBody(size int) []byte {
	line := strings.Repeat("x", 998) + "\r\n"
	return []byte(strings.Repeat(line, max(1, size/len(line))))
}
