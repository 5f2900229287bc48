package bridge

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Stats.Goodbye: the client's QUIT or LOGOUT and the server's answer to it
// are noticed by each protocol's filter, whoever closes after; a session
// cut before the answer, or without a goodbye, says false.
func TestGoodbye(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opt       Options
		cmds      []string // client lines, the last the goodbye
		answers   []string // the server's answers, in order
		answerBye bool     // whether the server answers the goodbye
		want      bool
	}{
		{"imap", Options{Guard: GuardIMAP}, []string{"a NOOP", "b LOGOUT"}, []string{"a OK done", "* BYE see you", "b OK LOGOUT done"}, true, true},
		{"imap unanswered", Options{Guard: GuardIMAP}, []string{"a NOOP", "b LOGOUT"}, []string{"a OK done"}, false, false},
		{"imap no logout", Options{Guard: GuardIMAP}, []string{"a NOOP"}, []string{"a OK done"}, false, false},
		{"pop3", Options{Guard: GuardPOP3}, []string{"NOOP", "QUIT"}, []string{"+OK", "+OK bye"}, true, true},
		{"pop3 unanswered", Options{Guard: GuardPOP3}, []string{"NOOP", "QUIT"}, []string{"+OK"}, false, false},
		{"smtp", Options{SMTP: &SMTPInspector{}}, []string{"NOOP", "QUIT"}, []string{"250 ok", "221 2.0.0 bye"}, true, true},
		{"smtp unanswered", Options{SMTP: &SMTPInspector{}}, []string{"NOOP", "QUIT"}, []string{"250 ok"}, false, false},
		{"no guard", Options{}, []string{"NOOP", "QUIT"}, []string{"250 ok", "221 bye"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startJoin(t, context.Background(), false, tc.opt)
			br := bufio.NewReader(l.backend)
			cr := bufio.NewReader(l.client)
			l.backend.SetDeadline(time.Now().Add(10 * time.Second))
			l.client.SetDeadline(time.Now().Add(10 * time.Second))
			for i, cmd := range tc.cmds {
				_, err := io.WriteString(l.client, cmd+"\r\n")
				require.NoError(t, err)
				got, err := br.ReadString('\n')
				require.NoError(t, err)
				require.Equal(t, cmd+"\r\n", got)
				var answers []string
				switch {
				case i < len(tc.cmds)-1:
					answers = tc.answers[i : i+1]
				case tc.answerBye:
					answers = tc.answers[i:]
				}
				for _, a := range answers {
					_, err := io.WriteString(l.backend, a+"\r\n")
					require.NoError(t, err)
					got, err := cr.ReadString('\n')
					require.NoError(t, err)
					require.Equal(t, a+"\r\n", got)
				}
			}
			// The client resets, as swaks and Outlook do after QUIT.
			l.client.(*net.TCPConn).SetLinger(0)
			l.client.Close()
			var res joinResult
			select {
			case res = <-l.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the session did not end")
			}
			assert.Equal(t, tc.want, res.st.Goodbye, "err %v", res.err)
			if res.err != nil {
				assert.True(t, strings.Contains(res.err.Error(), "reset") || strings.Contains(res.err.Error(), "broken pipe"), res.err.Error())
			}
		})
	}
}

// The inspector counts the recipients the server refused (a relay denied).
func TestRecipientsRefused(t *testing.T) {
	l := startJoin(t, context.Background(), false, Options{SMTP: &SMTPInspector{}})
	br, cr := bufio.NewReader(l.backend), bufio.NewReader(l.client)
	l.backend.SetDeadline(time.Now().Add(10 * time.Second))
	l.client.SetDeadline(time.Now().Add(10 * time.Second))
	for _, x := range [][2]string{
		{"MAIL FROM:<a@example.org>", "250 ok"},
		{"RCPT TO:<b@example.com>", "250 ok"},
		{"RCPT TO:<c@elsewhere.example>", "554 5.7.1 <c@elsewhere.example>: Relay access denied"},
		{"RCPT TO:<d@example.com>", "450 4.2.0 greylisted"},
	} {
		_, err := io.WriteString(l.client, x[0]+"\r\n")
		require.NoError(t, err)
		_, err = br.ReadString('\n')
		require.NoError(t, err)
		_, err = io.WriteString(l.backend, x[1]+"\r\n")
		require.NoError(t, err)
		_, err = cr.ReadString('\n')
		require.NoError(t, err)
	}
	l.client.Close()
	l.backend.Close()
	res := <-l.done
	assert.Equal(t, int64(1), res.st.SMTP.Recipients)
	assert.Equal(t, int64(2), res.st.SMTP.RecipientsRefused)
}

// A backend that resets mid-session is passed on as a reset: the client
// must not take the end for a clean close of a finished session.
func TestServerResetReachesClient(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		l := startJoin(t, context.Background(), useTLS, Options{Guard: GuardIMAP})
		l.client.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.WriteString(l.client, "a NOOP\r\n")
		require.NoError(t, err)
		buf := make([]byte, 8)
		l.backend.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(l.backend, buf)
		require.NoError(t, err)
		raw := l.backend
		for {
			u, ok := raw.(interface{ NetConn() net.Conn })
			if !ok {
				break
			}
			raw = u.NetConn()
		}
		raw.(*net.TCPConn).SetLinger(0)
		raw.Close() // a crash: RST, no answer
		res := <-l.done
		require.Error(t, res.err)
		_, err = io.ReadAll(l.client)
		require.Error(t, err, "TLS %v: the client sees an error, not a clean end", useTLS)
		assert.Contains(t, err.Error(), "reset", "TLS %v", useTLS)
	}
}

// Stats.Unfiltered: a POP3 server's response with no command owed puts
// the guard out of step, and the session says so.
func TestPOP3Unfiltered(t *testing.T) {
	for _, unexpected := range []bool{false, true} {
		l := startJoin(t, context.Background(), false, Options{Guard: GuardPOP3})
		cr := bufio.NewReader(l.client)
		l.client.SetDeadline(time.Now().Add(10 * time.Second))
		if unexpected {
			_, err := io.WriteString(l.backend, "+OK nobody asked\r\n")
			require.NoError(t, err)
			_, err = cr.ReadString('\n')
			require.NoError(t, err)
		}
		_, err := io.WriteString(l.client, "NOOP\r\n")
		require.NoError(t, err)
		br := bufio.NewReader(l.backend)
		l.backend.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = br.ReadString('\n')
		require.NoError(t, err)
		_, err = io.WriteString(l.backend, "+OK\r\n")
		require.NoError(t, err)
		_, err = cr.ReadString('\n')
		require.NoError(t, err)
		l.client.Close()
		l.backend.Close()
		res := <-l.done
		assert.Equal(t, unexpected, res.st.Unfiltered)
	}
}
