package mailedge_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge"
	"github.com/mailedge/mailedge/auth"
	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/bridge"
	"github.com/mailedge/mailedge/internal/leaktest"
	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/starttls"
)

// eventLog collects a Proxy's events by session.
type eventLog struct {
	mu       sync.Mutex
	sessions map[uint64][]mailedge.Event
	ended    chan uint64
}

func newEventLog() *eventLog {
	return &eventLog{sessions: make(map[uint64][]mailedge.Event), ended: make(chan uint64, 16)}
}

func (l *eventLog) add(e mailedge.Event) {
	l.mu.Lock()
	l.sessions[e.ID] = append(l.sessions[e.ID], e)
	l.mu.Unlock()
	if e.Stage == mailedge.StageEnded {
		l.ended <- e.ID
	}
}

// next waits for a session to end and returns its events.
func (l *eventLog) next(t *testing.T) []mailedge.Event {
	t.Helper()
	select {
	case id := <-l.ended:
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.sessions[id]
	case <-time.After(10 * time.Second):
		t.Fatal("no session ended")
		return nil
	}
}

func stages(evs []mailedge.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Stage.String())
	}
	return strings.Join(s, " ")
}

// Each session reports its stages as they happen, in order, with their
// durations, the TLS facts, the member and the user; the last is ended,
// with the SessionInfo.
func TestEvents(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	log := newEventLog()
	var infos []mailedge.SessionInfo
	var mu sync.Mutex
	lim := &ratelimit.Limiter{Limits: ratelimit.Limits{InFlight: 1}}
	p := f.imaps(bridge.Options{}, func(in mailedge.SessionInfo) { mu.Lock(); infos = append(infos, in); mu.Unlock() })
	p.Limiter = lim
	p.OnEvent = log.add
	addr := serve(t, p)

	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots.RootCAs, ServerName: "mail.example.com", NextProtos: []string{"imap"}})
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	_, err = r.ReadString('\n')
	require.NoError(t, err)

	// A second connection from the same source is over the in-flight limit.
	c2, err := tls.Dial("tcp", addr, f.roots)
	if err == nil {
		c2.SetDeadline(time.Now().Add(10 * time.Second))
		bufio.NewReader(c2).ReadString('\n')
		c2.Close()
	}
	refused := log.next(t)
	assert.Equal(t, "accepted admitted ended", stages(refused))
	assert.ErrorIs(t, refused[1].Err, ratelimit.ErrLimited)
	assert.Equal(t, mailedge.OutcomeLimited, refused[2].Info.Outcome)

	c.Close()
	evs := log.next(t)
	require.Equal(t, "accepted admitted client backend handover ended", stages(evs))
	id := evs[0].ID
	for i, e := range evs {
		assert.Equal(t, id, e.ID)
		assert.NoError(t, e.Err, e.Stage.String())
		assert.GreaterOrEqual(t, e.Duration, time.Duration(0))
		assert.NotNil(t, e.Client)
		if i > 0 {
			assert.False(t, e.Time.Before(evs[i-1].Time), "in order")
		}
	}
	assert.NotEqual(t, id, refused[0].ID)
	tlsEv := evs[2]
	require.NotNil(t, tlsEv.TLS)
	assert.Equal(t, uint16(tls.VersionTLS13), tlsEv.TLS.Version)
	assert.Equal(t, "mail.example.com", tlsEv.TLS.ServerName)
	assert.Equal(t, "imap", tlsEv.TLS.NegotiatedProtocol)
	assert.Equal(t, f.addrs.IMAP, evs[3].Member)
	assert.Empty(t, evs[3].Identity, "no PROXY header, XCLIENT or ID configured")
	end := evs[5]
	require.NotNil(t, end.Info)
	assert.Equal(t, mailedge.OutcomeOK, end.Info.Outcome)
	assert.Equal(t, end.Info.Duration, end.Duration)
	mu.Lock()
	assert.Len(t, infos, 2, "OnSession ran before the ended event")
	mu.Unlock()
}

// A login at the edge reports its backend dial and the login with its user;
// a failed one its error.
func TestEventsLogin(t *testing.T) {
	leaktest.Check(t)
	f := newFixture(t)
	log := newEventLog()
	p := &mailedge.Proxy{
		Server:   &starttls.Server{Protocol: starttls.IMAP, TLSConfig: f.cfg},
		Implicit: true,
		Backend:  &backend.Dialer{Addr: f.addrs.IMAP, Protocol: starttls.IMAP},
		Login: &auth.Server{FailureDelay: -1, MaxAttempts: 1,
			Authenticator: auth.AuthenticatorFunc(func(_ context.Context, r *auth.Request) (*auth.Result, error) {
				return &auth.Result{OK: string(r.Password) == "demo"}, nil
			})},
		OnEvent: log.add,
	}
	addr := serve(t, p)
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	require.NoError(t, c.Login("demo@example.com", "demo").Wait())
	require.NoError(t, c.Logout().Wait())
	c.Close()
	evs := log.next(t)
	require.Equal(t, "accepted client backend login ended", stages(evs))
	assert.Equal(t, "demo@example.com", evs[3].User)
	assert.GreaterOrEqual(t, evs[3].Duration, evs[2].Duration, "the login includes its dial")

	c, err = imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: f.roots})
	require.NoError(t, err)
	assert.Error(t, c.Login("demo@example.com", "wrong").Wait())
	c.Close()
	evs = log.next(t)
	require.Equal(t, "accepted client login ended", stages(evs))
	assert.ErrorIs(t, evs[2].Err, auth.ErrTooManyFailures)
	assert.Equal(t, "demo@example.com", evs[2].User)
	assert.Equal(t, mailedge.OutcomeAuthFailed, evs[3].Info.Outcome)
}
