package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/mailedge/mailedge/monitor"
	"github.com/mailedge/mailedge/starttls"
)

func TestTLSPolicyFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown cipher", []string{"-tls-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES128-FOO"}, `-tls-ciphers: cipher suite "ECDHE-RSA-AES128-FOO": unknown`},
		{"TLS 1.3 cipher", []string{"-tls-ciphers", "TLS_AES_128_GCM_SHA256"}, `"TLS_AES_128_GCM_SHA256": a TLS 1.3 suite`},
		{"no cipher", []string{"-tls-ciphers", ","}, "-tls-ciphers: no cipher suite given"},
		{"tls-min 1.1", []string{"-tls-min", "1.1"}, `-tls-min: "1.1": want 1.2 or 1.3`},
		{"ticket-lifetime zero", []string{"-ticket-lifetime", "0s"}, `-ticket-lifetime: "0s": want a positive duration`},
		{"ticket-lifetime above 7 days", []string{"-ticket-lifetime", "200h"}, "at most that"},
		{"timeouts no protocol", []string{"-timeouts", "idle=1m"}, `-timeouts: "idle=1m": want PROTO:`},
		{"timeouts protocol", []string{"-timeouts", "http:idle=1m"}, `protocol "http"`},
		{"timeouts key", []string{"-timeouts", "imap:login=1m"}, `unknown timeout "login"`},
		{"timeouts duration", []string{"-timeouts", "imap:pretls=soon"}, `pretls="soon"`},
		{"timeouts twice", []string{"-timeouts", "imap:idle=1m", "-timeouts", "imap:pretls=1m"}, "imap given twice"},
		{"rise", []string{"-backend", "x=127.0.0.1:1,rise=0"}, `rise="0": want a positive integer`},
		{"fall", []string{"-backend", "x=127.0.0.1:1,fall=many"}, `fall="many"`},
		{"jitter", []string{"-backend", "x=127.0.0.1:1,jitter=0.9"}, `jitter="0.9"`},
		{"jitter NaN", []string{"-backend", "x=127.0.0.1:1,jitter=NaN"}, `jitter="NaN"`},
		{"jitter 2s", []string{"-backend", "x=127.0.0.1:1,jitter=2s"}, `jitter="2s"`},
		{"mailbox without imap probe", []string{"-backend", "x=127.0.0.1:1,probe=smtp,mailbox=Sent"}, "options of probe=imap"},
		{"mailbox quote", []string{"-backend", `x=127.0.0.1:1,probe=imap,mailbox=a"b`}, "quotes"},
		{"identity", []string{"-backend", "x=127.0.0.1:1,xclient,identity=maybe"}, `identity="maybe"`},
		{"identity without xclient", []string{"-backend", "x=127.0.0.1:1,identity=besteffort"}, "applies to xclient or imapid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tt.args, io.Discard, &stderr)
			assert.NotZero(t, code)
			assert.Contains(t, stderr.String(), tt.want)
		})
	}
}

