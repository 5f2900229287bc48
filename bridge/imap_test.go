package bridge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/internal/mailwire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newIMAPGuard returns one direction of GuardIMAP writing into w.
func newIMAPGuard(w io.Writer, client bool) *imapGuard {
	return &imapGuard{out: outbuf{w: w}, client: client, start: true}
}

// feed writes the pieces through f and returns what came out.
func feed(t testing.TB, f filter, out *bytes.Buffer, pieces ...string) string {
	t.Helper()
	for _, p := range pieces {
		require.NoError(t, f.write([]byte(p)))
	}
	return out.String()
}

func TestIMAPLiteral(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		plus bool
		n    int64
		ok   bool
	}{
		{"sync", "a APPEND INBOX {12}\r\n", false, 12, true},
		{"zero", "* 1 FETCH (BODY[] {0}\r\n", false, 0, true},
		{"bare LF", "x {3}\n", false, 3, true},
		{"literal8", "* 1 FETCH (BINARY[] ~{7}\r\n", false, 7, true},
		{"non-sync from client", "a LOGIN {4+}\r\n", true, 4, true},
		{"non-sync from server is not one", "* x {4+}\r\n", false, 0, false},
		{"no digits", "a X {}\r\n", false, 0, false},
		{"not at end", "a X {3} y\r\n", false, 0, false},
		{"quoted", "a SEARCH SUBJECT \"{3}\"\r\n", false, 0, false},
		{"too large", "a X {99999999999999999999999}\r\n", false, 0, false},
		{"short", "}\r\n", false, 0, false},
		{"empty", "", true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := imapLiteral([]byte(tc.line), tc.plus)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.n, n)
		})
	}
}

func TestRewriteIMAPCommand(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string // want "" means unchanged
	}{
		{"plain", "a1 STARTTLS\r\n", "a1 XSTARTTLS-REFUSED-INSIDE-TLS\r\n"},
		{"lower case", "x starttls\r\n", "x XSTARTTLS-REFUSED-INSIDE-TLS\r\n"},
		{"argument kept", "t StartTLS foo\r\n", "t XSTARTTLS-REFUSED-INSIDE-TLS foo\r\n"},
		{"bare LF", "t STARTTLS\n", "t XSTARTTLS-REFUSED-INSIDE-TLS\n"},
		{"no tag", "STARTTLS\r\n", ""},
		{"other command", "a NOOP\r\n", ""},
		{"longer name", "a STARTTLSX\r\n", ""},
		{"as argument", "a SELECT STARTTLS\r\n", ""},
		{"empty tag", " STARTTLS\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rewriteIMAPCommand([]byte(tc.line))
			if tc.want == "" {
				assert.Nil(t, got)
				return
			}
			assert.Equal(t, tc.want, string(got))
		})
	}
}

func TestFilterIMAPResponse(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string // want "" means unchanged
		status           bool
	}{
		{"capability", "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\n", "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n", true},
		{"capability lower case", "* capability imap4rev1 starttls\r\n", "* capability imap4rev1\r\n", true},
		{"capability clean", "* CAPABILITY IMAP4rev1 IDLE\r\n", "", true},
		{"atom prefix kept", "* CAPABILITY STARTTLSX XLOGINDISABLED\r\n", "", true},
		{"greeting code", "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n", "* OK [CAPABILITY IMAP4rev1] ready\r\n", true},
		{"tagged code", "a2 OK [capability IMAP4rev2 LOGINDISABLED starttls] Logged in\r\n", "a2 OK [capability IMAP4rev2] Logged in\r\n", true},
		{"only STARTTLS", "a OK [CAPABILITY STARTTLS] x\r\n", "a OK [CAPABILITY] x\r\n", true},
		{"text not code", "a OK STARTTLS [CAPABILITY STARTTLS]\r\n", "", true},
		{"other code", "a OK [READ-WRITE] STARTTLS\r\n", "", true},
		{"unclosed code", "a OK [CAPABILITY STARTTLS\r\n", "", true},
		{"fetch envelope", "* 1 FETCH (ENVELOPE (\"x\" \"[CAPABILITY STARTTLS]\"))\r\n", "", false},
		{"continuation", "+ [CAPABILITY STARTTLS] go\r\n", "", true},
		{"bye", "* BYE STARTTLS {5}\r\n", "", true},
		{"list", "* LIST () \"/\" {8}\r\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, status := filterIMAPResponse([]byte(tc.line))
			assert.Equal(t, tc.status, status)
			if tc.want == "" {
				assert.Nil(t, got)
				return
			}
			assert.Equal(t, tc.want, string(got))
		})
	}
}

