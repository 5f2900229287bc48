package bridge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newPOP3Guard returns both directions of GuardPOP3, writing into the two
// buffers.
func newPOP3Guard(toServer, toClient io.Writer) (*pop3Commands, *pop3Responses) {
	st := &pop3State{}
	return &pop3Commands{out: outbuf{w: toServer}, st: st}, &pop3Responses{out: outbuf{w: toClient}, st: st}
}

func TestPOP3KindOf(t *testing.T) {
	for _, tc := range []struct {
		verb string
		args bool
		want pop3Kind
	}{
		{"CAPA", false, pop3Capa},
		{"capa", false, pop3Capa},
		{"RETR", true, pop3Multi},
		{"TOP", true, pop3Multi},
		{"LIST", false, pop3Multi},
		{"LIST", true, pop3Single},
		{"uidl", false, pop3Multi},
		{"UIDL", true, pop3Single},
		{"AUTH", false, pop3Multi},
		{"AUTH", true, pop3Auth},
		{"STAT", false, pop3Single},
		{"STLS", false, pop3Single},
		{"", false, pop3Single},
	} {
		t.Run(tc.verb+map[bool]string{true: "_args"}[tc.args], func(t *testing.T) {
			assert.Equal(t, tc.want, pop3KindOf([]byte(tc.verb), tc.args))
		})
	}
}

func TestPOP3Commands(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"STLS", "STLS\r\n", pop3Refused + "\r\n"},
		{"lower case and spaces", "stls  \r\n", pop3Refused + "  \r\n"},
		{"argument", "STLS x\r\n", pop3Refused + " x\r\n"},
		{"bare LF", "STLS\n", pop3Refused + "\n"},
		{"other", "STAT\r\n", "STAT\r\n"},
		{"prefix", "STLSX\r\n", "STLSX\r\n"},
		{"leading space", " STLS\r\n", " STLS\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c, _ := newPOP3Guard(&buf, io.Discard)
			assert.Equal(t, tc.want, feed(t, c, &buf, tc.line))
		})
	}
}

// pop3Commands and pop3Responses form one pipelined session (RFC 2449):
// bodies hold look-alikes that must pass untouched.
const (
	pop3Commands1 = "CAPA\r\nRETR 1\r\nLIST\r\nLIST 1\r\nTOP 1 0\r\nSTLS\r\nAUTH\r\nCAPA\r\nRETR 9\r\nUIDL\r\n"
	pop3Sent1     = "CAPA\r\nRETR 1\r\nLIST\r\nLIST 1\r\nTOP 1 0\r\n" + pop3Refused + "\r\nAUTH\r\nCAPA\r\nRETR 9\r\nUIDL\r\n"
	pop3Replies1  = "+OK capa\r\nTOP\r\nSTLS\r\nstls \r\nUSER\r\n.\r\n" +
		"+OK 40 octets\r\nSTLS\r\n..\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n{5}\r\n.\r\n" +
		"+OK list\r\n1 40\r\n.\r\n" +
		"+OK 1 40\r\n" +
		"+OK top\r\nSTLS\r\n.\r\n" +
		"-ERR unknown command\r\n" +
		"+OK mechanisms\r\nSTLS\r\n.\r\n" +
		"+OK\r\nSTLS\r\n.\r\n" +
		"-ERR no such message\r\n" +
		"+OK\r\n1 abc\r\n.\r\n"
	pop3Got1 = "+OK capa\r\nTOP\r\nUSER\r\n.\r\n" +
		"+OK 40 octets\r\nSTLS\r\n..\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n{5}\r\n.\r\n" +
		"+OK list\r\n1 40\r\n.\r\n" +
		"+OK 1 40\r\n" +
		"+OK top\r\nSTLS\r\n.\r\n" +
		"-ERR unknown command\r\n" +
		"+OK mechanisms\r\nSTLS\r\n.\r\n" +
		"+OK\r\n.\r\n" +
		"-ERR no such message\r\n" +
		"+OK\r\n1 abc\r\n.\r\n"
)

// TestPOP3GuardSplits runs the session with the commands first and the
// responses split in two at every position, then one byte per write.
func TestPOP3GuardSplits(t *testing.T) {
	run := func(pieces []string) (string, string) {
		var up, down bytes.Buffer
		c, r := newPOP3Guard(&up, &down)
		feed(t, c, &up, pop3Commands1)
		return up.String(), feed(t, r, &down, pieces...)
	}
	for i := 0; i <= len(pop3Replies1); i++ {
		sent, got := run([]string{pop3Replies1[:i], pop3Replies1[i:]})
		assert.Equal(t, pop3Sent1, sent)
		assert.Equal(t, pop3Got1, got, "split at %d", i)
	}
	var bytewise []string
	for i := range len(pop3Replies1) {
		bytewise = append(bytewise, pop3Replies1[i:i+1])
	}
	_, got := run(bytewise)
	assert.Equal(t, pop3Got1, got, "one byte per write")
}

