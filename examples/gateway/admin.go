package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/mailedge/mailedge/backend"
	"github.com/mailedge/mailedge/ratelimit"
)

// The admin endpoint, beside /metrics: what an operator needs for
// maintenance (seed 004's "take a mail server out, wait for its sessions
// to end, bring it back"), answered only to loopback clients and to
// -admin-from networks, since it changes where sessions go.
//
//	GET  /admin/pools                          every pool and member: address, weight, health, draining, sessions, dials, failures
//	POST /admin/drain?pool=POOL&member=NAME    no new sessions for the member; those in flight run to their end
//	POST /admin/undrain?pool=POOL&member=NAME  back in rotation
func (g *gateway) registerAdmin(mux *http.ServeMux) {
	mux.Handle("GET /admin/pools", g.adminOnly(http.HandlerFunc(g.adminPools)))
	mux.Handle("POST /admin/drain", g.adminOnly(g.adminDrain(true)))
	mux.Handle("POST /admin/undrain", g.adminOnly(g.adminDrain(false)))
}

// adminPool is one pool in /admin/pools.
type adminPool struct {
	Name    string        `json:"name"`
	Members []adminMember `json:"members"`
}

// adminMember is one member in /admin/pools.
type adminMember struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	Up       bool   `json:"up"`
	Draining bool   `json:"draining"`
	Sessions int    `json:"sessions"`
	Dials    uint64 `json:"dials"`
	Failures uint64 `json:"failures"`
}

func (g *gateway) adminPools(w http.ResponseWriter, _ *http.Request) {
	pools := g.currentPools()
	names := make([]string, 0, len(pools))
	for name := range pools {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]adminPool, 0, len(names))
	for _, name := range names {
		p := adminPool{Name: name, Members: []adminMember{}}
		for _, m := range pools[name].Members() {
			p.Members = append(p.Members, memberJSON(m))
		}
		out = append(out, p)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// adminDrain sets a member's draining state and answers with its status.
func (g *gateway) adminDrain(draining bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		poolName, name := r.FormValue("pool"), r.FormValue("member")
		pool, ok := g.currentPools()[poolName]
		if !ok {
			http.Error(w, fmt.Sprintf("no pool %q", poolName), http.StatusNotFound)
			return
		}
		if _, ok := pool.Member(name); !ok {
			http.Error(w, fmt.Sprintf("no member %q in pool %q", name, poolName), http.StatusNotFound)
			return
		}
		pool.Drain(name, draining)
		st, _ := pool.Member(name)
		verb := "undrained"
		if draining {
			verb = "draining"
		}
		g.log.Info("admin: member "+verb, "pool", poolName, "member", name, "sessions", st.Active, "client", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(memberJSON(st))
	}
}

func memberJSON(m backend.MemberStatus) adminMember {
	return adminMember{Name: m.Name, Addr: m.Addr, Weight: m.Weight, Up: m.Up, Draining: m.Draining,
		Sessions: m.Active, Dials: m.Dials, Failures: m.Failures}
}

// currentPools returns the pools of the running configuration.
func (g *gateway) currentPools() map[string]*backend.Pool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.pools
}

// adminOnly answers 403 to clients outside loopback and -admin-from.
func (g *gateway) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !g.adminAllowed(ip.Unmap()) {
			http.Error(w, "admin endpoints answer loopback and -admin-from clients only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (g *gateway) adminAllowed(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	for _, p := range g.adminFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// buildAdmin reads -admin-from.
func (g *gateway) buildAdmin() error {
	if g.opts.adminFrom == "" {
		return nil
	}
	var err error
	if g.adminFrom, err = ratelimit.ParseNetworks(g.opts.adminFrom); err != nil {
		return fmt.Errorf("-admin-from: %w", err)
	}
	return nil
}
