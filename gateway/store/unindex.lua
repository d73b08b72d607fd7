-- Move (or drop) an account in the global index of accounts with reservations, unless a gateway process
-- wrote to its entry since the sweeper read it (then that write stands). One key: runs on Redis Cluster.
--
-- KEYS[1] the index (zset: account id → when to look at its reservations next, ms)
-- ARGV: 1 account id, 2 the score the sweeper read, 3 the new score (-1: the account has none left)
-- Returns 1 when changed, 0 when the entry had changed meanwhile
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
