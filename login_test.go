package mailedge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// TestProxyLogin takes the login at the edge with a real IMAP client: the
// Authenticator's pool is dialled, the proxy logs in there, the client
// sees the backend's capabilities and mailbox, and the session reports
// its user. A wrong password is refused in IMAP's words and counted
// against the source; after the Limiter's failures the source is locked
// out. No password is in any SessionInfo.
func TestProxyLogin(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	var mu sync.Mutex
	var infos []mailedge.SessionInfo
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	lim := &ratelimit.Limiter{Limits: ratelimit.Limits{LoginFailures: 3}}
	pools := map[string]auth.Backend{"example.com": &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP}}
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Implicit: true,
		Login: &auth.Server{
			FailureDelay: -1,
			Limiter:      lim,
			Pools:        func(name string) auth.Backend { return pools[name] },
			Authenticator: auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
				logger.Info("login", "request", r)
				if r.User == "demo@example.com" && string(r.Password) == "demo" {
					return &auth.Result{OK: true, Pool: "example.com"}, nil
				}
				return &auth.Result{}, nil
			}),
		},
		OnSession: func(in mailedge.SessionInfo) {
			logger.Info("session", "info", in)
			mu.Lock()
			infos = append(infos, in)
			mu.Unlock()
		},
	}
	addr := serve(t, p)

	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	assert.True(t, c.Caps().Has(imap.AuthCap("PLAIN")))
	err = c.Login("demo@example.com", "wrong-password").Wait()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "AUTHENTICATIONFAILED")
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	assert.False(t, c.Caps().Has(imap.AuthCap("PLAIN")), "capabilities after login are the backend's")
	mbox, err := c.Select("INBOX", nil).Wait()
	require.NoError(t, err)
	assert.NotNil(t, mbox)
	require.NoError(t, c.Logout().Wait())
	c.Close()

	// Two more failures from this source lock it out, on any session.
	for i := 0; i < 2; i++ {
		c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
		require.NoError(t, err)
		assert.Error(t, c.Login("demo@example.com", "wrong-password").Wait())
		c.Close()
	}
	c, err = imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	err = c.Login("demo@example.com", "demo").Wait()
	require.Error(t, err, "a locked-out source must be refused even with the right password")
	assert.Contains(t, err.Error(), "UNAVAILABLE")
	c.Close()

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(infos) == 4 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	var ok, failed int
	for _, in := range infos {
		switch in.Outcome {
		case mailedge.OutcomeOK:
			ok++
			assert.Equal(t, "demo@example.com", in.User)
			assert.Equal(t, f.addrs.IMAP, in.Member)
			assert.Positive(t, in.Stats.ServerToClient)
			assert.Positive(t, in.Stats.ClientToServer)
		case mailedge.OutcomeAuthFailed:
			failed++
			assert.Equal(t, "demo@example.com", in.User, "a refused session says who tried")
			assert.Empty(t, in.Member)
			assert.Positive(t, in.Stats.ClientToServer, "the login the client sent")
			assert.Positive(t, in.Stats.ServerToClient, "the greeting and the refusal")
		default:
			t.Errorf("outcome %s: %v", in.Outcome, in.Err)
		}
	}
	assert.Equal(t, 1, ok)
	assert.Equal(t, 3, failed)
	assert.NotContains(t, logs.String(), "wrong-password")
	assert.NotContains(t, logs.String(), "=demo ")
	assert.True(t, strings.Contains(logs.String(), "user=demo@example.com"), logs.String())
}

// TestProxyLoginCountsClientBytes: every byte the client sent is counted
// once, the login's and the commands it pipelined after it, which the
// login read and the copy forwarded.
func TestProxyLoginCountsClientBytes(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	sessions := make(chan mailedge.SessionInfo, 1)
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP},
		Login: &auth.Server{Authenticator: auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
			return &auth.Result{OK: true}, nil
		})},
		OnSession: func(in mailedge.SessionInfo) { sessions <- in },
	}
	addr := serve(t, p)
	c, err := tls.Dial("tcp", addr, f.roots)
	require.NoError(t, err)
	defer c.Close()
	sent := "a LOGIN demo@example.com demo\r\nb NOOP\r\n"
	_, err = io.WriteString(c, sent)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "b OK") {
			break
		}
	}
	_, err = io.WriteString(c, "c LOGOUT\r\n")
	require.NoError(t, err)
	sent += "c LOGOUT\r\n"
	rest, _ := io.ReadAll(br)
	assert.Contains(t, string(rest), "c OK")
	c.Close()
	in := <-sessions
	assert.Equal(t, int64(len(sent)), in.Stats.ClientToServer, "outcome %s %v", in.Outcome, in.Err)
}

// downStore is a fleet Store whose shared state is out of reach, set to
// fail closed: every Record fails with ratelimit.ErrUnavailable.
type downStore struct{}

func (downStore) Record(context.Context, ratelimit.Request) (ratelimit.Counts, error) {
	return ratelimit.Counts{}, fmt.Errorf("test store: %w", ratelimit.ErrUnavailable)
}

// A Store that is down refuses the login with a temporary failure the
// client may retry, and is not reported per login: the Store reports its
// outage itself (redisstore's OnError, once per outage).
func TestProxyLoginStoreDown(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	var reported []error
	var mu sync.Mutex
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP},
		Login: &auth.Server{
			FailureDelay: -1,
			Limiter:      &ratelimit.Limiter{Limits: ratelimit.Limits{LoginFailures: 3}, Store: downStore{}},
			Authenticator: auth.AuthenticatorFunc(func(context.Context, *auth.Request) (*auth.Result, error) {
				return &auth.Result{OK: true}, nil
			}),
			OnError: func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() },
		},
	}
	addr := serve(t, p)
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	defer c.Close()
	for range 2 {
		err = c.Login("demo@example.com", "demo").Wait()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "UNAVAILABLE", "a temporary refusal")
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, reported, "the Store's outage is not reported per login")
}
