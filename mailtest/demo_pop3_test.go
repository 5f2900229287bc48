package mailtest_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deliverN delivers n small messages numbered from 1.
func deliverN(t *testing.T, sys *mailtest.System, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf("Subject: m%d\r\n\r\nline one\r\n.line two\r\nline three\r\n", i)
		require.NoError(t, sys.Deliver(user, []byte(msg)))
	}
}

// TestPOP3Dialogue runs a whole RFC 1939 session step by step.
func TestPOP3Dialogue(t *testing.T) {
	sys, addrs := startSystem(t, mailtest.Options{})
	deliverN(t, sys, 3)
	size := len("Subject: m1\r\n\r\nline one\r\n.line two\r\nline three\r\n")
	p := dialPOP3(t, addrs.POP3)

	steps := []struct {
		name      string
		cmd       string
		want      string
		wantMulti string // undotted body of a multi-line answer, if any
	}{
		{name: "NOOP before login", cmd: "NOOP", want: "-ERR command not valid in this state"},
		{name: "PASS before USER", cmd: "PASS demo", want: "-ERR USER first, then PASS with one argument"},
		{name: "USER", cmd: "USER " + user, want: "+OK send PASS"},
		{name: "PASS", cmd: "PASS " + pass, want: fmt.Sprintf("+OK %s has 3 messages (%d octets)", user, 3*size)},
		{name: "STAT", cmd: "STAT", want: fmt.Sprintf("+OK 3 %d", 3*size)},
		{name: "LIST one", cmd: "LIST 2", want: fmt.Sprintf("+OK 2 %d", size)},
		{name: "LIST all", cmd: "list", want: fmt.Sprintf("+OK 3 messages (%d octets)", 3*size),
			wantMulti: fmt.Sprintf("1 %d\r\n2 %d\r\n3 %d\r\n", size, size, size)},
		{name: "UIDL one", cmd: "UIDL 3", want: "+OK 3 1.3"},
		{name: "TOP", cmd: "TOP 1 2", want: fmt.Sprintf("+OK %d octets", size),
			wantMulti: "Subject: m1\r\n\r\nline one\r\n.line two\r\n"},
		{name: "RETR dot-stuffed", cmd: "RETR 2", want: fmt.Sprintf("+OK %d octets", size),
			wantMulti: "Subject: m2\r\n\r\nline one\r\n.line two\r\nline three\r\n"},
		{name: "RETR out of range", cmd: "RETR 4", want: "-ERR no such message"},
		{name: "RETR zero", cmd: "RETR 0", want: "-ERR no such message"},
		{name: "DELE", cmd: "DELE 1", want: "+OK message 1 deleted"},
		{name: "DELE twice", cmd: "DELE 1", want: "-ERR no such message"},
		{name: "RETR deleted", cmd: "RETR 1", want: "-ERR no such message"},
		{name: "STAT after DELE", cmd: "STAT", want: fmt.Sprintf("+OK 2 %d", 2*size)},
		{name: "RSET", cmd: "RSET", want: fmt.Sprintf("+OK maildrop has 3 messages (%d octets)", 3*size)},
		{name: "DELE again", cmd: "DELE 1", want: "+OK message 1 deleted"},
		{name: "DELE 3", cmd: "DELE 3", want: "+OK message 3 deleted"},
		{name: "UIDL all skips deleted", cmd: "UIDL", want: "+OK 1 messages (" + fmt.Sprint(size) + " octets)", wantMulti: "2 1.2\r\n"},
		{name: "USER in TRANSACTION", cmd: "USER x", want: "-ERR command not valid in this state"},
		{name: "unknown", cmd: "XYZZ", want: "-ERR unknown command"},
		{name: "QUIT applies deletions", cmd: "QUIT", want: "+OK mail.example.com POP3 server signing off (1 messages left)"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			require.Equal(t, st.want, p.cmd(st.cmd))
			if st.wantMulti != "" {
				assert.Equal(t, st.wantMulti, string(p.multi()))
			}
		})
	}

	// The deletions are visible to IMAP: only m2 is left.
	c, err := imapclient.DialInsecure(addrs.IMAP, nil)
	require.NoError(t, err)
	defer c.Close()
	msgs := imapFetchAll(t, c)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Subject: m2")
}