func TestTLSPolicyParse(t *testing.T) {
	ids, err := parseCiphers("ecdhe-ecdsa-aes128-gcm-sha256:TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, ECDHE-ECDSA-AES128-GCM-SHA256")
	require.NoError(t, err)
	assert.Equal(t, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, ids)
	c := cipherList(ids)
	assert.Equal(t, "ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384", c.String())

	o, err := parseFlags([]string{"-tls-min", "1.3", "-ticket-lifetime", "12h", "-tls-compat", "-any-alpn",
		"-timeouts", "imap:pretls=60s,handshake=15s,idle=31m", "-timeouts", "SMTP:idle=off",
		"-backend", "x=127.0.0.1:1,probe=imap,rise=2,fall=4,jitter=20%,mailbox=Archive,examine,imapid,identity=besteffort",
		"-backend", "y=127.0.0.1:2,jitter=0", "-backend", "z=127.0.0.1:3,jitter=0.3,xclient,identity=strict"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "1.3", o.tls.minVersion.String())
	assert.Equal(t, "12h0m0s", o.tls.ticketLifetime.String())
	assert.True(t, o.tls.compat)
	assert.True(t, o.tls.anyALPN)
	assert.Equal(t, protoTimeoutMap{"imap": {PreTLS: time.Minute, Handshake: 15 * time.Second, Idle: 31 * time.Minute},
		"smtp": {Idle: -1}}, o.tls.timeouts)
	x, y, z := o.backends[0], o.backends[1], o.backends[2]
	assert.Equal(t, []any{2, 4, 0.2, "Archive", true, true}, []any{x.Rise, x.Fall, x.Jitter, x.Mailbox, x.Examine, x.IdentityBestEffort})
	assert.Equal(t, -1.0, y.Jitter, "jitter=0 is none, not the Checker's default")
	assert.Equal(t, 0.3, z.Jitter)
	assert.False(t, z.IdentityBestEffort)

	off, err := parseFlags([]string{"-ticket-lifetime", "off"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "off", off.tls.ticketLifetime.String())
}

// startTLSGateway is the demo gateway with extra flags, its Build hooked
// by before (called after build, before anything listens).
func startTLSGateway(t *testing.T, before func(*gateway), extra ...string) (map[string]string, *x509.CertPool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ds, err := startDemo(ctx, t.TempDir(), false, true, quiet)
	require.NoError(t, err)
	o, err := parseFlags(append(ds.args, extra...), io.Discard)
	require.NoError(t, err)
	g, err := build(o, quiet)
	require.NoError(t, err)
	if before != nil {
		before(g)
	}
	require.NoError(t, g.start(ctx, make(chan os.Signal)))
	t.Cleanup(func() {
		cancel()
		g.shutdown(5 * time.Second)
		ds.close()
	})
	addrs := make(map[string]string)
	for i, l := range g.listeners {
		addrs[g.specs[i].Name] = l.Addr().String()
	}
	pem, err := os.ReadFile(ds.caFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	return addrs, roots
}

// imapsHello makes a TLS connection to addr with cfg and reads the IMAP
// greeting (after the TLS 1.3 tickets). It returns the state.
func imapsHello(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "* OK"), "greeting %q", line)
	return c.(*tls.Conn).ConnectionState(), nil
}

// TestTLSPolicyFlagsEffect: each TLS flag on a listener, seen by a client.
func TestTLSPolicyFlagsEffect(t *testing.T) {
	tls12 := func(roots *x509.CertPool, suites ...uint16) *tls.Config {
		c := clientTLS(roots, "mail.example.com")
		c.MaxVersion, c.CipherSuites = tls.VersionTLS12, suites
		return c
	}
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	gcm128 := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	gcm256 := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	h2 := func(roots *x509.CertPool) *tls.Config {
		c := clientTLS(roots, "mail.example.com")
		c.NextProtos = []string{"h2"}
		return c
	}
	type dial struct {
		what   string
		client func(*x509.CertPool) *tls.Config
		ok     bool
	}
	for _, tt := range []struct {
		name  string
		flags []string
		dials []dial
	}{
		{"default", nil, []dial{
			{"CBC only", func(r *x509.CertPool) *tls.Config { return tls12(r, cbc...) }, false},
			{"GCM", func(r *x509.CertPool) *tls.Config { return tls12(r, gcm128...) }, true},
			{"ALPN h2", h2, false},
		}},
		{"tls-compat", []string{"-tls-compat"}, []dial{
			{"CBC only", func(r *x509.CertPool) *tls.Config { return tls12(r, cbc...) }, true},
		}},
		{"tls-ciphers", []string{"-tls-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}, []dial{
			{"AES-128-GCM only", func(r *x509.CertPool) *tls.Config { return tls12(r, gcm128...) }, false},
			{"AES-256-GCM", func(r *x509.CertPool) *tls.Config { return tls12(r, gcm256...) }, true},
		}},
		{"tls-min", []string{"-tls-min", "1.3"}, []dial{
			{"TLS 1.2", func(r *x509.CertPool) *tls.Config { return tls12(r, gcm128...) }, false},
			{"TLS 1.3", func(r *x509.CertPool) *tls.Config { return clientTLS(r, "mail.example.com") }, true},
		}},
		{"any-alpn", []string{"-any-alpn"}, []dial{{"ALPN h2", h2, true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addrs, roots := startTLSGateway(t, nil, tt.flags...)
			for _, d := range tt.dials {
				_, err := imapsHello(t, addrs["imaps"], d.client(roots))
				if d.ok {
					assert.NoError(t, err, d.what)
				} else {
					assert.Error(t, err, d.what)
				}
			}
		})
	}
}

// TestTicketLifetimeFlag: with -ticket-lifetime 1h a session resumes at
// 30 minutes and not at 2 hours; without it, it resumes at 2 hours; with
// off, never.
func TestTicketLifetimeFlag(t *testing.T) {
	for _, tt := range []struct {
		name       string
		flags      []string
		at30m, at2 bool
	}{
		{"1h", []string{"-ticket-lifetime", "1h"}, true, false},
		{"default", nil, true, true},
		{"off", []string{"-ticket-lifetime", "off"}, false, false},
	} {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(tt.name+"/"+tls.VersionName(v), func(t *testing.T) {
				clock := new(testnet.Clock)
				clock.Set(time.Now())
				t0 := clock.Now()
				addrs, roots := startTLSGateway(t, func(g *gateway) {
					for _, s := range g.services {
						s.tlsConfig.Time = clock.Now // before any handshake
					}
				}, tt.flags...)
				cfg := clientTLS(roots, "mail.example.com")
				cfg.MaxVersion = v
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				resumed := func(at time.Duration) bool {
					t.Helper()
					clock.Set(t0.Add(at))
					st, err := imapsHello(t, addrs["imaps"], cfg)
					require.NoError(t, err)
					return st.DidResume
				}
				assert.False(t, resumed(0))
				assert.Equal(t, tt.at30m, resumed(30*time.Minute), "30m")
				// A fresh session from the first handshake only: one
				// resumed at 30m would carry a TLS 1.3 ticket of its own.
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				assert.False(t, resumed(0))
				assert.Equal(t, tt.at2, resumed(2*time.Hour), "2h")
			})
		}
	}
}

// TestTimeoutsFlag: -timeouts imap:pretls=1s closes the STARTTLS IMAP
// listener on a client that says nothing after the greeting, long before
// the default 5 minutes; the other fields reach the Proxy and the Server.
func TestTimeoutsFlag(t *testing.T) {
	var imapProxy, smtpServerTimeout = new(struct {
		pretls, handshake, idle time.Duration
	}), time.Duration(0)
	addrs, _ := startTLSGateway(t, func(g *gateway) {
		for i, s := range g.services {
			switch g.specs[i].Name {
			case "imap":
				imapProxy.pretls, imapProxy.handshake, imapProxy.idle = s.proxy.Server.Timeout, s.proxy.Server.HandshakeTimeout, s.proxy.Bridge.IdleTimeout
			case "submission":
				smtpServerTimeout = s.proxy.Server.Timeout
			}
		}
	}, "-timeouts", "imap:pretls=1s,handshake=7s,idle=45m")
	assert.Equal(t, time.Second, imapProxy.pretls)
	assert.Equal(t, 7*time.Second, imapProxy.handshake)
	assert.Equal(t, 45*time.Minute, imapProxy.idle)
	assert.Zero(t, smtpServerTimeout, "SMTP keeps the library's default")

	c, err := net.Dial("tcp", addrs["imap"])
	require.NoError(t, err)
	defer c.Close()
	// Far below the default 5 minutes: the bound of this test, not a
	// measurement.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(60*time.Second)))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(greeting, "* OK"), greeting)
	rest, err := io.ReadAll(r)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the gateway kept the silent client")
	t.Logf("after the greeting: %q, %v", rest, err)
}

// TestBackendCheckFlags: rise=, fall= and jitter= reach the Checker;
// mailbox= and examine reach the IMAP probe, which fails on a mailbox the
// demo backend lacks; identity=besteffort lets a backend without ID in.
func TestBackendCheckFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ds, err := startDemo(ctx, t.TempDir(), false, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer ds.close()
	var imapAddr string
	for i, a := range ds.args {
		if a == "-backend" && strings.HasPrefix(ds.args[i+1], "a/imap=") {
			imapAddr, _, _ = strings.Cut(strings.TrimPrefix(ds.args[i+1], "a/imap="), ",")
		}
	}
	require.NotEmpty(t, imapAddr)

	o, err := parseFlags([]string{"-listen", "imap=127.0.0.1:0,proto=imap,tls=starttls,pool=imap",
		"-backend", "imap=" + imapAddr + ",name=one,probe=imap,user=demo@example.com,pass=demo,mailbox=NoSuchBox,examine,rise=2,fall=5,jitter=0.25",
		"-backend", "imap=" + imapAddr + ",name=two,probe=imap,user=demo@example.com,pass=demo,mailbox=INBOX,examine"}, io.Discard)
	require.NoError(t, err)
	g := &gateway{opts: o, pools: make(map[string]*backend.Pool), poolProto: make(map[string]starttls.Protocol)}
	require.NoError(t, g.buildPools())
	require.Len(t, g.checkers, 2)
	c := g.checkers[0].c
	assert.Equal(t, []any{2, 5, 0.25}, []any{c.Rise, c.Fall, c.Jitter})
	assert.Equal(t, []any{0, 0, 0.0}, []any{g.checkers[1].c.Rise, g.checkers[1].c.Fall, g.checkers[1].c.Jitter})
	missing := c.Probe.Probe(ctx, imapAddr)
	assert.False(t, missing.OK, "EXAMINE NoSuchBox")
	assert.ErrorContains(t, missing.Err, "NoSuchBox")
	inbox := g.checkers[1].c.Probe.Probe(ctx, imapAddr)
	assert.True(t, inbox.OK, "EXAMINE INBOX: %v", inbox.Err)
	assert.IsType(t, monitor.IMAP{}, c.Probe)

	// A backend that does not offer ID.
	noID := testnet.Serve(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.WriteString(c, "* OK [CAPABILITY IMAP4rev1] no ID here\r\n")
		_, _ = io.Copy(io.Discard, c)
	})
	for _, tt := range []struct {
		opts string
		ok   bool
	}{{"imapid", false}, {"imapid,identity=strict", false}, {"imapid,identity=besteffort", true}} {
		b, err := parseBackend("x=" + noID + "," + tt.opts)
		require.NoError(t, err)
		d, err := g.dialer(b, starttls.IMAP)
		require.NoError(t, err)
		conn, err := d.Dial(ctx, backend.ClientInfo{Src: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 4000}})
		if !tt.ok {
			assert.ErrorIs(t, err, backend.ErrIdentity, tt.opts)
			continue
		}
		require.NoError(t, err, tt.opts)
		conn.Close()
	}
}
