package bridge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

// newIMAPGuardPair returns the two directions of GuardIMAP of one session,
// writing into toServer and toClient.
func newIMAPGuardPair(toServer, toClient io.Writer, done <-chan struct{}) (client, server *imapGuard) {
	s := newIMAPSync(done)
	return &imapGuard{out: outbuf{w: toServer}, sync: s, client: true, start: true},
		&imapGuard{out: outbuf{w: toClient}, sync: s, start: true}
}

// TestIMAPGuardRefusedLiteral: after a synchronising literal the server
// refused with a tagged NO, the client's next bytes are a command, and a
// STARTTLS among them is renamed; after a "+" they are data, passed as
// they are. Untagged data and other tags decide nothing.
func TestIMAPGuardRefusedLiteral(t *testing.T) {
	for _, tc := range []struct {
		name, answer, want string
	}{
		{"refused", "* 3 EXISTS\r\nzz OK other\r\na NO [TOOBIG] no\r\n", "a APPEND x {12}\r\nb " + imapRefused + "\r\n"},
		{"bad", "a BAD no\r\n", "a APPEND x {12}\r\nb " + imapRefused + "\r\n"},
		{"accepted", "* 3 EXISTS\r\n+ go\r\n", "a APPEND x {12}\r\nb STARTTLS\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			defer close(done)
			var up, down bytes.Buffer
			c, s := newIMAPGuardPair(&up, &down, done)
			require.NoError(t, c.write([]byte("a APPEND x {12}\r\n")))
			assert.Equal(t, "a APPEND x {12}\r\n", up.String(), "the announcing line goes out before the wait")
			require.NoError(t, s.write([]byte(tc.answer)))
			require.NoError(t, c.write([]byte("b STARTTLS\r\n")))
			assert.Equal(t, tc.want, up.String())
			assert.Equal(t, tc.answer, down.String(), "answers pass unchanged")
		})
	}
}

// TestIMAPGuardLiteralWaitEnds: a client waiting for the verdict is
// released by the teardown and by the server side's end.
func TestIMAPGuardLiteralWaitEnds(t *testing.T) {
	done := make(chan struct{})
	var up, down bytes.Buffer
	c, s := newIMAPGuardPair(&up, &down, done)
	require.NoError(t, c.write([]byte("a APPEND x {3}\r\n")))
	s.closed()
	require.NoError(t, c.write([]byte("abc\r\n")), "with the server gone the bytes pass as data")
	assert.Equal(t, "a APPEND x {3}\r\nabc\r\n", up.String())

	up.Reset()
	c, s = newIMAPGuardPair(&up, &down, done)
	s.closed() // the server side ends first
	require.NoError(t, c.write([]byte("a APPEND x {3}\r\nabc\r\n")))
	assert.Equal(t, "a APPEND x {3}\r\nabc\r\n", up.String())

	up.Reset()
	c, _ = newIMAPGuardPair(&up, &down, done)
	require.NoError(t, c.write([]byte("a APPEND x {3}\r\n")))
	close(done)
	assert.Error(t, c.write([]byte("abc\r\n")))
}

// TestIMAPGuardLiteralLoopback drives a session through Join: a refused
// literal whose bytes would read "s STARTTLS" is followed by a real
// STARTTLS command, which the backend must see renamed; an accepted one
// carries the same bytes as data.
func TestIMAPGuardLiteralLoopback(t *testing.T) {
	leaktest.Check(t)
	l := startJoin(t, context.Background(), false, Options{Guard: GuardIMAP})
	served := make(chan struct{})
	go func() { defer close(served); scriptedIMAP(l.backend, imapBody) }()
	r := bufio.NewReader(l.client)
	readUntil := func(tag string) string {
		var all string
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err, "after %q", all)
			all += line
			if strings.HasPrefix(line, tag+" ") || strings.HasPrefix(line, "+ ") {
				return all
			}
		}
	}
	send := func(s string) {
		_, err := io.WriteString(l.client, s)
		require.NoError(t, err)
	}
	const data = "s STARTTLS\r\n" // 12 bytes
	send("r APPEND REFUSED {12}\r\n")
	assert.Equal(t, "r NO [TOOBIG] refused\r\n", readUntil("r"))
	send(data)
	assert.Equal(t, "s BAD unknown command\r\n", readUntil("s"), "STARTTLS after a refused literal is renamed")

	send("p APPEND INBOX {12}\r\n")
	assert.Equal(t, "+ go ahead\r\n", readUntil("p"))
	send(data + "\r\n")
	assert.Equal(t, "p OK got "+strconv.Quote(data)+"\r\n", readUntil("p"))

	send("z LOGOUT\r\n")
	assert.Equal(t, "* BYE\r\nz OK bye\r\n", readUntil("z"))
	<-served
	l.client.Close()
	<-l.done
}