// TestPOP3DropWithoutQuit: deletions without QUIT are not applied.
func TestPOP3DropWithoutQuit(t *testing.T) {
	sys, addrs := startSystem(t, mailtest.Options{})
	deliverN(t, sys, 2)
	p := dialPOP3(t, addrs.POP3)
	p.login()
	require.Equal(t, "+OK message 1 deleted", p.cmd("DELE 1"))
	require.NoError(t, p.conn.Close())

	// The lock is released once the server has seen the close and ended
	// the session; until then a new login gets [IN-USE]. Each try uses a
	// fresh connection so that the refusals do not add up to the error limit.
	var resp string
	for try := 0; try < 10000; try++ {
		q := dialPOP3(t, addrs.POP3)
		require.Equal(t, "+OK send PASS", q.cmd("USER "+user))
		if resp = q.cmd("PASS " + pass); !strings.Contains(resp, "[IN-USE]") {
			break
		}
		q.conn.Close()
	}
	assert.True(t, strings.HasPrefix(resp, "+OK "+user+" has 2 messages"), "PASS: %s", resp)
}

func TestPOP3Refusals(t *testing.T) {
	_, addrs := startSystem(t, mailtest.Options{})
	t.Run("bad password", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		p.cmd("USER " + user)
		assert.Equal(t, "-ERR [AUTH] invalid user name or password", p.cmd("PASS nope"))
		assert.Equal(t, "-ERR USER first, then PASS with one argument", p.cmd("PASS "+pass))
	})
	t.Run("maildrop locked", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		p.login()
		q := dialPOP3(t, addrs.POP3)
		q.cmd("USER " + user)
		assert.Equal(t, "-ERR [IN-USE] maildrop already locked", q.cmd("PASS "+pass))
		assert.True(t, strings.HasPrefix(p.cmd("QUIT"), "+OK"))
	})
	t.Run("CAPA", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		require.Equal(t, "+OK capability list follows", p.cmd("CAPA"))
		caps := string(p.multi())
		assert.Contains(t, caps, "USER\r\n")
		assert.Contains(t, caps, "UIDL\r\n")
		assert.NotContains(t, caps, "STLS", "STLS offered without a TLS config")
	})
	t.Run("line too long", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		assert.Equal(t, "-ERR line too long", p.cmd("USER "+strings.Repeat("a", 600)))
		_, err := p.br.ReadByte()
		assert.Error(t, err, "connection still open")
	})
	t.Run("too many errors", func(t *testing.T) {
		p := dialPOP3(t, addrs.POP3)
		for i := 0; i < 9; i++ {
			require.Equal(t, "-ERR unknown command", p.cmd("BLAH"))
		}
		assert.Equal(t, "-ERR unknown command; too many errors, closing connection", p.cmd("BLAH"))
		_, err := p.br.ReadByte()
		assert.Error(t, err, "connection still open")
	})
}

// pythonPOP3 is a poplib session: log in, list, fetch everything, delete
// the first message, quit. It prints what it saw.
const pythonPOP3 = `
import poplib, sys
host, port = sys.argv[1].rsplit(":", 1)
p = poplib.POP3(host, int(port), timeout=30)
print(p.getwelcome().decode())
print(sorted(p.capa().keys()))
p.user(sys.argv[2]); p.pass_(sys.argv[3])
count, size = p.stat()
print("stat", count, size)
print("uidl", [u.decode() for u in p.uidl()[1]])
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    print("retr", i, octets, repr(b"\r\n".join(lines)))
print(p.dele(1).decode())
print(p.quit().decode())
`

// TestPOP3Python drives the server with Python's poplib.
func TestPOP3Python(t *testing.T) {
	python, err := exec.LookPath("python3")
	require.NoError(t, err, "python3 is needed for this test")
	sys, addrs := startSystem(t, mailtest.Options{})
	deliverN(t, sys, 2)

	out, err := exec.CommandContext(t.Context(), python, "-c", pythonPOP3, addrs.POP3, user, pass).CombinedOutput()
	require.NoError(t, err, "poplib: %s", out)
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	size := len("Subject: m1\r\n\r\nline one\r\n.line two\r\nline three\r\n")
	want := []string{
		"+OK mail.example.com POP3 server ready",
		"['AUTH-RESP-CODE', 'IMPLEMENTATION', 'PIPELINING', 'RESP-CODES', 'TOP', 'UIDL', 'USER']",
		fmt.Sprintf("stat 2 %d", 2*size),
		"uidl ['1 1.1', '2 1.2']",
		// poplib counts the octets it received less the stuffed dots: the
		// message size, as LIST and STAT said.
		fmt.Sprintf(`retr 1 %d b'Subject: m1\r\n\r\nline one\r\n.line two\r\nline three'`, size),
		fmt.Sprintf(`retr 2 %d b'Subject: m2\r\n\r\nline one\r\n.line two\r\nline three'`, size),
		"+OK message 1 deleted",
		"+OK mail.example.com POP3 server signing off (1 messages left)",
	}
	assert.Equal(t, want, got)

	msgs, err := sys.Messages(context.Background(), user)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	assert.Contains(t, string(msgs[0]), "Subject: m2")
}
