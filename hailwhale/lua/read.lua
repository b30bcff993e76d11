-- Reads the buckets of one parent's children for one summed metric (hailwhale/store.py).
--
-- KEYS[1]   the window's first bucket hash: on Redis Cluster it routes the call to the slot
--           every bucket hash of the parent shares (hailwhale/keys.py tags them so)
-- ARGV[1]   the bucket hashes' common stem: a bucket's key is the stem and its ordinal
-- ARGV[2]   the first bucket's ordinal;  ARGV[3]  how many buckets
-- ARGV[4]   what to read: "fields" (ARGV[5..], two per child: whole units, billionths),
--           "all" (every field), or "totals" (every field, summed over the window)
-- Returns, for "fields", the values of every bucket's fields one after the other (false
-- where absent); for "all", per bucket, its fields and values as HGETALL gives them; for
-- "totals", each field once and its sum over the buckets.
--
-- Why the keys are built here: a window is a few hundred hashes per parent and metric, and
-- sending each name costs the client more than Redis' reading the hash (measured: 240 key
-- arguments, 0.3 ms of redis-py's packing). They all share KEYS[1]'s hash tag, so they are in
-- its slot. Two HGETs cost Redis less than one HMGET of two fields (0.32 ms vs 0.47 ms for
-- 240 buckets). "totals" serves ranking, which needs each child's total only: summing here
-- sends one number a child instead of every bucket's. Lua adds doubles, exact up to 2^53 (9e15
-- whole units, or billionths, a child over a window): far past what ranking compares.

local stem, first, count, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out, n = {}, 0
local fields = #ARGV - 4
local sums, order = {}, {}
for ordinal = first, first + count - 1 do
  local key = stem .. ordinal
  if mode == "all" then
    n = n + 1
    out[n] = redis.call("HGETALL", key)
  elseif mode == "totals" then
    local pairs_ = redis.call("HGETALL", key)
    for i = 1, #pairs_, 2 do
      local field = pairs_[i]
      local sum = sums[field]
      if sum == nil then
        order[#order + 1] = field
        sums[field] = tonumber(pairs_[i + 1])
      else
        sums[field] = sum + tonumber(pairs_[i + 1])
      end
    end
  elseif fields == 2 then
    out[n + 1] = redis.call("HGET", key, ARGV[5])
    out[n + 2] = redis.call("HGET", key, ARGV[6])
    n = n + 2
  else
    local values = redis.call("HMGET", key, unpack(ARGV, 5))
    for i = 1, fields do
      out[n + i] = values[i]
    end
    n = n + fields
  end
end
if mode == "totals" then
  for i, field in ipairs(order) do
    out[2 * i - 1] = field
    -- As a string: a Lua number returned to Redis is truncated to an integer anyway, and
    -- %.0f keeps every digit a double holds.
    out[2 * i] = string.format("%.0f", sums[field])
  end
end
return out