// imapServerTranscript is what a backend sends, with the literal sizes
// right: message data that looks like responses must pass untouched.
var imapServerTranscript = strings.Join([]string{
	"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED IDLE\r\n",
	"c1 OK [CAPABILITY IMAP4rev1 STARTTLS] done\r\n",
	"* 1 FETCH (BODY[] {36}\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n{5}\r\n)\r\n",
	"* 2 FETCH (BODY[HEADER] {6}\r\nSTLS\r\n BODY[TEXT] {0}\r\n)\r\n",
	"c2 OK FETCH done\r\n",
	"* BYE bye {3}\r\n",
	"* capability IMAP4rev2 starttls\r\n",
}, "")

var imapServerWant = strings.Join([]string{
	"* CAPABILITY IMAP4rev1 IDLE\r\n",
	"c1 OK [CAPABILITY IMAP4rev1] done\r\n",
	"* 1 FETCH (BODY[] {36}\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\n{5}\r\n)\r\n",
	"* 2 FETCH (BODY[HEADER] {6}\r\nSTLS\r\n BODY[TEXT] {0}\r\n)\r\n",
	"c2 OK FETCH done\r\n",
	"* BYE bye {3}\r\n",
	"* capability IMAP4rev2\r\n",
}, "")

var imapClientTranscript = "a LOGIN {4}\r\nuser {4+}\r\npass\r\nb APPEND INBOX {26}\r\nc STARTTLS\r\nd CAPABILITY\r\n\r\nc STARTTLS\r\nd NOOP\r\n"

var imapClientWant = "a LOGIN {4}\r\nuser {4+}\r\npass\r\nb APPEND INBOX {26}\r\nc STARTTLS\r\nd CAPABILITY\r\n\r\nc XSTARTTLS-REFUSED-INSIDE-TLS\r\nd NOOP\r\n"

// TestIMAPGuardSplits sends the transcripts in two writes split at every
// position, and in one-byte writes: the output never depends on the split.
func TestIMAPGuardSplits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		client     bool
		input, out string
	}{
		{"server", false, imapServerTranscript, imapServerWant},
		{"client", true, imapClientTranscript, imapClientWant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.input); i++ {
				var buf bytes.Buffer
				got := feed(t, newIMAPGuard(&buf, tc.client), &buf, tc.input[:i], tc.input[i:])
				assert.Equal(t, tc.out, got, "split at %d", i)
			}
			var buf bytes.Buffer
			g := newIMAPGuard(&buf, tc.client)
			for i := range len(tc.input) {
				require.NoError(t, g.write([]byte{tc.input[i]}))
			}
			assert.Equal(t, tc.out, buf.String(), "one byte per write")
		})
	}
}

// TestIMAPGuardLongLine: a line longer than maxGuardLine passes unfiltered,
// a literal at its end still counts, and a STARTTLS command with a huge
// argument is still renamed.
func TestIMAPGuardLongLine(t *testing.T) {
	long := "* SEARCH " + strings.Repeat("1 ", maxGuardLine) + "{9}\r\n"
	in := long + "STARTTLS\r\n" + "* CAPABILITY STARTTLS\r\n"
	var buf bytes.Buffer
	g := newIMAPGuard(&buf, false)
	for p := range chunks(in, 1000) {
		require.NoError(t, g.write([]byte(p)))
	}
	assert.Equal(t, long+"STARTTLS\r\n* CAPABILITY\r\n", buf.String())

	buf.Reset()
	g = newIMAPGuard(&buf, true)
	huge := strings.Repeat("x", 2*maxGuardLine)
	for p := range chunks("a STARTTLS "+huge+"\r\nb STARTTLS\r\n", 4096) {
		require.NoError(t, g.write([]byte(p)))
	}
	assert.Equal(t, "a "+imapRefused+" "+huge+"\r\nb "+imapRefused+"\r\n", buf.String())
}

