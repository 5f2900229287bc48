package bridge

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
)

func TestDropSTARTTLS(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"middle", "250-mx\r\n250-STARTTLS\r\n250 SIZE 10\r\n", "250-mx\r\n250 SIZE 10\r\n"},
		{"last", "250-mx\r\n250-SIZE 10\r\n250 STARTTLS\r\n", "250-mx\r\n250 SIZE 10\r\n"},
		{"lower case and spaces", "250-mx\r\n250-starttls \r\n250 8BITMIME\r\n", "250-mx\r\n250 8BITMIME\r\n"},
		{"none", "250-mx\r\n250 SIZE 10\r\n", "250-mx\r\n250 SIZE 10\r\n"},
		{"only the greeting line", "250 mx\r\n", "250 mx\r\n"},
		{"refusal untouched", "550 no\r\n", "550 no\r\n"},
		{"STARTTLS-like keyword kept", "250-mx\r\n250 STARTTLSX\r\n", "250-mx\r\n250 STARTTLSX\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(dropSTARTTLS([]byte(tt.in))))
		})
	}
}

// Every EHLO reply after the handover reaches the client without STARTTLS,
// even split across writes and pipelined with other commands.
func TestInspectorFiltersEHLOReplies(t *testing.T) {
	leaktest.Check(t)
	client, proxyC := tcpPair(t)
	proxyS, backend := tcpPair(t)
	go func() {
		defer backend.Close()
		br := bufio.NewReader(backend)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			switch verb, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.ToUpper(verb) {
			case "EHLO":
				// One reply in three writes, STARTTLS last.
				for _, part := range []string{"250-mx.example\r\n250-PIPE", "LINING\r\n250-STARTTLS\r\n", "250 STARTTLS\r\n"} {
					io.WriteString(backend, part)
					time.Sleep(time.Millisecond) // let the writes arrive apart
				}
			case "QUIT":
				io.WriteString(backend, "221 bye\r\n")
				return
			default:
				io.WriteString(backend, "250 ok\r\n")
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Join(context.Background(), proxyC, proxyS, Options{SMTP: &SMTPInspector{}})
		done <- err
	}()
	_, err := io.WriteString(client, "NOOP\r\nEHLO a\r\nNOOP\r\nEHLO b\r\nQUIT\r\n")
	require.NoError(t, err)
	got, err := io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "250 ok\r\n"+
		"250-mx.example\r\n250 PIPELINING\r\n"+
		"250 ok\r\n"+
		"250-mx.example\r\n250 PIPELINING\r\n"+
		"221 bye\r\n", string(got))
	client.Close()
	require.NoError(t, <-done)
}
