package ticketkeys

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The defaults of RedisSource.
const (
	// DefaultRedisKey is the Redis key of the list when RedisSource.Key
	// is empty.
	DefaultRedisKey = "mailedge:tls-ticket-keys"
	// DefaultRotate is RedisSource.Rotate's default, crypto/tls's own
	// rotation period for its automatic keys.
	DefaultRotate = 24 * time.Hour
	// DefaultGrace is RedisSource.Grace's default.
	DefaultGrace = 2
	// maxLead caps the default Lead.
	maxLead = 5 * time.Minute
)

// entryLen is the length of an entry of the list: the key's creation time
// in Redis's clock, unix milliseconds as 8 bytes big-endian, then the key.
const entryLen = 8 + 32

// RedisSource keeps the keys in a Redis list, newest first, and rotates
// them: the first replica whose poll finds the newest key older than
// Rotate pushes a new one, and every replica reads the list.
//
// Each poll is one round trip, a Lua script (EVALSHA) that runs atomically
// in Redis: it reads Redis's own clock (TIME, so replicas' clocks do not
// matter), pushes the candidate key that the poll brings (32 bytes from
// crypto/rand) only if the newest entry is missing or at least Rotate old,
// trims the list, and returns it. Because the check and the push are one
// script, no two replicas can both rotate within a period and no lock is
// needed (a SET NX lock would only add a second round trip and a lock
// that can expire mid-rotation); the candidates of the other polls are
// discarded. Each rotation sets the list to expire Grace+2 periods later
// (Grace+3 with a Lead), so the keys of a fleet that is gone do not stay
// behind.
//
// A new key is not used to encrypt at once: for Lead after its creation it
// only decrypts (it is returned second), so that every replica has it by
// the time any replica issues tickets with it. Set Lead above the
// Rotator's Interval plus the time a poll may take. A key still decrypts
// for at least Grace rotations after it stopped encrypting.
//
// If Redis loses the list (a restart without persistence, a flush), the
// next poll starts a new one: tickets issued before then are not resumed,
// and the fleet agrees again after one poll of each replica.
//
// The zero value is not usable: Client is required. The other fields have
// defaults. Works with a single Redis, Sentinel or Cluster (the script
// touches one key).
type RedisSource struct {
	// Client is the Redis client, shared with other users of the same
	// Redis if so wished.
	Client redis.UniversalClient
	// Key is the Redis key of the list. If empty, DefaultRedisKey.
	Key string
	// Rotate is how long a key encrypts new tickets before the next one
	// replaces it. If zero, DefaultRotate (a day). At least a millisecond.
	Rotate time.Duration
	// Grace is the number of previous keys kept for decryption. If zero,
	// DefaultGrace; negative is an error.
	Grace int
	// Lead is how long a new key only decrypts before it encrypts. If
	// zero, a quarter of Rotate, at most five minutes; if negative, none.
	// It must be shorter than Rotate.
	Lead time.Duration
}

// rotateScript is the poll. KEYS[1] is the list; ARGV[1] the candidate key
// (32 bytes), ARGV[2] Rotate in milliseconds, ARGV[3] the number of entries
// kept, ARGV[4] the list's time to live in milliseconds. It returns Redis's
// clock (milliseconds), whether it rotated (1 or 0), and the list, newest
// first. An entry is 8 bytes of big-endian creation time, then the key.
//
// Lua numbers are doubles: milliseconds since 1970 stay exact (below
// 2^53) through the byte arithmetic.
var rotateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rotate = tonumber(ARGV[2])
local head = redis.call('LINDEX', KEYS[1], 0)
local push = false
if not head then
  push = true
else
  if string.len(head) ~= 40 then
    return redis.error_reply('ticketkeys: malformed newest entry in the list')
  end
  local created = 0
  for i = 1, 8 do
    created = created * 256 + string.byte(head, i)
  end
  -- Rotate when the newest key is old enough, or dated so far ahead that
  -- the clock must have been replaced.
  if now - created >= rotate or created - now > rotate then
    push = true
  end
