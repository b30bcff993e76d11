-- Reads the buckets of one parent's children for one summed metric (hailwhale/store.py).
--
-- KEYS[1]   the window's first bucket hash: on Redis Cluster it routes the call to the slot
--           every bucket hash of the parent shares (hailwhale/keys.py tags them so)
-- ARGV[1]   the bucket hashes' common stem: a bucket's key is the stem and its ordinal
-- ARGV[2]   the first bucket's ordinal;  ARGV[3]  how many buckets
-- ARGV[4..] the fields to read from each (two per child: whole units, billionths), or none
--           for every field
-- Returns, with fields, the values of every bucket's fields one after the other (false where
-- absent); without, per bucket, its fields and values as HGETALL gives them.
--
-- Why the keys are built here: a window is a few hundred hashes per parent and metric, and
-- sending each name costs the client more than Redis' reading the hash (measured: 240 key
-- arguments, 0.3 ms of redis-py's packing). They all share KEYS[1]'s hash tag, so they are in
-- its slot. Two HGETs cost Redis less than one HMGET of two fields (0.32 ms vs 0.47 ms for
-- 240 buckets).

local stem, first, count = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, n = {}, 0
local fields = #ARGV - 3
for ordinal = first, first + count - 1 do
  local key = stem .. ordinal
  if fields == 0 then
    n = n + 1
    out[n] = redis.call("HGETALL", key)
  elseif fields == 2 then
    out[n + 1] = redis.call("HGET", key, ARGV[4])
    out[n + 2] = redis.call("HGET", key, ARGV[5])
    n = n + 2
  else
    local values = redis.call("HMGET", key, unpack(ARGV, 4))
    for i = 1, fields do
      out[n + i] = values[i]
    end
    n = n + fields
  end
end
return out
