-- Admit one request: key status → account status → model allowed → rate limit → reservation.
-- All keys share the account's hash tag, so this runs on Redis Cluster too (one slot; the key hash of an
-- expired reservation, named from ARGV[10], is in it as well). One round trip.
--
-- KEYS[1] account hash      KEYS[2] key hash          KEYS[3] reservations hash
-- KEYS[4] reservation queue (zset: request id → expiry ms)   KEYS[5] rate-limit hash of the key
-- KEYS[6] history stream (a rejected request is recorded there, charged nothing)
-- ARGV: 1 now_ms, 2 request id, 3 key id, 4 model, 5 reserve (nano-USD), 6 month (YYYY-MM),
--       7 reservation ttl ms, 8 history max len, 9 endpoint, 10 key hash name prefix (for swept reservations),
--       11 late-settlement window ms (how long an expired reservation's record stays to charge a late settlement)
-- Returns {code, rpm_limit, rpm_remaining, tpm_limit, tpm_remaining, reset_ms}
--   code 0 admitted; 1 unknown key; 2 key revoked; 3 account blocked; 4 model not allowed;
--   5 requests per minute exceeded; 6 tokens per minute exceeded; 7 insufficient balance;
--   8 monthly key limit exceeded
local acct, key, resv, queue, rl, hist = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = tonumber(ARGV[1])
local rid, kid, model = ARGV[2], ARGV[3], ARGV[4]
local reserve = tonumber(ARGV[5])  -- for the checks; what is written is ARGV[5] itself (see settle.lua)
local month = ARGV[6]

-- Release reservations whose request died with its gateway process (bounded work per call); sweep.lua
-- does the same for accounts that do not call again. An expired reservation keeps its record (state
-- 'expired') for the late-settlement window: a settlement replayed meanwhile is still charged, once.
for _, old in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', ARGV[1], 'LIMIT', '0', '20')) do
  local v = redis.call('HGET', resv, old)
  if v then
    local amount, okid, omonth, state = string.match(v, '^(%-?%d+)|([^|]*)|([^|]*)|(%a+)$')
    if state == 'open' then
      redis.call('HINCRBY', acct, 'reserved', 0 - tonumber(amount))  -- never '-0'
      redis.call('HINCRBY', ARGV[10] .. okid, 'mr:' .. omonth, 0 - tonumber(amount))
      redis.call('HSET', resv, old, amount .. '|' .. okid .. '|' .. omonth .. '|expired')
      redis.call('ZADD', queue, now + tonumber(ARGV[11]), old)
    else
      redis.call('HDEL', resv, old)
      redis.call('ZREM', queue, old)
    end
  else
    redis.call('ZREM', queue, old)
  end
end

local k = redis.call('HMGET', key, 'status', 'limit', 'models', 'rpm', 'tpm', 'm:' .. month, 'mr:' .. month)
if not k[1] then return {1, 0, 0, 0, 0, 0} end
local a = redis.call('HMGET', acct, 'status', 'credited', 'spent', 'reserved')
if not a[1] then return {1, 0, 0, 0, 0, 0} end

local minute = math.floor(now / 60000)
local reset_ms = 60000 - (now % 60000)
local frac = (now % 60000) / 60000
local rpm, tpm = tonumber(k[4]) or 0, tonumber(k[5]) or 0
-- windows are kept only for the limits a key has (most keys have none: no reads, no writes)
local req_used, tok_used = 0, 0
if rpm > 0 or tpm > 0 then
  local rl_vals = redis.call('HMGET', rl, 'r:' .. minute, 'r:' .. (minute - 1), 't:' .. minute, 't:' .. (minute - 1))
  req_used = math.floor((tonumber(rl_vals[2]) or 0) * (1 - frac)) + (tonumber(rl_vals[1]) or 0)
  tok_used = math.floor((tonumber(rl_vals[4]) or 0) * (1 - frac)) + (tonumber(rl_vals[3]) or 0)
end

local function reject(code)
  local entry = cjson.encode({key = kid, model = model, endpoint = ARGV[9],
                              status = (code == 5 or code == 6) and 429 or 403, code = code})
  redis.call('XADD', hist, 'MAXLEN', '~', ARGV[8], '*', 'rid', rid, 'cost', 0, 't', now, 'd', entry)
  return {code, rpm, math.max(rpm - req_used, 0), tpm, math.max(tpm - tok_used, 0), reset_ms}
end

if k[1] ~= 'ACTIVE' then return {2, 0, 0, 0, 0, 0} end
if a[1] ~= 'ACTIVE' then return reject(3) end

local models = k[3]
if models and models ~= '' then
  local allowed = false
  for pattern in string.gmatch(models, '[^,]+') do
    if string.sub(pattern, -1) == '*' then
      local prefix = string.sub(pattern, 1, -2)
      if string.sub(model, 1, #prefix) == prefix then allowed = true break end
    elseif pattern == model then allowed = true break end
  end
  if not allowed then return reject(4) end
end

if rpm > 0 and req_used >= rpm then return reject(5) end
if tpm > 0 and tok_used >= tpm then return reject(6) end

if reserve > 0 then
  local available = (tonumber(a[2]) or 0) - (tonumber(a[3]) or 0) - (tonumber(a[4]) or 0)
  if reserve > available then return reject(7) end
end
local limit = tonumber(k[2]) or -1
if limit >= 0 and (tonumber(k[6]) or 0) + (tonumber(k[7]) or 0) + reserve > limit then return reject(8) end

redis.call('HINCRBY', acct, 'reserved', ARGV[5])
redis.call('HINCRBY', key, 'mr:' .. month, ARGV[5])
redis.call('HSET', resv, rid, ARGV[5] .. '|' .. kid .. '|' .. month .. '|open')
redis.call('ZADD', queue, now + tonumber(ARGV[7]), rid)
if rpm > 0 then
  redis.call('HINCRBY', rl, 'r:' .. minute, '1')
  redis.call('PEXPIRE', rl, '180000')
end
return {0, rpm, math.max(rpm - req_used - 1, 0), tpm, math.max(tpm - tok_used, 0), reset_ms}
