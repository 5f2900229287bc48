package bridge

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RefuseForeign after TLS: an HTTP request line or a TLS record as the
// client's first bytes ends the session with nothing forwarded; a mail
// command goes through whole, even written in pieces, under any guard.
func TestRefuseForeign(t *testing.T) {
	for _, g := range []struct {
		name string
		opt  Options
	}{
		{"none", Options{RefuseForeign: true}},
		{"imap", Options{RefuseForeign: true, Guard: GuardIMAP}},
		{"pop3", Options{RefuseForeign: true, Guard: GuardPOP3}},
		{"smtp", Options{RefuseForeign: true, SMTP: &SMTPInspector{}}},
	} {
		t.Run(g.name, func(t *testing.T) {
			for _, bad := range []string{"POST /mail HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.0\n", "\x16\x03\x01\x00\x05hello"} {
				for _, useTLS := range []bool{false, true} {
					l := startJoin(t, context.Background(), useTLS, g.opt)
					_, err := io.WriteString(l.client, bad)
					require.NoError(t, err)
					var res joinResult
					select {
					case res = <-l.done:
					case <-time.After(10 * time.Second):
						t.Fatalf("%q: the session did not end", bad)
					}
					assert.ErrorIs(t, res.err, ErrForeignProtocol, "%q", bad)
					l.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
					got, _ := io.ReadAll(l.backend)
					assert.Empty(t, got, "%q: nothing reaches the backend", bad)
				}
			}

			// A command written in three pieces reaches the backend whole,
			// and the session goes on.
			l := startJoin(t, context.Background(), true, g.opt)
			cmd := map[string]string{"imap": "a1 NOOP\r\n", "pop3": "NOOP\r\n", "smtp": "NOOP\r\n", "none": "NOOP\r\n"}[g.name]
			for _, piece := range []string{cmd[:2], cmd[2:4], cmd[4:]} {
				_, err := io.WriteString(l.client, piece)
				require.NoError(t, err)
				time.Sleep(5 * time.Millisecond) // separate reads at the proxy
			}
			l.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, len(cmd))
			_, err := io.ReadFull(l.backend, buf)
			require.NoError(t, err)
			assert.Equal(t, cmd, string(buf))
			_, err = io.WriteString(l.client, cmd)
			require.NoError(t, err)
			_, err = io.ReadFull(l.backend, buf)
			require.NoError(t, err)
			assert.Equal(t, cmd, string(buf))
		})
	}

	// A first line longer than the bound without a line end is passed on
	// unread.
	l := startJoin(t, context.Background(), false, Options{RefuseForeign: true})
	long := strings.Repeat("x", maxFirstLine+10)
	_, err := io.WriteString(l.client, long)
	require.NoError(t, err)
	l.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(long))
	_, err = io.ReadFull(l.backend, buf)
	require.NoError(t, err)
}

func FuzzFirstLine(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"), 3)
	f.Add([]byte("a1 NOOP\r\n"), 1)
	f.Add([]byte("\x16\x03\x03"), 2)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		var out strings.Builder
		fl := &firstLine{dst: nil, next: writerFilter{&out}}
		if cut < 0 || cut > len(in) {
			cut = len(in) / 2
		}
		err1 := fl.write(in[:cut])
		var err2 error
		if err1 == nil {
			err2 = fl.write(in[cut:])
		}
		if err1 != nil || err2 != nil {
			assert.Empty(t, out.String(), "nothing passed on before a refusal")
			return
		}
		// Passed on: a prefix of the input, all of it once the first line
		// was complete or long enough.
		assert.True(t, strings.HasPrefix(string(in), out.String()))
		if fl.done {
			assert.Equal(t, string(in), out.String())
		}
	})
}

// writerFilter is a filter that writes to w.
type writerFilter struct{ w io.Writer }

func (f writerFilter) write(p []byte) error { _, err := f.w.Write(p); return err }
func (f writerFilter) closed()              {}
