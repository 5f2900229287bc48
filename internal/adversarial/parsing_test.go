package adversarial_test

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/starttls"
)

// TestParsing is class D: the pre-TLS parser of starttls.Server under
// nginx's mail_*.t cases (long pipelining, "a01 INVALID", max_errors, line
// limits), IMAP literals (CVE-2019-11500's class: bytes inside a literal are
// data, never commands) and memory bounds. The SMTP DATA framing of
// bridge's inspector is in smuggling_test.go.
func TestParsing(t *testing.T) {
	for _, proto := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		t.Run("D1_"+strings.ToUpper(proto.String())+"_long_pipelined", func(t *testing.T) { testLongPipelined(t, proto) })
	}
	t.Run("D2_IMAP_invalid_then_NOOP", testIMAPInvalidThenNOOP)
	t.Run("D3_IMAP_literals", testIMAPLiterals)
	for _, proto := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		t.Run("D4_"+strings.ToUpper(proto.String())+"_line_length_limit_and_resync", func(t *testing.T) { testLineLimit(t, proto, 0) })
	}
	t.Run("D4_SMTP_configured_line_length_limit", func(t *testing.T) { testLineLimit(t, starttls.SMTP, 100) })
	t.Run("D5_memory_bounded_without_CRLF", testNoCRLF)
	for _, proto := range []starttls.Protocol{starttls.SMTP, starttls.IMAP, starttls.POP3} {
		t.Run("D6_"+strings.ToUpper(proto.String())+"_max_errors_in_one_write", func(t *testing.T) { testMaxErrors(t, proto) })
	}
}

// noop returns the n-th NOOP command of proto and the prefix of its answer.
func noop(proto starttls.Protocol, n int) (cmd, ok string) {
	if proto == starttls.IMAP {
		tag := fmt.Sprintf("t%05d", n)
		return tag + " NOOP\r\n", tag + " OK"
	}
	return "NOOP\r\n", map[starttls.Protocol]string{starttls.SMTP: "250", starttls.POP3: "+OK"}[proto]
}

// testLongPipelined writes 3000 commands (about 20-40 KB, several read
// buffers) in one write; every one is answered, in order.
func testLongPipelined(t *testing.T, proto starttls.Protocol) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: proto, TLSConfig: p.server, MaxCommands: -1}, false)
	c := dialConv(t, addr)
	c.must()
	const n = 3000
	var b strings.Builder
	for i := range n {
		cmd, _ := noop(proto, i)
		b.WriteString(cmd)
	}
	go io.WriteString(c.c, b.String()) // may block until replies are read
	for i := range n {
		_, ok := noop(proto, i)
		line := c.must()
		if !assert.True(t, strings.HasPrefix(line, ok), "reply %d: got %q; want %q", i, line, ok) {
			break
		}
	}
	c.c.Close()
	assert.Error(t, result(t, results).err)
}

func testIMAPInvalidThenNOOP(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.IMAP, TLSConfig: p.server}, false)
	c := dialConv(t, addr)
	c.must()
	c.send("a01 INVALID command\r\na02 NOOP\r\n")
	assert.True(t, strings.HasPrefix(c.must(), "a01 BAD"))
	assert.True(t, strings.HasPrefix(c.must(), "a02 OK"))
	c.c.Close()
	result(t, results)
}

// testIMAPLiterals: a synchronising literal is answered at once (refused
// or "+ "), never left waiting; a non-synchronising literal's bytes are
// data even when they look like commands.
func testIMAPLiterals(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.IMAP, TLSConfig: p.server}, false)
	c := dialConv(t, addr)
	c.must()

	c.send("a01 ID {5}\r\n")
	answer := c.must()
	if strings.HasPrefix(answer, "+") {
		c.send("hello)\r\n")
		answer = c.must()
	}
	assert.True(t, strings.HasPrefix(answer, "a01 "), "synchronising literal: got %q", answer)
	c.send("a02 NOOP\r\n")
	assert.True(t, strings.HasPrefix(c.must(), "a02 OK"))

	// The literal holds a LOGOUT: it must not run.
	c.send("a03 ID {12+}\r\nb01 LOGOUT\r\n\r\na04 NOOP\r\n")
	var got []string
	for {
		l := c.must()
		got = append(got, l)
		if strings.HasPrefix(l, "a04 ") {
			break
		}
	}
	for _, l := range got {
		assert.False(t, strings.HasPrefix(l, "b01 ") || strings.HasPrefix(l, "* BYE"), "literal data ran as a command: %q", got)
	}
	assert.True(t, strings.HasPrefix(got[len(got)-1], "a04 OK"), "%q", got)

	// A large non-synchronising literal full of commands: none may run,
	// whether the server discards it or closes.
	c.send("a05 ID {20000+}\r\n" + strings.Repeat("b02 LOGOUT\r\n", 20000/12) + strings.Repeat("x", 20000%12) + "\r\na06 NOOP\r\n")
	rest := ""
	for {
		l, err := c.line()
		rest += l
		if err != nil || strings.HasPrefix(l, "a06 ") {
			break
		}
	}
	assert.NotContains(t, rest, "b02 ", "literal data ran as a command")
	c.c.Close()
	result(t, results)
}

