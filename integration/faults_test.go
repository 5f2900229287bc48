//go:build unix

package integration_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// haLogin runs one IMAPS session on the "ha" listener: greeting, LOGIN,
// LOGOUT. It returns the first line the gateway sent and any error.
func haLogin(e *env) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialFrom(ctx, clientIP, e.gw.addr["ha"])
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, e.tlsConfig(sniNames[0]))
	r := bufio.NewReader(tc)
	first, err := r.ReadString('\n')
	if err != nil {
		return first, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(first, "* OK") {
		return first, fmt.Errorf("greeting %q", first)
	}
	fmt.Fprintf(tc, "a LOGIN %s %s\r\nb LOGOUT\r\n", user, pass)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return first, fmt.Errorf("after LOGIN: %w", err)
		}
		if strings.HasPrefix(line, "a ") {
			if !strings.HasPrefix(line, "a OK") {
				return first, fmt.Errorf("LOGIN: %q", line)
			}
			return first, nil
		}
	}
}

// TestFailover stops the failover pool's members one after the other and
// starts them again: the checker marks each down and up (log lines), new
// sessions keep working while one member is up, and a client gets a
// prompt "* BYE [UNAVAILABLE]" when none is. It logs the timings.
func TestFailover(t *testing.T) {
	e := need(t)
	log := e.gw.log
	upRe, downRe := re(`msg="backend up"`), re(`msg="backend down"`)
	member := func(n string) *regexp.Regexp { return re(`pool=ha member=` + n + ` `) }
	// Fall (3) failures at Interval apart, each bounded by Timeout, plus slack.
	detect := 3*(haInterval+haTimeout) + 5*time.Second
	log.wait(t, 0, logWait, upRe, member("ha-a"))
	log.wait(t, 0, logWait, upRe, member("ha-b"))
	_, err := haLogin(e)
	require.NoError(t, err)

	// One member down: sessions still succeed, before and after the mark.
	mark := log.mark()
	t0 := time.Now()
	e.haA.stop()
	for i := range 4 {
		_, err := haLogin(e)
		require.NoError(t, err, "session %d with ha-a stopped", i)
	}
	log.wait(t, mark, detect, downRe, member("ha-a"))
	downA := time.Since(t0)
	mark = log.mark()
	for i := range 3 {
		_, err := haLogin(e)
		require.NoError(t, err, "session %d with ha-a down", i)
	}
	log.wait(t, mark, logWait, re(`msg=session`), re(`listener=ha `), re(`backend=ha-b`), re(`outcome=ok`))

	// No member up: a prompt, protocol-correct refusal.
	mark = log.mark()
	t1 := time.Now()
	e.haB.stop()
	log.wait(t, mark, detect, downRe, member("ha-b"))
	downB := time.Since(t1)
	t2 := time.Now()
	first, err := haLogin(e)
	refusal := time.Since(t2)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(first, "* BYE [UNAVAILABLE]"), "refusal %q", first)
	assert.Less(t, refusal, 5*time.Second, "refusal must be prompt, not a hang")

	// Restarted: back up, sessions work again.
	mark = log.mark()
	t3 := time.Now()
	require.NoError(t, e.haA.start())
	started := time.Since(t3)
	log.wait(t, mark, detect, upRe, member("ha-a"))
	upAgain := time.Since(t3)
	_, err = haLogin(e)
	require.NoError(t, err)
	mark = log.mark()
	require.NoError(t, e.haB.start())
	log.wait(t, mark, detect, upRe, member("ha-b"))

	t.Logf("failover timings (interval %v, timeout %v, downtime %v, fall 3): ha-a marked down %v after stop (sessions meanwhile: all OK); ha-b marked down %v after stop; refusal with no member up in %v (%q); ha-a up %v after restart (Dovecot ready after %v)",
		haInterval, haTimeout, haDownTime, downA.Round(time.Millisecond), downB.Round(time.Millisecond),
		refusal.Round(time.Millisecond), strings.TrimSpace(first), upAgain.Round(time.Millisecond), started.Round(time.Millisecond))
}

// TestCertificateRenewal overwrites the default certificate on disk and
// sends SIGHUP while clients keep handshaking: no handshake fails, and the
// new serial is served afterwards.
func TestCertificateRenewal(t *testing.T) {
	e := need(t)
	const loops = 2 // concurrent client loops
	name := sniNames[0]
	oldSerial := e.serials[name]
	var (
		mu                sync.Mutex
		ok                int
		failures          []string
		seen              = map[string]int{}
		reloaded          bool
		oldAfterReload    int
		stop              = make(chan struct{})
		warm, sawNew      = make(chan struct{}), make(chan struct{})
		warmOnce, newOnce sync.Once
		wg                sync.WaitGroup
	)
	handshake := func() {
		serial, err := serve(e, name)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures = append(failures, err.Error())
			return
		}
		ok++
		seen[serial]++
		if reloaded && serial == oldSerial {
			oldAfterReload++
		}
		if ok >= 20 {
			warmOnce.Do(func() { close(warm) })
		}
		if serial != oldSerial && seen[serial] >= 20 {
			newOnce.Do(func() { close(sawNew) })
		}
	}
	for range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					handshake()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	waitOrFail(t, warm, "20 handshakes before the renewal")

	mark := e.gw.log.mark()
	require.NoError(t, e.issue(name))
	newSerial := e.serials[name]
	require.NoError(t, e.gw.cmd.Process.Signal(syscall.SIGHUP))
	e.gw.log.wait(t, mark, logWait, re(`msg="certificates reloaded"`))
	mu.Lock()
	reloaded = true // handshakes finishing from now on may still be in flight with the old one
	mu.Unlock()
	waitOrFail(t, sawNew, "20 handshakes with the new certificate")

	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, failures, "handshakes failed during the renewal")
	assert.Positive(t, seen[oldSerial])
	assert.GreaterOrEqual(t, seen[newSerial], 20)
	assert.LessOrEqual(t, oldAfterReload, loops, "at most the handshakes in flight at the reload may see the old certificate")
	t.Logf("renewal: %d handshakes, %d with the old serial, %d with the new, %d failed", ok, seen[oldSerial], seen[newSerial], len(failures))
}

// serve handshakes with the IMAPS listener for name, verifying the chain,
// reads the greeting and returns the served leaf's serial.
func serve(e *env, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialFrom(ctx, clientIP, e.gw.addr["imaps"])
	if err != nil {
		return "", err
	}
	defer c.Close()
	tc := tls.Client(c, e.tlsConfig(name))
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("%X", tc.ConnectionState().PeerCertificates[0].SerialNumber), nil
}

func waitOrFail(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
