package redisstore

import (
	"testing"

	"github.com/mailedge/mailedge/internal/redistest"
)

// redisServer is the test's private redis-server (internal/redistest).
type redisServer = redistest.Server

// startRedis starts one for the test, or skips (see redistest.Need).
func startRedis(t testing.TB) *redisServer { return redistest.Start(t) }
