package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailedge/mailedge/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Seed 004's maintenance through the admin endpoint: a member is drained
// while a session runs on it; the session goes on, new logins routed
// there are refused (temporarily) until it is undrained.
func TestAdminDrain(t *testing.T) {
	metricsAddr := testnet.FreeAddr(t)
	d := startDemoGateway(t, io.Discard, true, "-metrics", metricsAddr)
	base := "http://" + metricsAddr
	pools := func() map[string]adminMember {
		t.Helper()
		resp, err := http.Get(base + "/admin/pools")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var ps []adminPool
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&ps))
		out := map[string]adminMember{}
		for _, p := range ps {
			for _, m := range p.Members {
				out[p.Name+" "+m.Name] = m
			}
		}
		return out
	}
	post := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Post(base+path, "application/x-www-form-urlencoded", nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	login := func() (*imapclient.Client, error) {
		c, err := imapclient.DialTLS(d.addrs["imaps"], &imapclient.Options{TLSConfig: clientTLS(d.roots, "mail.example.com")})
		require.NoError(t, err)
		if err := c.Login("demo@example.com", "demo").Wait(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}

	var key string
	for k, m := range pools() {
		if strings.HasPrefix(k, "a/imap ") {
			key = k
			assert.True(t, m.Up)
			assert.False(t, m.Draining)
		}
	}
	require.NotEmpty(t, key, "pool a/imap in %v", pools())
	member := strings.TrimPrefix(key, "a/imap ")

	held, err := login()
	require.NoError(t, err)
	defer held.Close()
	assert.Equal(t, 1, pools()[key].Sessions)

	code, body := post("/admin/drain?pool=a/imap&member=" + member)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"draining":true`)
	assert.True(t, pools()[key].Draining)

	_, err = login()
	require.Error(t, err, "no member to route to while draining")
	assert.Contains(t, err.Error(), "UNAVAILABLE")
	require.NoError(t, held.Noop().Wait(), "the session in flight goes on")

	code, body = post("/admin/undrain?pool=a/imap&member=" + member)
	require.Equal(t, http.StatusOK, code, body)
	c, err := login()
	require.NoError(t, err)
	c.Close()

	code, _ = post("/admin/drain?pool=nope&member=" + member)
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = post("/admin/drain?pool=a/imap&member=nope")
	assert.Equal(t, http.StatusNotFound, code)
	resp, err := http.Get(base + "/admin/drain?pool=a/imap&member=" + member)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestAdminFrom(t *testing.T) {
	g := &gateway{opts: &options{adminFrom: "10.0.0.0/8, 2001:db8::/32"}}
	require.NoError(t, g.buildAdmin())
	for ip, want := range map[string]bool{"127.0.0.1": true, "::1": true, "10.1.2.3": true, "2001:db8::5": true, "192.0.2.1": false} {
		assert.Equal(t, want, g.adminAllowed(netip.MustParseAddr(ip)), ip)
	}
	g = &gateway{opts: &options{adminFrom: "not a network"}}
	assert.ErrorContains(t, g.buildAdmin(), "-admin-from")
}
