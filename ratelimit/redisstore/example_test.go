package redisstore_test

import (
	"context"
	"log"
	"net/netip"
	"time"

	"github.com/mailedge/mailedge/ratelimit"
	"github.com/mailedge/mailedge/ratelimit/redisstore"
	"github.com/redis/go-redis/v9"
)

// Three gateways behind one load balancer, each running this: together
// they allow 15 connections in flight and 60 a minute per source, and
// lock a source out after 5 failed logins. Connections and messages fail
// open (each gateway counts alone while Redis is down), logins fail
// closed (refused with a temporary error).
func Example() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:6379",
		ContextTimeoutEnabled: true, // required: Timeout bounds every call
	})
	defer client.Close()
	store, err := redisstore.New(ctx, client, redisstore.Options{
		Replica: "gateway-1", // unique per process, for example the pod's name
		Logins:  redisstore.FailClosed,
		OnError: func(err error) {
			if err != nil {
				log.Printf("rate limits per replica only: %v", err)
			} else {
				log.Print("rate limits shared again")
			}
		},
	})
	if err != nil {
		log.Fatal(err) // a bad option; an unreachable Redis is not an error
	}
	defer store.Close() // after the connections have drained

	lim := &ratelimit.Limiter{
		Limits: ratelimit.Limits{InFlight: 15, ConnRate: 60, LoginFailures: 5, Lockout: 15 * time.Minute},
		Store:  store,
	}
	lease, err := lim.Admit(ctx, netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		log.Print(ratelimit.SMTPReply(err, "mx.example.com"))
		return
	}
	defer lease.Release()

	st := store.Stats() // for the gateway's metrics
	log.Printf("redis up: %v, calls %d, fallbacks %d", st.Up, st.Calls, st.Fallbacks)
}