// TestPOP3GuardAUTH: during a SASL exchange client lines are responses,
// not commands, and the "+ " challenges do not end it; after +OK or -ERR
// commands are counted again.
func TestPOP3GuardAUTH(t *testing.T) {
	var up, down bytes.Buffer
	c, r := newPOP3Guard(&up, &down)
	steps := []struct{ from, data, want string }{
		{"c", "AUTH PLAIN\r\n", "AUTH PLAIN\r\n"},
		{"s", "+ \r\n", "+ \r\n"},
		{"c", "Q0FQQQ==\r\n", "Q0FQQQ==\r\n"},
		{"s", "+ more\r\n", "+ more\r\n"},
		{"c", "STLS\r\n", pop3Refused + "\r\n"}, // renamed even as a SASL line
		{"s", "-ERR authentication failed\r\n", "-ERR authentication failed\r\n"},
		{"c", "AUTH X\r\n", "AUTH X\r\n"},
		{"s", "+OK\r\n", "+OK\r\n"},
		{"c", "CAPA\r\n", "CAPA\r\n"},
		{"s", "+OK\r\nSTLS\r\nSASL X\r\n.\r\n", "+OK\r\nSASL X\r\n.\r\n"},
	}
	for i, st := range steps {
		f, buf := filter(c), &up
		if st.from == "s" {
			f, buf = r, &down
		}
		buf.Reset()
		assert.Equal(t, st.want, feed(t, f, buf, st.data), "step %d", i)
	}
	assert.False(t, r.st.lost())
}

// TestPOP3GuardOutOfStep: a response nobody asked for stops the filter for
// good; STLS from the client is still renamed.
func TestPOP3GuardOutOfStep(t *testing.T) {
	for _, tc := range []struct {
		name, commands, replies string
	}{
		{"unsolicited", "", "+OK hello\r\n+OK\r\nSTLS\r\n.\r\n"},
		{"not a status line", "CAPA\r\n", "hello\r\n+OK\r\nSTLS\r\n.\r\n"},
		{"garbage in AUTH", "AUTH X\r\n", "++\r\n+OK\r\nSTLS\r\n.\r\n"},
		{"overlong status", "CAPA\r\n", "+OK " + strings.Repeat("x", 2*maxGuardLine) + "\r\nSTLS\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var up, down bytes.Buffer
			c, r := newPOP3Guard(&up, &down)
			feed(t, c, &up, tc.commands)
			for p := range chunks(tc.replies, 4096) {
				require.NoError(t, r.write([]byte(p)))
			}
			assert.Equal(t, tc.replies, down.String())
			assert.True(t, r.st.lost())
			up.Reset()
			assert.Equal(t, pop3Refused+"\r\nCAPA\r\n", feed(t, c, &up, "STLS\r\nCAPA\r\n"))
		})
	}
}

// TestPOP3GuardTooManyOwed: past maxPOP3Owed responses the guard gives up.
func TestPOP3GuardTooManyOwed(t *testing.T) {
	var up bytes.Buffer
	c, r := newPOP3Guard(&up, io.Discard)
	feed(t, c, &up, strings.Repeat("NOOP\r\n", maxPOP3Owed+1))
	assert.True(t, r.st.lost())
	assert.Empty(t, r.st.owed)
}

// scriptedPOP3 offers STLS and would accept it, and serves one message
// whose body holds look-alikes.
func scriptedPOP3(c net.Conn, body string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		var reply string
		switch strings.ToUpper(verb) {
		case "CAPA":
			reply = "+OK Capability list follows\r\nTOP\r\nSTLS\r\nUSER\r\nPIPELINING\r\n.\r\n"
		case "STLS":
			reply = "+OK Begin TLS negotiation\r\n"
		case "RETR":
			reply = "+OK message follows\r\n" + body + ".\r\n"
		case "QUIT":
			io.WriteString(c, "+OK bye\r\n")
			return
		default:
			reply = "-ERR unknown command\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// pop3Body is a dot-stuffed message body.
const pop3Body = "STLS\r\n+OK\r\n..\r\n..STLS\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n{5}\r\n"

func TestPOP3GuardLoopback(t *testing.T) {
	leaktest.Check(t)
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[useTLS], func(t *testing.T) {
			l := startJoin(t, context.Background(), useTLS, Options{Guard: GuardPOP3})
			served := make(chan struct{})
			go func() { defer close(served); scriptedPOP3(l.backend, pop3Body) }()
			r := bufio.NewReader(l.client)
			send := func(s string) {
				_, err := io.WriteString(l.client, s)
				require.NoError(t, err)
			}
			read := func(multi bool) string {
				var all string
				for {
					line, err := r.ReadString('\n')
					require.NoError(t, err, "after %q", all)
					all += line
					if !multi || line == ".\r\n" || strings.HasPrefix(line, "-ERR") {
						return all
					}
				}
			}
			for range 2 {
				send("CAPA\r\n")
				assert.Equal(t, "+OK Capability list follows\r\nTOP\r\nUSER\r\nPIPELINING\r\n.\r\n", read(true))
			}
			send("STLS\r\n")
			assert.Equal(t, "-ERR unknown command\r\n", read(false))
			send("RETR 1\r\nCAPA\r\nstls\r\n") // pipelined
			assert.Equal(t, "+OK message follows\r\n"+pop3Body+".\r\n", read(true))
			assert.NotContains(t, read(true), "STLS")
			assert.Equal(t, "-ERR unknown command\r\n", read(false))
			send("QUIT\r\n")
			assert.Equal(t, "+OK bye\r\n", read(false))
			<-served
			_, err := r.ReadString('\n')
			assert.ErrorIs(t, err, io.EOF, "the backend's close reaches the client")
			l.client.Close()
			res := <-l.done
			assert.Equal(t, EndServerClosed, res.st.End)
		})
	}
}

func TestGuardString(t *testing.T) {
	for g, want := range map[Guard]string{GuardNone: "none", GuardIMAP: "imap", GuardPOP3: "pop3", Guard(9): "none"} {
		assert.Equal(t, want, g.String())
	}
}
