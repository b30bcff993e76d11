-- Applies one pre-aggregated batch (or the part of it in one cluster hash slot) atomically,
-- at most once per batch id.
--
-- KEYS[1]   the batch marker ("" in ARGV[1] means: no batch id, always apply)
-- KEYS[2..] every key the operations touch, all in one hash slot on Redis Cluster
-- ARGV[1]   seconds to remember the batch id, or "" for none
-- ARGV[2]   what to record with the batch id (returned again on a repeat)
-- ARGV[3..] operations, each: code, key index, then code-specific arguments
--   H k expireat n (field increment)*n   HINCRBY each field, EXPIREAT
--   U k expireat n uid*n                  PFADD, EXPIREAT
--   Z k ttl n (score member)*n            ZADD GT, EXPIRE
--   M k ttl n (field value)*n             HSET, EXPIRE
--   S k n member*n                        SADD
-- Returns {1, ARGV[2]} when applied, {0, recorded} when the batch id was seen before.
-- Numbers stay strings from ARGV to redis.call: Lua numbers are doubles and would round
-- increments past 2^53.

if ARGV[1] ~= "" then
  local seen = redis.call("GET", KEYS[1])
  if seen then
    return {0, seen}
  end
end

local i = 3
local n_args = #ARGV
while i <= n_args do
  local code = ARGV[i]
  local key = KEYS[tonumber(ARGV[i + 1])]
  if code == "S" then
    local n = tonumber(ARGV[i + 2])
    for j = i + 3, i + 2 + n do
      redis.call("SADD", key, ARGV[j])
    end
    i = i + 3 + n
  else
    local when = ARGV[i + 2]
    local n = tonumber(ARGV[i + 3])
    local first = i + 4
    if code == "H" then
      for j = first, first + 2 * n - 1, 2 do
        redis.call("HINCRBY", key, ARGV[j], ARGV[j + 1])
      end
      redis.call("EXPIREAT", key, when)
      i = first + 2 * n
    elseif code == "U" then
      -- PFADD in slices: unpack() of a very long list would overflow Lua's C stack.
      for j = first, first + n - 1, 1000 do
        redis.call("PFADD", key, unpack(ARGV, j, math.min(j + 999, first + n - 1)))
      end
      redis.call("EXPIREAT", key, when)
      i = first + n
    elseif code == "Z" then
      for j = first, first + 2 * n - 1, 2 do
        redis.call("ZADD", key, "GT", ARGV[j], ARGV[j + 1])
      end
      redis.call("EXPIRE", key, when)
      i = first + 2 * n
    elseif code == "M" then
      for j = first, first + 2 * n - 1, 2 do
        redis.call("HSET", key, ARGV[j], ARGV[j + 1])
      end
      redis.call("EXPIRE", key, when)
      i = first + 2 * n
    else
      return redis.error_reply("apply.lua: unknown operation " .. tostring(code))
    end
  end
end

if ARGV[1] ~= "" then
  redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
end
return {1, ARGV[2]}
