package mailtest_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
)

// ioWait is a safety net on every read, so that a hang fails the test.
const ioWait = 10 * time.Second

// TestNewSystemListeners: every protocol answers in plain text, with
// STARTTLS (offered before TLS, not after) and over implicit TLS, with a
// certificate that ClientTLSConfig verifies; the plain listeners offer no
// TLS at all; MX has no implicit-TLS listener.
func TestNewSystemListeners(t *testing.T) {
	leaktest.Check(t)
	leaktest.CheckFDs(t)
	sys := mailtest.NewSystem(t, mailtest.Options{})
	cfg := sys.ClientTLSConfig()
	require.NotNil(t, cfg)
	type dialect struct{ greeting, capa, capaEnd, offer, start, goAhead string }
	dialects := map[mailtest.Protocol]dialect{
		mailtest.IMAP:       {"* OK", "a CAPABILITY\r\n", "a OK", "STARTTLS", "b STARTTLS\r\n", "b OK"},
		mailtest.POP3:       {"+OK", "CAPA\r\n", ".", "STLS", "STLS\r\n", "+OK"},
		mailtest.Submission: {"220 ", "EHLO client.example\r\n", "250 ", "STARTTLS", "STARTTLS\r\n", "220 "},
		mailtest.MX:         {"220 ", "EHLO client.example\r\n", "250 ", "STARTTLS", "STARTTLS\r\n", "220 "},
	}
	for p, d := range dialects {
		for _, sec := range []mailtest.Security{mailtest.Plain, mailtest.StartTLS, mailtest.ImplicitTLS} {
			addr := sys.Addr(p, sec)
			if p == mailtest.MX && sec == mailtest.ImplicitTLS {
				assert.Empty(t, addr)
				continue
			}
			require.NotEmpty(t, addr, "protocol %d security %d", p, sec)
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			if sec == mailtest.ImplicitTLS {
				c = tls.Client(c, cfg)
			}
			r := bufio.NewReader(c)
			c.SetDeadline(time.Now().Add(ioWait))
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(line, d.greeting), "got %q", line)
			caps := capabilities(t, c, r, d.capa, d.capaEnd)
			assert.Equal(t, sec == mailtest.StartTLS, strings.Contains(caps, d.offer), "%d/%d offers %q", p, sec, caps)
			if sec == mailtest.StartTLS {
				_, err = c.Write([]byte(d.start))
				require.NoError(t, err)
				line, err = r.ReadString('\n')
				require.NoError(t, err)
				require.True(t, strings.HasPrefix(line, d.goAhead), "got %q", line)
				tc := tls.Client(c, cfg)
				require.NoError(t, tc.Handshake())
				c, r = tc, bufio.NewReader(tc)
				caps = capabilities(t, c, r, d.capa, d.capaEnd)
				assert.NotContains(t, caps, d.offer, "offered again inside TLS")
			}
			c.Close()
		}
	}
}

// capabilities sends cmd and returns the answer's lines up to end.
func capabilities(t *testing.T, c net.Conn, r *bufio.Reader, cmd, end string) string {
	t.Helper()
	_, err := c.Write([]byte(cmd))
	require.NoError(t, err)
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err, "got %q so far", b.String())
		b.WriteString(line)
		if strings.HasPrefix(line, end) {
			return b.String()
		}
	}
}

// TestIMAPFlagCasing: a real IMAP client that stores every system flag
// gets them back on the wire as RFC 9051 writes them (\Seen, not go-imap
// memory server's \seen), over the plain and the implicit-TLS listener, in
// the STORE answer and in FETCH FLAGS; the message body, which holds the
// same words in lower case, is served unchanged. go-imap's client
// canonicalises flags as it parses them, so the test reads the server's
// bytes from the client's DebugWriter.
func TestIMAPFlagCasing(t *testing.T) {
	leaktest.Check(t)
	sys := mailtest.NewSystem(t, mailtest.Options{})
	body := "Subject: flags\r\n\r\nthe body says (\\seen \\deleted) and {3}\r\n"
	all := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	fetchFlags := regexp.MustCompile(`\* \d+ FETCH \([^\r\n]*FLAGS \(([^)]*)\)`)
	for _, tc := range []struct {
		name string
		dial func(w io.Writer) (*imapclient.Client, error)
	}{
		{"plain", func(w io.Writer) (*imapclient.Client, error) {
			return imapclient.DialInsecure(sys.Addr(mailtest.IMAP, mailtest.Plain), &imapclient.Options{DebugWriter: w})
		}},
		{"implicit TLS", func(w io.Writer) (*imapclient.Client, error) {
			return imapclient.DialTLS(sys.Addr(mailtest.IMAP, mailtest.ImplicitTLS), &imapclient.Options{TLSConfig: sys.ClientTLSConfig(), DebugWriter: w})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, sys.Deliver("demo@example.com", []byte(body)))
			var wire logBuffer
			c, err := tc.dial(&wire)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.Login("demo@example.com", "demo").Wait())
			sel, err := c.Select("INBOX", nil).Wait()
			require.NoError(t, err)
			last := imap.SeqSetNum(sel.NumMessages)
			stored, err := c.Store(last, &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: all}, nil).Collect()
			require.NoError(t, err)
			require.Len(t, stored, 1)
			assert.ElementsMatch(t, all, stored[0].Flags, "STORE answer")
			section := &imap.FetchItemBodySection{Peek: true}
			got, err := c.Fetch(last, &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.ElementsMatch(t, all, got[0].Flags, "FETCH FLAGS")
			assert.Equal(t, body, string(got[0].FindBodySection(section)))
			require.NoError(t, c.Logout().Wait())
			lists := fetchFlags.FindAllStringSubmatch(wire.String(), -1)
			require.Len(t, lists, 2, "the STORE and FETCH answers in %q", wire.String())
			for _, l := range lists {
				assert.ElementsMatch(t, []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`}, strings.Fields(l[1]), "on the wire")
			}
		})
	}
}
