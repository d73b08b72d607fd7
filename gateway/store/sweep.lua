-- Release one account's expired reservations (their requests died with a gateway process), and forget
-- expired reservations' records once the late-settlement window has passed: the steps of admit.lua's
-- own sweep, for an account that does not call again. All keys share the account's hash tag (one slot on
-- Redis Cluster, the key hashes named from ARGV[2] included).
--
-- KEYS[1] account hash   KEYS[2] reservations hash   KEYS[3] reservation queue (zset: request id → due ms)
-- ARGV: 1 now_ms, 2 key hash name prefix, 3 late-settlement window ms, 4 at most this many records
-- Returns {reservations released, the earliest due time left in the queue (-1: none)}
local acct, resv, queue = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local released = 0
for _, old in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', ARGV[1], 'LIMIT', '0', ARGV[4])) do
  local v = redis.call('HGET', resv, old)
  if v then
    local amount, okid, omonth, state = string.match(v, '^(%-?%d+)|([^|]*)|([^|]*)|(%a+)$')
    if state == 'open' then
      redis.call('HINCRBY', acct, 'reserved', 0 - tonumber(amount))  -- never '-0'
      redis.call('HINCRBY', ARGV[2] .. okid, 'mr:' .. omonth, 0 - tonumber(amount))
      redis.call('HSET', resv, old, amount .. '|' .. okid .. '|' .. omonth .. '|expired')
      redis.call('ZADD', queue, now + tonumber(ARGV[3]), old)
      released = released + 1
    else
      redis.call('HDEL', resv, old)
      redis.call('ZREM', queue, old)
    end
  else
    redis.call('ZREM', queue, old)
  end
end
local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
return {released, tonumber(first[2]) or -1}