// chunks yields s in pieces of n bytes.
func chunks(s string, n int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// scriptedIMAP is a backend that offers STARTTLS and LOGINDISABLED, would
// accept STARTTLS, answers FETCH with a body full of look-alikes, and
// rejects unknown commands with BAD. It reads literals, asking for
// synchronising ones with "+", except that it refuses an APPEND to the
// mailbox REFUSED with a tagged NO before the data, as servers refuse an
// over-large message.
func scriptedIMAP(c net.Conn, body string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		var literal []byte
		if lit, ok := mailwire.ParseLiteral([]byte(line)); ok {
			if !lit.NonSync {
				tag, rest, _ := strings.Cut(line, " ")
				if strings.HasPrefix(strings.ToUpper(rest), "APPEND REFUSED ") {
					// Refused before the data: the client must not send it.
					io.WriteString(c, tag+" NO [TOOBIG] refused\r\n")
					continue
				}
				io.WriteString(c, "+ go ahead\r\n")
			}
			literal = make([]byte, lit.Size)
			if _, err := io.ReadFull(br, literal); err != nil {
				return
			}
			br.ReadString('\n')
		}
		tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		name, _, _ := strings.Cut(rest, " ")
		var reply string
		switch strings.ToUpper(name) {
		case "CAPABILITY":
			reply = "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\n" + tag + " OK [CAPABILITY IMAP4rev1 STARTTLS] done\r\n"
		case "STARTTLS":
			reply = tag + " OK Begin TLS negotiation now\r\n"
		case "FETCH":
			reply = "* 1 FETCH (BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + ")\r\n" + tag + " OK done\r\n"
		case "APPEND":
			reply = tag + " OK got " + strconv.Quote(string(literal)) + "\r\n"
		case "LOGOUT":
			io.WriteString(c, "* BYE\r\n"+tag+" OK bye\r\n")
			return
		default:
			reply = tag + " BAD unknown command\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// imapBody is message data that must pass byte for byte.
const imapBody = "* CAPABILITY IMAP4rev1 STARTTLS\r\nSTLS\r\n{5}\r\nx OK [CAPABILITY STARTTLS LOGINDISABLED]\r\n"

func TestIMAPGuardLoopback(t *testing.T) {
	leaktest.Check(t)
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[useTLS], func(t *testing.T) {
			l := startJoin(t, context.Background(), useTLS, Options{Guard: GuardIMAP})
			served := make(chan struct{})
			go func() { defer close(served); scriptedIMAP(l.backend, imapBody) }()
			r := bufio.NewReader(l.client)
			until := func(cmd, tag string) string {
				_, err := io.WriteString(l.client, cmd)
				require.NoError(t, err)
				var all string
				for {
					line, err := r.ReadString('\n')
					require.NoError(t, err, "after %q", all)
					all += line
					if strings.HasPrefix(line, tag+" ") {
						return all
					}
				}
			}
			for _, tag := range []string{"c1", "c2"} {
				caps := until(tag+" CAPABILITY\r\n", tag)
				assert.NotContains(t, caps, "STARTTLS")
				assert.NotContains(t, caps, "LOGINDISABLED")
				assert.Contains(t, caps, "AUTH=PLAIN")
			}
			assert.Equal(t, "s BAD unknown command\r\n", until("s STARTTLS\r\n", "s"))
			fetch := until("f FETCH 1 BODY[]\r\n", "f")
			assert.Equal(t, "* 1 FETCH (BODY[] {"+strconv.Itoa(len(imapBody))+"}\r\n"+imapBody+")\r\nf OK done\r\n", fetch)
			// A literal from the client is data, even if it reads STARTTLS.
			lit := "a STARTTLS\r\n"
			assert.Equal(t, "a OK got "+strconv.Quote(lit)+"\r\n", until("a APPEND INBOX {"+strconv.Itoa(len(lit))+"+}\r\n"+lit+"\r\n", "a"))
			assert.Equal(t, "* BYE\r\nz OK bye\r\n", until("z LOGOUT\r\n", "z"))
			<-served
			_, err := r.ReadString('\n')
			assert.ErrorIs(t, err, io.EOF, "the backend's close reaches the client")
			l.client.Close()
			res := <-l.done
			assert.Equal(t, EndServerClosed, res.st.End)
		})
	}
}
