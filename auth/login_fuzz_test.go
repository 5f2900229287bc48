package auth_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/starttls"
)

// fuzzSecret is the only password the fuzzed Authenticator accepts. It
// must never appear in an error.
const fuzzSecret = "fuzz-s3cret"

// FuzzLogin feeds arbitrary client bytes to the login dialogue of each
// protocol (the IMAP argument parser with its literals, the SASL
// exchanges, the POP3 and SMTP command loops) and checks that it ends
// without a panic or a hang, that a password never reaches an error, and
// that a session is only handed on after the Authenticator allowed it.
func FuzzLogin(f *testing.F) {
	for _, s := range []string{
		"a LOGIN u " + fuzzSecret + "\r\n",
		"a LOGIN {1}\r\nu {11+}\r\n" + fuzzSecret + "\r\nb NOOP\r\n",
		"a LOGIN \"u\\\"\" \"" + fuzzSecret + "\"\r\n",
		"a AUTHENTICATE PLAIN AHUAZnV6ei1zM2NyZXQ=\r\n",
		"a AUTHENTICATE LOGIN\r\ndQ==\r\n*\r\n",
		"a ID (\"name\" {3+}\r\nabc)\r\na FOO {5+}\r\nxxxxx\r\n",
		"USER u\r\nPASS " + fuzzSecret + "\r\nSTAT\r\n",
		"AUTH PLAIN\r\nAHUAZnV6ei1zM2NyZXQ=\r\n",
		"AUTH\r\nCAPA\r\nAPOP u x\r\n",
		"EHLO x\r\nAUTH LOGIN dQ==\r\nZnV6ei1zM2NyZXQ=\r\nMAIL FROM:<a>\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
		"a LOGIN {99999999999}\r\n",
		"\x00\xff\r\n\r\n\n",
	} {
		for p := 0; p < 3; p++ {
			f.Add(uint8(p), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, proto uint8, in []byte) {
		p := starttls.Protocol(proto % 3)
		relay := proto%6 >= 3
		srv := &auth.Server{
			AllowPlaintext: true,
			Relay:          relay,
			FailureDelay:   -1,
			MaxAttempts:    -1,
			Authenticator: auth.AuthenticatorFunc(func(ctx context.Context, r *auth.Request) (*auth.Result, error) {
				if string(r.Password) == fuzzSecret || r.Mechanism == auth.None {
					return &auth.Result{OK: true}, nil
				}
				return &auth.Result{Message: "no\r\n* OK injected"}, nil
			}),
		}
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			client.SetDeadline(time.Now().Add(5 * time.Second))
			go io.Copy(io.Discard, client)
			client.Write(in)
			time.Sleep(time.Millisecond)
			client.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sess := &starttls.Session{Protocol: p, Conn: server, Implicit: true}
		ls := &starttls.Server{Protocol: p, Mode: starttls.Disallow}
		dial := func(ctx context.Context, req *auth.Request, res *auth.Result) (*backend.Conn, error) {
			return nil, errors.New("no backend in the fuzzer")
		}
		out, err := srv.Login(ctx, ls, sess, auth.Peer{}, dial)
		server.Close()
		if out != nil {
			t.Fatalf("a session without a backend: %+v", out)
		}
		if err != nil && strings.Contains(err.Error(), fuzzSecret) {
			t.Fatalf("password in error: %v", err)
		}
		if errors.Is(err, context.DeadlineExceeded) && !bytes.Contains(in, []byte("{")) {
			t.Fatalf("dialogue hung: %v", err)
		}
	})
}
