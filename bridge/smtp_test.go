package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSMTP is a pipelining SMTP backend: it answers every command, sends
// its replies only when its input buffer is empty (as Postfix does), reads
// DATA content and BDAT chunks, and records what it received.
type fakeSMTP struct {
	mu       sync.Mutex
	commands []string // command lines without CRLF
	contents []string // message contents and chunks as received
	dataCode int      // reply to DATA; if zero, 354
}

func (f *fakeSMTP) serve(c net.Conn) {
	defer c.Close()
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	reply := func(s string) {
		bw.WriteString(s + "\r\n")
		if br.Buffered() == 0 {
			bw.Flush()
		}
	}
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil {
			bw.Flush()
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.commands = append(f.commands, line)
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-fake.example\r\n250-PIPELINING\r\n250 CHUNKING")
		case "DATA":
			if f.dataCode != 0 {
				reply(fmt.Sprintf("%d 5.5.1 no data #%d", f.dataCode, n))
				continue
			}
			reply(fmt.Sprintf("354 go ahead #%d", n))
			bw.Flush()
			f.readData(br)
			reply(fmt.Sprintf("250 2.0.0 queued #%d", n))
		case "BDAT":
			size, _ := strconv.Atoi(strings.Fields(arg)[0])
			chunk := make([]byte, size)
			io.ReadFull(br, chunk)
			f.record(string(chunk))
			reply(fmt.Sprintf("250 2.0.0 chunk %d #%d", size, n))
		case "AUTH":
			reply("334 ")
		case "QUIT":
			reply("221 2.0.0 bye")
			bw.Flush()
			return
		default:
			if strings.HasPrefix(line, "c2VjcmV0") { // SASL response
				reply(fmt.Sprintf("235 2.7.0 ok #%d", n))
				continue
			}
			reply(fmt.Sprintf("250 2.0.0 %s ok #%d", strings.ToLower(verb), n))
		}
	}
}

// readData reads content up to <CRLF>.<CRLF> as RFC 5321 says: a bare LF
// never ends a line here.
func (f *fakeSMTP) readData(br *bufio.Reader) {
	b := []byte("\r\n")
	for !strings.HasSuffix(string(b), "\r\n.\r\n") {
		c, err := br.ReadByte()
		if err != nil {
			return
		}
		b = append(b, c)
	}
	f.record(string(b[2 : len(b)-3]))
}

func (f *fakeSMTP) record(s string) {
	f.mu.Lock()
	f.contents = append(f.contents, s)
	f.mu.Unlock()
}

// smtpSessionTest runs Join with ins between a client conn and a fakeSMTP,
// sends script in one write, and returns the client's replies line by line
// once the client has read want final replies.
func smtpSessionTest(t *testing.T, f *fakeSMTP, ins *SMTPInspector, script string, want int) ([]string, Stats) {
	t.Helper()
	l := startJoin(t, context.Background(), false, Options{SMTP: ins})
	srvDone := make(chan struct{})
	go func() { defer close(srvDone); f.serve(l.backend) }()
	_, err := l.client.Write([]byte(script))
	require.NoError(t, err)
	br := bufio.NewReader(l.client)
	var lines []string
	for finals := 0; finals < want; {
		line, err := br.ReadString('\n')
		require.NoError(t, err, "after %q", lines)
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			finals++
		}
	}
	require.NoError(t, l.client.Close())
	<-srvDone
	r := <-l.done
	return lines, r.st
}

func refuseTo(addr string) func(SMTPCommand) string {
	return func(c SMTPCommand) string {
		if c.Verb == "RCPT" && c.Arg == addr {
			return "452 4.7.1 Error: too many recipients from 192.0.2.1"
		}
		return ""
	}
}

