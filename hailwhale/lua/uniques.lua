-- The distinct counts of one unique metric over a window, in one step.
-- KEYS: one HyperLogLog per bucket, oldest first, all in one hash slot.
-- Returns the count of each bucket, then the count of their union (the window's true
-- distinct total, not the sum of the buckets).
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call("PFCOUNT", key)
end
counts[#KEYS + 1] = redis.call("PFCOUNT", unpack(KEYS))
return counts
