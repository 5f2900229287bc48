package redisstore

import "github.com/redis/go-redis/v9"

// The scripts run with EVALSHA, and EVAL when Redis does not have them
// cached (redis.Script.Run): after a restart, a SCRIPT FLUSH or on a new
// replica of a Sentinel pair.
//
// Times cross into Lua as 20-digit strings (enc): Lua's numbers are doubles,
// exact only up to 2^53, and Unix nanoseconds are beyond that. The scripts
// never add or subtract times; Go passes now, now−Unit and now+Window, and
// the scripts only compare, ten digits at a time (`before`), which is exact
// and does not depend on the server's locale.

// recordScript records one event of a source or a user name and returns
// its counts: {InFlight, ConnRate, MessageRate, RecipientRate, AuthRate,
// LoginFailures, lost}, lost being 1 when this replica's own in-flight
// field could not be written because its lease is not (or no longer) the
// one the call carries.
//
// KEYS[1] is the hash. ARGV: 1 event (ratelimit.Event), 2 now, 3 now−Unit,
// 4 now+Window (LoginFailed), 5 TTL in ms, 6 the lease key prefix, 7 this
// replica, 8 its lease token, 9 and 10 its own in-flight count for this
// source before and after the event, 11 the sequence number of that count
// ("0": do not write it), 12 "u" for a user name.
var recordScript = redis.NewScript(`
local k = KEYS[1]
local ev = tonumber(ARGV[1])
local now = ARGV[2]
local ttl = tonumber(ARGV[5])

local function before(a, b)
	local x, y = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))
	if x ~= y then return x < y end
	return tonumber(string.sub(a, 11)) < tonumber(string.sub(b, 11))
end
local function incr(v)
	if v < 2147483647 then return v + 1 end
	return v
end
local function touch()
	if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end

-- Failed logins: of a user name (any event), or LoginFailed of a source.
if ARGV[12] == 'u' or ev == 8 then
	local f = redis.call('HMGET', k, 'fn', 'fe')
	local n, e = tonumber(f[1]) or 0, f[2]
	local open = n > 0 and not before(e, now)
	if ev ~= 8 then
		if open then return {0, 0, 0, 0, 0, n, 0} end
		return {0, 0, 0, 0, 0, 0, 0}
	end
	if not open then n, e = 0, ARGV[4] end
	n = incr(n)
	redis.call('HSET', k, 'fn', n, 'fe', e)
	touch()
	return {0, 0, 0, 0, 0, n, 0}
end

-- A source: read everything, summing the in-flight fields of the other
-- replicas whose lease holds the field's token, and deleting the others.
local lk, me, tok = ARGV[6], ARGV[7], ARGV[8]
local own = 'i:' .. me .. ':' .. tok
local ownBefore = tonumber(ARGV[9])
local h = redis.call('HGETALL', k)
local s, l, c, m, r, a, fn, fe, ownv
local others = 0
local leases = {}
for i = 1, #h, 2 do
	local f, v = h[i], h[i + 1]
	if f == 's' then s = v
	elseif f == 'l' then l = v
	elseif f == 'c' then c = tonumber(v)
	elseif f == 'm' then m = tonumber(v)
	elseif f == 'r' then r = tonumber(v)
	elseif f == 'a' then a = tonumber(v)
	elseif f == 'fn' then fn = tonumber(v)
	elseif f == 'fe' then fe = v
	elseif f == own then ownv = v
	else
		local rid, t = string.match(f, '^i:(.*):(%d+)$')
		if rid then
			local cur = leases[rid]
			if cur == nil then
				cur = redis.call('GET', lk .. rid)
				leases[rid] = cur
			end
			if cur ~= t then
				redis.call('HDEL', k, f)
			elseif rid ~= me then
				others = others + tonumber(string.match(v, '^%d+'))
			end
		end
	end
end

-- This replica's own count comes from the call (it is the truth); the
-- field is written for the others, newest sequence number wins.
local lost, wrote = 0, false
if ARGV[11] ~= '0' then
	local cur = leases[me]
	if cur == nil then cur = redis.call('GET', lk .. me) end
	if cur ~= tok then
		lost = 1
	elseif not ownv or tonumber(string.match(ownv, ':(%d+)$')) < tonumber(ARGV[11]) then
		redis.call('HSET', k, own, ARGV[10] .. ':' .. ARGV[11])
		wrote = true
	end
end
local inflight = tonumber(ARGV[10]) + others

-- anvil's rules, as ratelimit.MemoryStore applies them.
local old = ARGV[3]
local fresh = s == nil or (ownBefore + others == 0 and before(l, old))
local rate = ev == 1 or ev == 3 or ev == 4 or ev == 7
if fresh and not rate then
	if wrote then touch() end
	return {inflight, 0, 0, 0, 0, 0, lost}
end
if fresh then s, l, c, m, r, a = now, now, 0, 0, 0, 0 end
if rate then
	if before(l, now) then l = now end
	if before(s, old) then s, c, m, r, a = now, 0, 0, 0, 0 end
	if ev == 1 then c = incr(c) elseif ev == 3 then m = incr(m) elseif ev == 4 then r = incr(r) else a = incr(a) end
	redis.call('HSET', k, 's', s, 'l', l, 'c', c, 'm', m, 'r', r, 'a', a)
elseif before(l, now) then
	redis.call('HSET', k, 'l', now)
end
touch()
local fails = 0
if ev == 7 and fn and fn > 0 and not before(fe, now) then fails = fn end
return {inflight, c, m, r, a, fails, lost}
`)

// syncScript writes this replica's in-flight counts of several sources:
// the ledger's dirty entries, those due for a TTL refresh, and all of them
// after the lease was renewed under a new token. It returns -1, and writes
// nothing, if the lease does not hold the token; otherwise the number of
// keys.
//
// KEYS are the hashes. ARGV: 1 the lease key prefix, 2 this replica, 3 its
// lease token, then for each key its count, sequence number and TTL in ms.
var syncScript = redis.NewScript(`
local lk, me, tok = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', lk .. me) ~= tok then return -1 end
local own = 'i:' .. me .. ':' .. tok
for i = 1, #KEYS do
	local k, j = KEYS[i], 3 * i + 1
	local v = redis.call('HGET', k, own)
	if not v or tonumber(string.match(v, ':(%d+)$')) < tonumber(ARGV[j + 1]) then
		redis.call('HSET', k, own, ARGV[j] .. ':' .. ARGV[j + 1])
	end
	local ttl = tonumber(ARGV[j + 2])
	if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return #KEYS
`)

// leaseScript refreshes this replica's lease: if it holds ARGV[1] and
// ARGV[4] is not "1", its TTL is reset to ARGV[3] ms and the script
// returns 1; otherwise (it expired, Redis lost it, this is the first call,
// or a renewal is asked for) the lease is set to the new token ARGV[2] and
// the script returns 0, after which the replica rewrites all its in-flight
// counts under the new token.
var leaseScript = redis.NewScript(`
if ARGV[4] ~= '1' and redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[3])
	return 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 0
`)

// releaseScript deletes this replica's lease if it still holds ARGV[1],
// so the other replicas stop counting its connections at once.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