func TestSMTPPipelinedOrder(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := &fakeSMTP{}
	var seen []string
	var replies []string
	ins := &SMTPInspector{
		Check: func(c SMTPCommand) string {
			seen = append(seen, c.Verb+" "+c.Arg)
			return refuseTo("b@example.org")(c)
		},
		Reply: func(c SMTPCommand, code int) { replies = append(replies, fmt.Sprintf("%s %d", c.Verb, code)) },
	}
	script := "EHLO client.example\r\nMAIL FROM:<a@example.net> SIZE=10\r\nRCPT TO:<ok@example.org>\r\n" +
		"RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org> NOTIFY=NEVER\r\nDATA\r\n" +
		"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	lines, st := smtpSessionTest(t, f, ins, script, 8)
	assert.Equal(t, []string{
		"250-fake.example", "250-PIPELINING", "250 CHUNKING",
		"250 2.0.0 mail ok #2",
		"250 2.0.0 rcpt ok #3",
		"452 4.7.1 Error: too many recipients from 192.0.2.1",
		"250 2.0.0 rcpt ok #4",
		"354 go ahead #5",
		"250 2.0.0 queued #5",
		"221 2.0.0 bye",
	}, lines)
	assert.Equal(t, []string{"EHLO client.example", "MAIL FROM:<a@example.net> SIZE=10",
		"RCPT TO:<ok@example.org>", "RCPT TO:<c@example.org> NOTIFY=NEVER", "DATA", "QUIT"}, f.commands)
	assert.Equal(t, []string{"EHLO client.example", "MAIL a@example.net", "RCPT ok@example.org",
		"RCPT b@example.org", "RCPT c@example.org", "DATA ", "QUIT "}, seen)
	assert.Equal(t, []string{"EHLO 250", "MAIL 250", "RCPT 250", "RCPT 250", "DATA 354", ". 250", "QUIT 221"}, replies)
	assert.Equal(t, SMTPStats{Commands: 7, Messages: 1, Recipients: 2, Refused: 1}, st.SMTP)
}

func TestSMTPDataNotInspected(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := &fakeSMTP{}
	var seen []string
	ins := &SMTPInspector{Check: func(c SMTPCommand) string { seen = append(seen, c.Verb); return refuseTo("x@evil")(c) }}
	content := "RCPT TO:<x@evil>\r\nbare\n.\nstill content\r\n.\nand\n.\r\n..stuffed\r\nSTARTTLS\r\n"
	script := "MAIL FROM:<>\r\nRCPT TO:<y@example.org>\r\nDATA\r\n" + content + ".\r\nRCPT TO:<x@evil>\r\nQUIT\r\n"
	lines, st := smtpSessionTest(t, f, ins, script, 6)
	assert.Equal(t, []string{"250 2.0.0 mail ok #1", "250 2.0.0 rcpt ok #2", "354 go ahead #3",
		"250 2.0.0 queued #3", "452 4.7.1 Error: too many recipients from 192.0.2.1", "221 2.0.0 bye"}, lines)
	assert.Equal(t, []string{"MAIL", "RCPT", "DATA", "RCPT", "QUIT"}, seen, "content must not reach Check")
	assert.Equal(t, []string{content}, f.contents, "content must pass untouched")
	assert.Equal(t, int64(1), st.SMTP.Messages)
}

func TestSMTPDataRefusedByServer(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := &fakeSMTP{dataCode: 554}
	var seen []string
	ins := &SMTPInspector{Check: func(c SMTPCommand) string { seen = append(seen, c.Verb); return refuseTo("x@evil")(c) }}
	// The client ignores the 554 and sends what would have been content:
	// the server reads it as commands, so the inspector must check it too.
	script := "MAIL FROM:<>\r\nDATA\r\nRCPT TO:<x@evil>\r\nQUIT\r\n"
	lines, st := smtpSessionTest(t, f, ins, script, 4)
	assert.Equal(t, []string{"250 2.0.0 mail ok #1", "554 5.5.1 no data #2",
		"452 4.7.1 Error: too many recipients from 192.0.2.1", "221 2.0.0 bye"}, lines)
	assert.Equal(t, []string{"MAIL", "DATA", "RCPT", "QUIT"}, seen)
	assert.Zero(t, st.SMTP.Messages)
}

func TestSMTPBDAT(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	f := &fakeSMTP{}
	var seen []string
	ins := &SMTPInspector{Check: func(c SMTPCommand) string {
		seen = append(seen, c.Verb+" "+c.Arg)
		if c.Verb == "BDAT" && c.Arg == "7" {
			return "552 5.3.4 chunk refused"
		}
		return refuseTo("x@evil")(c)
	}}
	chunk1 := "RCPT TO:<x@evil>\r\nDATA\r\n\r\n" // 26 bytes of command-like text
	chunk2 := "QUIT\r\n."                        // refused, discarded
	chunk3 := "\r\n.\r\nMAIL\r\n"
	script := "MAIL FROM:<a@b>\r\nBDAT 26\r\n" + chunk1 + "BDAT 7\r\n" + chunk2 +
		fmt.Sprintf("BDAT %d LAST\r\n", len(chunk3)) + chunk3 + "QUIT\r\n"
	lines, st := smtpSessionTest(t, f, ins, script, 5)
	assert.Equal(t, []string{"250 2.0.0 mail ok #1", "250 2.0.0 chunk 26 #2", "552 5.3.4 chunk refused",
		"250 2.0.0 chunk 11 #3", "221 2.0.0 bye"}, lines)
	assert.Equal(t, []string{"MAIL a@b", "BDAT 26", "BDAT 7", "BDAT 11 LAST", "QUIT "}, seen)
	assert.Equal(t, []string{chunk1, chunk3}, f.contents)
	assert.Equal(t, SMTPStats{Commands: 5, Messages: 1, Refused: 1}, st.SMTP)
}

