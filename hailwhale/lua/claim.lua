-- Claims an in-flight batch whose lease ran out (its sender crashed or gave up), so that one
-- hailwail sends it again; renews the lease.
-- KEYS[1] the in-flight sorted set   KEYS[2] the batch's processing list
-- ARGV[1] batch id   ARGV[2] now   ARGV[3] the lease's start must be at or before this
-- Returns the batch's events, or nothing when another process holds a live lease on it.
local since = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not since or tonumber(since) > tonumber(ARGV[3]) then
  return {}
end
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
local items = redis.call("LRANGE", KEYS[2], 0, -1)
if #items == 0 then
  -- Acknowledged in the meantime, or emptied by hand: nothing is left to send.
  redis.call("ZREM", KEYS[1], ARGV[1])
end
return items
