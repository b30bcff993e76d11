-- Applies one pre-aggregated batch (or the part of it in one cluster hash slot) atomically,
-- at most once per batch id.
--
-- KEYS[1]   the batch marker ("" in ARGV[1] means: no batch id, always apply)
-- KEYS[2..] every key the operations touch, all in one hash slot on Redis Cluster
-- ARGV[1]   seconds to remember the batch id, or "" for none
-- ARGV[2]   what to record with the batch id (returned again on a repeat)
-- ARGV[3..] operations, each: code, key index, then code-specific arguments
--   H k "expireat field increment field increment ..."
--                                         HINCRBY each field, EXPIREAT: one string, as
--                                         counters are most of a batch and every argument
--                                         costs the client time to send
--   U k "expireat<US>uid<US>uid..."      PFADD, EXPIREAT (US is the unit separator \31,
--                                         which names never hold: event parsing refuses
--                                         control characters)
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
  if code == "H" then
    local when, pairs_ = string.match(ARGV[i + 2], "^(%S+) (.*)$")
    for field, increment in string.gmatch(pairs_, "(%S+) (%S+)") do
      redis.call("HINCRBY", key, field, increment)
    end
    redis.call("EXPIREAT", key, when)
    i = i + 3
  elseif code == "U" then
    local uids, when = {}, nil
    for part in string.gmatch(ARGV[i + 2], "[^\31]+") do
      if when then uids[#uids + 1] = part else when = part end
    end
    -- PFADD in slices: unpack() of a very long list would overflow Lua's C stack.
    for j = 1, #uids, 1000 do
      redis.call("PFADD", key, unpack(uids, j, math.min(j + 999, #uids)))
    end
    redis.call("EXPIREAT", key, when)
    i = i + 3
  elseif code == "S" then
    local n = tonumber(ARGV[i + 2])
    for j = i + 3, i + 2 + n do
      redis.call("SADD", key, ARGV[j])
    end
    i = i + 3 + n
  elseif code == "Z" or code == "M" then
    local ttl = ARGV[i + 2]
    local n = tonumber(ARGV[i + 3])
    local first = i + 4
    for j = first, first + 2 * n - 1, 2 do
      if code == "Z" then
        redis.call("ZADD", key, "GT", ARGV[j], ARGV[j + 1])
      else
        redis.call("HSET", key, ARGV[j], ARGV[j + 1])
      end
    end
    redis.call("EXPIRE", key, ttl)
    i = first + 2 * n
  else
    return redis.error_reply("apply.lua: unknown operation " .. tostring(code))
  end
end

if ARGV[1] ~= "" then
  redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
end
return {1, ARGV[2]}
