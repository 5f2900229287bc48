package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailedge/mailedge/ratelimit/redisstore"
	"github.com/mailedge/mailedge/sni/ticketkeys"
)

// The state a fleet of gateways shares (docs/scale-out.md): with -redis the
// Limiter's counters live in Redis (ratelimit/redisstore), so listeners
// with limit and the login limits of listeners with auth hold across every
// replica; with -ticket-keys every listener's TLS config gets the fleet's
// session-ticket keys (sni/ticketkeys), so a session resumes on any
// replica.

// redisLog receives go-redis's own log lines (a failed dial, a pool
// retry), which repeat for as long as Redis is down: they go to the
// gateway's log at debug level, since the Store's OnError reports each
// outage once at warn. The go-redis logger is a process-wide setting, set
// once in init, before any client exists; it writes to the log of the
// latest gateway built (there is one in the program).
var redisLog atomic.Pointer[slog.Logger]

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if l := redisLog.Load(); l != nil {
		l.Debug("redis client", "detail", fmt.Sprintf(format, v...))
	}
}

func init() { redis.SetLogger(redisLogger{}) }

// redisClient builds the go-redis client of -redis: host:port, or a
// redis:// or rediss:// URL (password, database and TLS from it), the
// password from -redis-password-file if given. Calls are bounded by their
// context (ContextTimeoutEnabled), as redisstore requires.
func redisClient(o *options) (*redis.Client, error) {
	var opt *redis.Options
	if strings.Contains(o.redis, "://") {
		var err error
		if opt, err = redis.ParseURL(o.redis); err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
	} else {
		opt = &redis.Options{Addr: o.redis}
	}
	if o.redisPasswordFile != "" {
		b, err := os.ReadFile(o.redisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("-redis-password-file: %w", err)
		}
		opt.Password = strings.TrimRight(string(b), "\r\n")
	}
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// parseRedisFail reads -redis-fail: connections=open|closed,
// messages=open|closed, logins=open|closed; an omitted class fails open.
func parseRedisFail(s string) (conns, msgs, logins redisstore.Policy, err error) {
	classes := map[string]*redisstore.Policy{"connections": &conns, "messages": &msgs, "logins": &logins}
	if s == "" {
		return
	}
	for _, p := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		dst, ok := classes[k]
		if !ok {
			return 0, 0, 0, fmt.Errorf("-redis-fail: unknown class %q (want connections, messages, logins)", k)
		}
		switch v {
		case "open":
			*dst = redisstore.FailOpen
		case "closed":
			*dst = redisstore.FailClosed
		default:
			return 0, 0, 0, fmt.Errorf("-redis-fail %s=%q: want open or closed", k, v)
		}
	}
	return
}

// replicaName is -replica, or the host name (the pod's name in
// Kubernetes).
func replicaName(o *options) string {
	if o.replica != "" {
		return o.replica
	}
	h, _ := os.Hostname()
	return h
}

// buildShared connects the Limiter to Redis when -redis is given. It runs
// after buildLimiter and before the services, which share g.limiter.
func (g *gateway) buildShared() error {
	o := g.opts
	if o.redis == "" {
		if o.redisPasswordFile != "" || o.redisFail != "" {
			return errors.New("-redis-password-file and -redis-fail need -redis")
		}
		if o.ticketKeys == "redis" {
			return errors.New("-ticket-keys redis needs -redis")
		}
		return nil
	}
	conns, msgs, logins, err := parseRedisFail(o.redisFail)
	if err != nil {
		return err
	}
	redisLog.Store(g.log)
	if g.redis, err = redisClient(o); err != nil {
		return err
	}
	replica := replicaName(o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	g.store, err = redisstore.New(ctx, g.redis, redisstore.Options{
		Replica:     replica,
		Timeout:     o.redisTimeout,
		LeaseTTL:    o.redisLease,
		Connections: conns,
		Messages:    msgs,
		Logins:      logins,
		OnError: func(err error) {
			// Called on changes of state only: one line per outage.
			if err != nil {
				g.log.Warn("redis unavailable: limits apply per -redis-fail until it answers", "err", err,
					"connections", conns.String(), "messages", msgs.String(), "logins", logins.String())
			} else {
				g.log.Info("redis answers again: limits are fleet-wide")
			}
		},
	})
	if err != nil {
		g.redis.Close()
		g.redis = nil
		return fmt.Errorf("-redis: %w", err)
	}
	g.limiter.Store = g.store
	g.log.Info("limits shared through redis", "replica", g.store.Replica(), "addr", g.redis.Options().Addr,
		"connections", conns.String(), "messages", msgs.String(), "logins", logins.String())
	return nil
}

// buildTicketKeys sets up the Rotator of -ticket-keys over every
// listener's TLS config. The configs are built once (certificate reloads
// swap the certificates behind GetCertificate, not the configs), so adding
// them here covers the gateway's life.
func (g *gateway) buildTicketKeys() error {
	o := g.opts
	if o.ticketKeys == "" {
		return nil
	}
	var src ticketkeys.Source
	if o.ticketKeys == "redis" {
		if g.redis == nil {
			return errors.New("-ticket-keys redis needs -redis")
		}
		if o.ticketRotate <= 0 {
			return errors.New("-ticket-rotate: want a positive duration")
		}
		src = &ticketkeys.RedisSource{Client: g.redis, Rotate: o.ticketRotate}
	} else {
		src = ticketkeys.FileSource{Path: o.ticketKeys}
	}
	g.rotator = &ticketkeys.Rotator{
		Source: src,
		Apply: func(keys [][32]byte) {
			g.log.Info("ticket keys loaded", "source", o.ticketKeys, "keys", len(keys), "encrypting", ticketkeys.Fingerprint(keys[0]))
		},
		OnError: func(err error) {
			g.log.Warn("ticket keys: source unavailable; keeping the last keys", "source", o.ticketKeys, "err", err,
				"keys", g.rotator.Status().Keys)
		},
		OnRecover: func() { g.log.Info("ticket keys: source answers again", "source", o.ticketKeys) },
	}
	for _, s := range g.services {
		g.rotator.Add(s.tlsConfig)
	}
	g.metrics.addTicketKeys(g.rotator)
	return nil
}

// closeShared releases the lease and the client: after the drain, so the
// other replicas count this one's connections until they are gone.
func (g *gateway) closeShared() {
	if g.store != nil {
		if err := g.store.Close(); err != nil {
			g.log.Warn("redis: releasing the lease", "err", err)
		}
	}
}

// closeRedis closes the client once nothing uses it.
func (g *gateway) closeRedis() {
	if g.redis != nil {
		g.redis.Close()
	}
}