end
if push then
  local b = {}
  local n = now
  for i = 8, 1, -1 do
    b[i] = n % 256
    n = math.floor(n / 256)
  end
  redis.call('LPUSH', KEYS[1], string.char(unpack(b)) .. ARGV[1])
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {now, push and 1 or 0, redis.call('LRANGE', KEYS[1], 0, -1)}
`)

// key returns the Redis key of the list.
func (s *RedisSource) key() string {
	if s.Key == "" {
		return DefaultRedisKey
	}
	return s.Key
}

// params returns the effective Rotate, Grace and Lead, or a configuration
// error.
func (s *RedisSource) params() (rotate time.Duration, grace int, lead time.Duration, err error) {
	rotate, grace, lead = s.Rotate, s.Grace, s.Lead
	if rotate == 0 {
		rotate = DefaultRotate
	}
	if grace == 0 {
		grace = DefaultGrace
	}
	if lead == 0 {
		lead = min(rotate/4, maxLead)
	}
	lead = max(lead, 0)
	switch {
	case rotate < time.Millisecond:
		return 0, 0, 0, fmt.Errorf("ticketkeys: RedisSource.Rotate %v is under a millisecond", s.Rotate)
	case grace < 0:
		return 0, 0, 0, fmt.Errorf("ticketkeys: RedisSource.Grace %d is negative", s.Grace)
	case lead >= rotate:
		return 0, 0, 0, fmt.Errorf("ticketkeys: RedisSource.Lead %v is not shorter than Rotate %v", lead, rotate)
	}
	return rotate, grace, lead, nil
}

// Keys polls Redis: it rotates if the newest key is due, and returns the
// list with the encrypting key first. That is the newest key once it is
// Lead old, and until then the one before it; the other keys follow,
// newest first. Its errors never contain key material.
func (s *RedisSource) Keys(ctx context.Context) ([][32]byte, error) {
	keys, _, err := s.poll(ctx)
	return keys, err
}

// poll is Keys, also telling whether this call pushed a new key.
func (s *RedisSource) poll(ctx context.Context) (keys [][32]byte, rotated bool, err error) {
	if s.Client == nil {
		return nil, false, errors.New("ticketkeys: RedisSource.Client is nil")
	}
	rotate, grace, lead, err := s.params()
	if err != nil {
		return nil, false, err
	}
	keep := 1 + grace
	if lead > 0 {
		keep++ // the next key, during its lead, beside the current one
	}
	ttl := time.Duration(keep+1) * rotate
	var candidate [32]byte
	rand.Read(candidate[:]) // never fails (crypto/rand, Go 1.24+)
	res, err := rotateScript.Run(ctx, s.Client, []string{s.key()},
		string(candidate[:]), rotate.Milliseconds(), keep, ttl.Milliseconds()).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("ticketkeys: redis %s: %w", s.key(), err)
	}
	now, pushed, entries, err := parseReply(res)
	if err != nil {
		return nil, false, fmt.Errorf("ticketkeys: redis %s: %w", s.key(), err)
	}
	return order(now, entries, lead), pushed, nil
}

// entry is one key of the list with its creation time.
type entry struct {
	created int64 // unix milliseconds, Redis's clock
	key     [32]byte
}

// parseReply checks the script's reply: Redis's clock, the rotation flag
// and the list. Its errors give positions and lengths, not contents.
func parseReply(res []any) (now int64, pushed bool, entries []entry, err error) {
	if len(res) != 3 {
		return 0, false, nil, fmt.Errorf("unexpected reply of %d elements", len(res))
	}
	now, ok1 := res[0].(int64)
	flag, ok2 := res[1].(int64)
	list, ok3 := res[2].([]any)
	if !ok1 || !ok2 || !ok3 {
		return 0, false, nil, errors.New("unexpected reply types")
	}
	if len(list) == 0 {
		return 0, false, nil, ErrNoKeys
	}
	for i, v := range list {
		s, ok := v.(string)
		if !ok || len(s) != entryLen {
			return 0, false, nil, fmt.Errorf("entry %d of the list is not %d bytes", i, entryLen)
		}
		var e entry
		e.created = int64(binary.BigEndian.Uint64([]byte(s[:8])))
		copy(e.key[:], s[8:])
		entries = append(entries, e)
	}
	return now, flag == 1, entries, nil
}

// order returns the keys of entries (newest first) in the order of
// SetSessionTicketKeys: the newest key that is at least lead old first,
// then the others newest first. If every key is younger than lead (a new
// list), the oldest encrypts.
func order(now int64, entries []entry, lead time.Duration) [][32]byte {
	active := len(entries) - 1
	for i, e := range entries {
		if now-e.created >= lead.Milliseconds() {
			active = i
			break
		}
	}
	keys := make([][32]byte, 0, len(entries))
	keys = append(keys, entries[active].key)
	for i, e := range entries {
		if i != active {
			keys = append(keys, e.key)
		}
	}
	return keys
}