// testLineLimit: a line of exactly the limit (CRLF included) is accepted,
// one octet more is answered with an error, and the next command works.
func testLineLimit(t *testing.T, proto starttls.Protocol, limit int) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: proto, TLSConfig: p.server, MaxLineLength: limit}, false)
	if limit == 0 {
		limit = map[starttls.Protocol]int{starttls.SMTP: 512, starttls.IMAP: 8192, starttls.POP3: 255}[proto]
	}
	c := dialConv(t, addr)
	c.must()
	cmd, ok := noop(proto, 1)
	pad := func(n int) string { // a NOOP of n octets with its CRLF
		base := strings.TrimSuffix(cmd, "\r\n")
		if proto == starttls.IMAP {
			return base + " " + strings.Repeat("x", n-len(base)-3) + "\r\n"
		}
		return base + " " + strings.Repeat("x", n-len(base)-3) + "\r\n"
	}
	c.send(pad(limit))
	atLimit := c.must()
	c.send(pad(limit + 1))
	over := c.must()
	c.send(cmd)
	after := c.must()
	wantErr := map[starttls.Protocol][]string{starttls.SMTP: {"500", "501"}, starttls.IMAP: {"* BAD", "t00001 BAD", "* NO"}, starttls.POP3: {"-ERR"}}[proto]
	assert.False(t, strings.HasPrefix(over, ok), "over-long line accepted: %q", over)
	assert.True(t, hasAnyPrefix(over, wantErr...), "over-long line: got %q; want one of %v", over, wantErr)
	assert.True(t, strings.HasPrefix(after, ok), "no resynchronisation: got %q", after)
	c.c.Close()
	result(t, results)
	// NOOP with an argument is itself a syntax error in POP3 and SMTP;
	// what matters is that the server answered the line at the limit as a
	// line rather than as an over-long one.
	assert.NotEqual(t, over, atLimit, "the line at the limit was treated as over-long")
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// testNoCRLF streams 8 MiB without a line feed. The server must not
// buffer it: the process allocates far less than it receives.
func testNoCRLF(t *testing.T) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: starttls.SMTP, TLSConfig: p.server}, false)
	c := dialConv(t, addr)
	c.must()
	chunk := []byte(strings.Repeat("A", 64<<10))
	const total = 8 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sent := 0
	for sent < total {
		n, err := c.c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	c.c.Write([]byte("\r\nNOOP\r\n"))
	reply := c.rest()
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("sent %d bytes without LF; server answered %q; process allocated %d bytes meanwhile", sent, reply, alloc)
	assert.Less(t, alloc, uint64(total/2), "the server buffered the endless line")
	assert.NotContains(t, reply, "\n250 ", "after an 8 MiB line, its tail ran as a command")
	result(t, results)
}

// testMaxErrors: with MaxErrors 3 the third bad command in one write gets
// the closing reply and the NOOP after it is never answered (nginx
// max_errors).
func testMaxErrors(t *testing.T, proto starttls.Protocol) {
	leaktest.Check(t)
	p := newPKI(t)
	addr, results := serveStartTLS(t, &starttls.Server{Protocol: proto, TLSConfig: p.server, MaxErrors: 3}, false)
	c := dialConv(t, addr)
	c.must()
	bad := "XBAD1\r\nXBAD2\r\nXBAD3\r\n"
	if proto == starttls.IMAP {
		bad = "x1 XBAD\r\nx2 XBAD\r\nx3 XBAD\r\n"
	}
	cmd, ok := noop(proto, 9)
	c.send(bad + cmd)
	rest := c.rest()
	lines := strings.SplitAfter(strings.TrimSuffix(rest, "\r\n"), "\r\n")
	closing := map[starttls.Protocol]string{starttls.SMTP: "421", starttls.IMAP: "* BYE", starttls.POP3: "-ERR"}[proto]
	assert.True(t, strings.HasPrefix(lines[len(lines)-1], closing), "last reply %q; want %q", lines[len(lines)-1], closing)
	assert.NotContains(t, rest, "\n"+ok, "a command after the Nth error was answered")
	assert.LessOrEqual(t, len(lines), 4, "%q", rest)
	assert.ErrorIs(t, result(t, results).err, starttls.ErrTooManyErrors)
	require.NotEmpty(t, lines)
}