func TestSMTPLocalReplies(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   []string
		fwd    []string
	}{
		{
			name:   "starttls answered locally",
			script: "STARTTLS\r\nNOOP\r\nQUIT\r\n",
			want:   []string{"454 4.7.0 TLS not available", "250 2.0.0 noop ok #1", "221 2.0.0 bye"},
			fwd:    []string{"NOOP", "QUIT"},
		},
		{
			name:   "oversize line refused",
			script: "NOOP " + strings.Repeat("x", 100) + "\r\nNOOP\r\nQUIT\r\n",
			want:   []string{"500 5.5.2 Line too long", "250 2.0.0 noop ok #1", "221 2.0.0 bye"},
			fwd:    []string{"NOOP", "QUIT"},
		},
		{
			name:   "refused first command",
			script: "RCPT TO:<x@evil>\r\nRSET\r\nQUIT\r\n",
			want:   []string{"452 4.7.1 Error: too many recipients from 192.0.2.1", "250 2.0.0 rset ok #1", "221 2.0.0 bye"},
			fwd:    []string{"RSET", "QUIT"},
		},
		{
			name:   "sasl response not checked",
			script: "AUTH PLAIN\r\nc2VjcmV0\r\nQUIT\r\n",
			want:   []string{"334 ", "235 2.7.0 ok #2", "221 2.0.0 bye"},
			fwd:    []string{"AUTH PLAIN", "c2VjcmV0", "QUIT"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			leaktest.CheckFDs(t)
			f := &fakeSMTP{}
			ins := &SMTPInspector{MaxLineLength: 64, Check: func(c SMTPCommand) string {
				if strings.HasPrefix(c.Verb, "C2VJ") {
					return "500 SASL response checked"
				}
				return refuseTo("x@evil")(c)
			}}
			lines, _ := smtpSessionTest(t, f, ins, tt.script, len(tt.want))
			assert.Equal(t, tt.want, lines)
			assert.Equal(t, tt.fwd, f.commands)
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name, line, verb, arg string
	}{
		{"mail", "MAIL FROM:<a@b.example> SIZE=12\r\n", "MAIL", "a@b.example"},
		{"null path", "mail from:<>\r\n", "MAIL", ""},
		{"space after colon", "MAIL FROM: <a@b>\r\n", "MAIL", "a@b"},
		{"no brackets", "RCPT TO:a@b NOTIFY=NEVER\r\n", "RCPT", "a@b"},
		{"quoted", "RCPT TO:<\"x>y\"@b>\r\n", "RCPT", "\"x>y\"@b"},
		{"unterminated", "RCPT TO:<a@b\r\n", "RCPT", "a@b"},
		{"wrong keyword", "RCPT FROM:<a@b>\r\n", "RCPT", ""},
		{"bdat", "bdat 100 last\r\n", "BDAT", "100 last"},
		{"empty", "\r\n", "", ""},
		{"bare lf", "NOOP\n", "NOOP", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseCommand([]byte(tt.line))
			assert.Equal(t, tt.verb, c.Verb)
			assert.Equal(t, tt.arg, c.Arg)
			assert.Equal(t, tt.line, string(c.Line))
		})
	}
}

func TestParseBDAT(t *testing.T) {
	tests := []struct {
		name, arg string
		size      int64
		last, ok  bool
	}{
		{"plain", "100", 100, false, true},
		{"last", "0 LAST", 0, true, true},
		{"lower last", "5 last", 5, true, true},
		{"junk", "5 FIRST", 0, false, false},
		{"negative", "-5", 0, false, false},
		{"huge", "9999999999999999999", 0, false, false},
		{"empty", "", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, last, ok := parseBDAT(tt.arg)
			assert.Equal(t, tt.ok, ok)
			if ok {
				assert.Equal(t, tt.size, size)
				assert.Equal(t, tt.last, last)
			}
		})
	}
}
