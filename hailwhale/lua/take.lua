-- Moves up to ARGV[1] of the oldest buffered events into a batch's processing list, in one
-- atomic step, and records the batch as in flight.
-- KEYS[1] the buffer list (oldest first)   KEYS[2] the in-flight sorted set
-- KEYS[3] the new batch's processing list
-- ARGV[1] batch size   ARGV[2] batch id   ARGV[3] now (unix seconds)
-- Returns the events taken (none when the buffer is empty).
local items = redis.call("LRANGE", KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then
  return items
end
for i = 1, #items, 1000 do
  redis.call("RPUSH", KEYS[3], unpack(items, i, math.min(i + 999, #items)))
end
redis.call("LTRIM", KEYS[1], #items, -1)
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[2])
return items
