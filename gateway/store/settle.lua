-- Settle one request exactly once: charge the actual cost, release its reservation, bump the
-- counters and append the history entry, atomically. A second settle of the same request is a no-op.
--
-- KEYS[1] account hash   KEYS[2] key hash   KEYS[3] reservations hash   KEYS[4] reservation queue
-- KEYS[5] rate-limit hash of the key   KEYS[6] history stream   KEYS[7] daily counters hash
-- ARGV: 1 now_ms, 2 request id, 3 cost (nano-USD), 4 month, 5 day, 6 tokens (for TPM; 0 for a key without one),
--       7 history max len, 8 had a reservation ('1'/'0'), 9 the rest of the history entry (JSON object)
-- Returns 1 when charged, 0 when this request was already settled.
local acct, key, resv, queue, rl, hist, daily = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now, rid, month, day = tonumber(ARGV[1]), ARGV[2], ARGV[4], ARGV[5]
-- Counts go to redis.call as the strings they came in as ('1', ARGV[3]): a Lua number is formatted with
-- printf('%.17g') on every call, ~15 % of this script's time (measured in bench/RESULTS.md).

local release, rmonth = 0, month
if ARGV[8] == '1' then
  local v = redis.call('HGET', resv, rid)
  if not v then return 0 end
  local amount, _, omonth, state = string.match(v, '^(%-?%d+)|([^|]*)|([^|]*)|(%a+)$')
  if state == 'open' then release = tonumber(amount) end
  rmonth = omonth
  redis.call('HDEL', resv, rid)
  redis.call('ZREM', queue, rid)
end

redis.call('HINCRBY', acct, 'spent', ARGV[3])
redis.call('HINCRBY', acct, 'reserved', 0 - release)  -- never '-0', which HINCRBY refuses
redis.call('HINCRBY', acct, 'requests', '1')
redis.call('HINCRBY', acct, 'm:' .. month, ARGV[3])
redis.call('HINCRBY', acct, 'mreq:' .. month, '1')
redis.call('HINCRBY', key, 'spent', ARGV[3])
redis.call('HINCRBY', key, 'requests', '1')
redis.call('HINCRBY', key, 'm:' .. month, ARGV[3])
if release ~= 0 then redis.call('HINCRBY', key, 'mr:' .. rmonth, 0 - release) end
redis.call('HINCRBY', daily, day .. ':r', '1')
redis.call('HINCRBY', daily, day .. ':s', ARGV[3])
local tokens = tonumber(ARGV[6])
if tokens > 0 then
  redis.call('HINCRBY', rl, 't:' .. math.floor(now / 60000), ARGV[6])
  redis.call('PEXPIRE', rl, '180000')
end
redis.call('XADD', hist, 'MAXLEN', '~', ARGV[7], '*', 'rid', rid, 'cost', ARGV[3], 't', ARGV[1], 'd', ARGV[9])
return 1
