-- Credit (or correct) an account balance once per operation id, with a ledger entry, atomically.
-- KEYS[1] account hash  KEYS[2] ledger stream  KEYS[3] applied-operations hash
-- ARGV: 1 operation id ('' = not idempotent), 2 amount nano-USD (may be negative for a correction),
--       3 kind, 4 reason, 5 actor, 6 now_ms
-- Returns {applied (1/0), credited after}
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if ARGV[1] ~= '' then
  if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[6]) == 0 then
    -- written again (same value): the caller's WAIT then also covers the first application
    redis.call('HSET', KEYS[3], ARGV[1], redis.call('HGET', KEYS[3], ARGV[1]))
    return {0, tonumber(redis.call('HGET', KEYS[1], 'credited')) or 0}
  end
end
local credited = redis.call('HINCRBY', KEYS[1], 'credited', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'kind', ARGV[3], 'amount', ARGV[2], 'reason', ARGV[4], 'actor', ARGV[5],
           'op', ARGV[1], 't', ARGV[6], 'credited', credited)
return {1, credited}
