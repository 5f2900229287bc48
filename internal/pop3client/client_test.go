package pop3client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/mailtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// step is one server turn: expect a command line (empty for none), then
// send reply (raw, with CRLFs).
type step struct{ expect, reply string }

// serve plays steps on conn and reports the first mismatch on the channel.
func serve(conn net.Conn, steps []step) <-chan error {
	done := make(chan error, 1)
	go func() {
		defer conn.Close()
		br := bufio.NewReader(conn)
		for _, s := range steps {
			if s.expect != "" {
				line, err := br.ReadString('\n')
				if err != nil {
					done <- err
					return
				}
				if line != s.expect+"\r\n" {
					done <- errors.New("got command " + line + "; want " + s.expect)
					return
				}
			}
			if _, err := conn.Write([]byte(s.reply)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

func TestClientDialogue(t *testing.T) {
	leaktest.Check(t)
	cli, srv := net.Pipe()
	done := serve(srv, []step{
		{"", "+OK POP3 ready <1.2@x>\r\n"},
		{"CAPA", "+OK list follows\r\nUSER\r\nSTLS\r\n.\r\n"},
		{"USER alice", "+OK\r\n"},
		{"PASS secret", "+OK maildrop locked\r\n"},
		{"STAT", "+OK 2 320\r\n"},
		{"QUIT", "+OK bye\r\n"},
	})
	ctx := context.Background()
	c := NewClient(cli)
	g, err := c.Greeting(ctx)
	require.NoError(t, err)
	assert.Equal(t, "POP3 ready <1.2@x>", g)
	caps, err := c.Capa(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"USER", "STLS"}, caps)
	require.NoError(t, c.User(ctx, "alice"))
	require.NoError(t, c.Pass(ctx, "secret"))
	n, size, err := c.Stat(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, int64(320), size)
	require.NoError(t, c.Quit(ctx))
	require.NoError(t, <-done)
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		run   func(context.Context, *Client) error
		want  error
	}{
		{
			name:  "err greeting",
			steps: []step{{"", "-ERR too busy\r\n"}},
			run:   func(ctx context.Context, c *Client) error { _, err := c.Greeting(ctx); return err },
			want:  &Error{Text: "too busy"},
		},
		{
			name:  "garbage greeting",
			steps: []step{{"", "220 smtp here\r\n"}},
			run:   func(ctx context.Context, c *Client) error { _, err := c.Greeting(ctx); return err },
			want:  ErrMalformed,
		},
		{
			name:  "wrong password",
			steps: []step{{"", "+OK\r\n"}, {"USER bob", "+OK\r\n"}, {"PASS x", "-ERR [AUTH] invalid\r\n"}},
			run: func(ctx context.Context, c *Client) error {
				_, _ = c.Greeting(ctx)
				_ = c.User(ctx, "bob")
				return c.Pass(ctx, "x")
			},
			want: &Error{Text: "[AUTH] invalid"},
		},
		{
			name:  "bad stat",
			steps: []step{{"", "+OK\r\n"}, {"STAT", "+OK lots\r\n"}},
			run: func(ctx context.Context, c *Client) error {
				_, _ = c.Greeting(ctx)
				_, _, err := c.Stat(ctx)
				return err
			},
			want: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaktest.Check(t)
			cli, srv := net.Pipe()
			done := serve(srv, tt.steps)
			c := NewClient(cli)
			err := tt.run(context.Background(), c)
			var perr *Error
			if want, ok := tt.want.(*Error); ok {
				require.ErrorAs(t, err, &perr)
				assert.Equal(t, want.Text, perr.Text)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
			require.NoError(t, <-done)
			c.Close()
		})
	}
}

func TestClientBadArgument(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	c := NewClient(cli)
	defer c.Close()
	assert.ErrorIs(t, c.User(context.Background(), "a\r\nDELE 1"), ErrBadArgument)
}

// TestClientContextDeadline proves a silent server cannot hold a call past
// its context deadline.
func TestClientContextDeadline(t *testing.T) {
	leaktest.Check(t)
	cli, srv := net.Pipe()
	defer srv.Close()
	c := NewClient(cli)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.Greeting(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestClientContextCancel(t *testing.T) {
	leaktest.Check(t)
	cli, srv := net.Pipe()
	defer srv.Close()
	c := NewClient(cli)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Greeting(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ca, err := mailtest.GenerateCA("pop3client test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue(mailtest.CertOptions{}, "pop.example.test")
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		&tls.Config{RootCAs: ca.Pool(), ServerName: "pop.example.test"}
}

func TestClientStartTLS(t *testing.T) {
	leaktest.Check(t)
	scfg, ccfg := tlsConfigs(t)
	cli, srv := net.Pipe()
	done := make(chan error, 1)
	go func() {
		defer srv.Close()
		br := bufio.NewReader(srv)
		_, _ = srv.Write([]byte("+OK ready\r\n"))
		if line, err := br.ReadString('\n'); err != nil || line != "STLS\r\n" {
			done <- errors.New("want STLS")
			return
		}
		_, _ = srv.Write([]byte("+OK begin TLS\r\n"))
		ts := tls.Server(srv, scfg)
		tr := bufio.NewReader(ts)
		if line, err := tr.ReadString('\n'); err != nil || line != "QUIT\r\n" {
			done <- errors.New("want QUIT over TLS")
			return
		}
		_, _ = ts.Write([]byte("+OK bye\r\n"))
		done <- nil
	}()
	ctx := context.Background()
	c := NewClient(cli)
	_, err := c.Greeting(ctx)
	require.NoError(t, err)
	require.NoError(t, c.StartTLS(ctx, ccfg))
	_, isTLS := c.Conn().(*tls.Conn)
	assert.True(t, isTLS)
	require.NoError(t, c.Quit(ctx))
	require.NoError(t, <-done)
}

func TestClientStartTLSInjection(t *testing.T) {
	leaktest.Check(t)
	cli, srv := net.Pipe()
	// The +OK and the injected line arrive in one write, so both sit in the
	// client's buffer when the reply is parsed.
	done := serve(srv, []step{{"", "+OK\r\n"}, {"STLS", "+OK go\r\n+OK injected\r\n"}})
	c := NewClient(cli)
	defer c.Close()
	ctx := context.Background()
	_, err := c.Greeting(ctx)
	require.NoError(t, err)
	assert.ErrorIs(t, c.StartTLS(ctx, nil), ErrInjection)
	require.NoError(t, <-done)
}
