package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// The fuzz targets feed arbitrary backend bytes (a greeting and the stream
// that follows it) to loginUpstream and check that it returns in bounded
// time without panicking, that no error shows the credentials, and that a
// successful login leaves every byte past its last answer readable on the
// Conn.
//
//	go test -run '^$' -fuzz FuzzUpstreamIMAP -fuzztime 1m ./auth/

// upFuzzConn is a backend whose answers are fixed in advance: reads come
// from the stream, then io.EOF; writes are discarded.
type upFuzzConn struct{ r *bytes.Reader }

func (c upFuzzConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (upFuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (upFuzzConn) Close() error                     { return nil }
func (upFuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (upFuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (upFuzzConn) SetDeadline(time.Time) error      { return nil }
func (upFuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (upFuzzConn) SetWriteDeadline(time.Time) error { return nil }

// upFuzzLogins are the credentials a fuzz input picks from (flags&3; 4
// adds an authorization identity, 8 NoLogin on SMTP, 16 Upgraded): an
// atom, a password that needs a literal, one that needs a quoted string,
// and one too long for an initial response on the command line.
var upFuzzLogins = []upstream{
	{User: upUser, Password: upPass},
	{User: upUser, Password: "pässwörd-" + upPass},
	{User: "joe smith", Password: `pa"ss\wd ` + upPass},
	{User: upUser, Password: strings.Repeat("x", 300) + upPass},
}

func fuzzUpstream(f *testing.F, proto starttls.Protocol, seeds [][2]string) {
	for _, s := range seeds {
		for flags := range uint8(32) {
			f.Add([]byte(s[0]), []byte(s[1]), flags)
		}
	}
	f.Fuzz(func(t *testing.T, greeting, stream []byte, flags uint8) {
		u := upFuzzLogins[flags&3]
		u.Protocol = proto
		if flags&4 != 0 {
			u.AuthzID = "box@example.com"
		}
		if proto == starttls.SMTP && flags&8 != 0 {
			u.NoLogin = true
		}
		fc := upFuzzConn{r: bytes.NewReader(stream)}
		be := &backend.Conn{Conn: fc, Greeting: greeting, Upgraded: flags&16 != 0}
		type result struct {
			rep upstreamReply
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := loginUpstream(context.Background(), be, u)
			done <- result{rep, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("loginUpstream did not return on a finite stream")
		}
		if res.err != nil {
			if !errors.Is(res.err, ErrBackendLogin) {
				t.Fatalf("error %v does not wrap ErrBackendLogin", res.err)
			}
			secrets := upSecrets(u)
			for _, s := range secrets {
				q := strconv.Quote(s) // as %q would show it
				secrets = append(secrets, q[1:len(q)-1])
			}
			for _, s := range secrets {
				if strings.Contains(res.err.Error(), s) {
					t.Fatalf("error %q shows the credential %q", res.err, s)
				}
				var r *upstreamRefusal
				if errors.As(res.err, &r) && strings.Contains(r.Text, s) {
					t.Fatalf("refusal text %q shows the credential %q", r.Text, s)
				}
			}
			return
		}
		// Success: the last answer ended with a line, and what follows it
		// is what the Conn returns next.
		consumed := len(stream) - fc.r.Len() - be.Buffered()
		if consumed <= 0 || stream[consumed-1] != '\n' {
			t.Fatalf("login ended at %d of %q, not after a line", consumed, stream)
		}
		rest, _ := io.ReadAll(be)
		if !bytes.Equal(rest, stream[consumed:]) {
			t.Fatalf("after the login the Conn returned %q, want %q", rest, stream[consumed:])
		}
		if proto != starttls.IMAP && res.rep.Capabilities != nil {
			t.Fatalf("%v login with capabilities %q", proto, res.rep.Capabilities)
		}
		for _, c := range res.rep.Capabilities {
			if strings.EqualFold(c, "STARTTLS") || strings.EqualFold(c, "LOGINDISABLED") || strings.HasPrefix(strings.ToUpper(c), "AUTH=") {
				t.Fatalf("capability %q handed to the client", c)
			}
		}
	})
}

func FuzzUpstreamIMAP(f *testing.F) {
	fuzzUpstream(f, starttls.IMAP, [][2]string{
		{"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] hi\r\n", "A1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 1 EXISTS\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN AUTH=LOGIN] hi\r\n", "+ \r\nA1 NO [UNAVAILABLE] later\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=LOGIN] hi\r\n", "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\nA1 OK in\r\n"},
		{"* OK hi\r\n", "* CAPABILITY IMAP4rev1 LITERAL- AUTH=PLAIN\r\nA1 OK done\r\n+ go\r\n+ go\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\nA2 OK in\r\n"},
		{"* OK [CAPABILITY IMAP4rev1] hi\r\n", "+ ok\r\n+ ok\r\nA1 BAD " + upPass + "\r\n"},
		{"* OK [CAPABILITY IMAP4rev1] hi\r\n", "* 1 FETCH (BODY[] {5}\r\nhello)\r\nA1 OK in\r\n"},
	})
}

func FuzzUpstreamSMTP(f *testing.F) {
	fuzzUpstream(f, starttls.SMTP, [][2]string{
		{"220 mx\r\n", "250-mx\r\n250 AUTH PLAIN LOGIN\r\n235 2.7.0 ok\r\n250 early\r\n"},
		{"220 mx\r\n", "250-mx\r\n250 AUTH PLAIN\r\n334 \r\n535 5.7.8 " + upPass + "\r\n"},
		{"220 mx\r\n", "250-mx\r\n250 AUTH=LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n454 4.7.0 later\r\n"},
		{"220 mx\r\n", "250-mx\r\n250 XCLIENT LOGIN NAME\r\n220 mx again\r\n250 mx\r\n"},
	})
}

func FuzzUpstreamPOP3(f *testing.F) {
	fuzzUpstream(f, starttls.POP3, [][2]string{
		{"+OK hi\r\n", "+OK\r\nUSER\r\n.\r\n+OK\r\n+OK Logged in.\r\n"},
		{"+OK hi\r\n", "+OK\r\nSASL PLAIN\r\n.\r\n+ \r\n-ERR [SYS/TEMP] later\r\n"},
		{"+OK hi\r\n", "-ERR no CAPA\r\n+OK\r\n-ERR [AUTH] PASS " + upPass + "\r\n"},
		{"+OK hi\r\n", "+OK\r\nSASL LOGIN\r\n.\r\n+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK\r\n"},
	})
}
