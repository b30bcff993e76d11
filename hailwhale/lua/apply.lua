-- Applies one pre-aggregated batch (or the part of it in one cluster hash slot) atomically,
-- at most once per batch id.
--
-- KEYS[1]   the batch marker, or (no batch id) any key of the operations: on Redis Cluster
--           it routes the call to the slot that every key of the operations shares
-- KEYS[2..] other keys meaning the same was applied, checked but not set: for a part of a
--           batch, the batch id's own key (set, with the parts' markers dropped, once every
--           part is applied: a second worker applying the same batch meanwhile skips the
--           parts it had not reached)
-- ARGV[1]   seconds to remember the batch id, or "" for none
-- ARGV[2]   what to record with the batch id (returned again on a repeat)
-- ARGV[3]   the operations, one per line: "code TAB key TAB number TAB items", the items
--           separated by US (\31)
--   H key expireat field US increment US field US increment ...
--                                  HINCRBY each field; EXPIREAT when a field was new
--   U key expireat uid US uid ...   PFADD; EXPIREAT when the HyperLogLog changed
--   X key - min US max              a timing's sketch (made by its "H" line before): fields
--                                  "<" and ">" lowered or raised to min and max
--   G key ttl child US how US value US bucket US expireat US how US value ...
--                                  a gauge's changes: key is the hash of the gauges' values
--                                  now (child -> value), each bucket hash gets the child's
--                                  value at the end of that bucket (EXPIREAT when the field
--                                  is new), and the value now becomes the first one; "how"
--                                  "=" is a value set, "+" one relative to the value now
--   Z key ttl score US member ...   ZADD GT, EXPIRE
--   M key ttl field US value ...    HSET, EXPIRE
--   L key version pks              SET key version, when the set pks does not exist yet (a
--                                  store's first batch records its layout)
--   S key - member US member ...    SADD
-- ARGV[4]   how many lines ARGV[3] holds: checked before anything is applied
-- ARGV[5]   "undo" to take back a part of a batch applied before (KEYS[1] its marker), when
--           a later part of the same batch would overflow: its "H" lines are negated and
--           the marker deleted in one step; the other operations (PFADD, ZADD GT, HSET of
--           names, SADD) change nothing when they are made again, so they stay.
-- Returns {1, ARGV[2]} when applied, {0, recorded} when the batch id was seen before, and
-- an error starting "apply.lua: overflow" when a counter would pass a 64-bit integer: then
-- nothing of the batch is applied (the increments made before it are undone). With "undo",
-- 1 when the part was taken back, 0 when its marker was not there (nothing was applied).
--
-- Why one string: every argument costs the client time to pack and Redis time to parse, and
-- a batch touches thousands of keys. The separators never occur inside the parts: keys are
-- percent-encoded, and names and uids cannot hold control characters (event parsing refuses
-- them). The keys are built by hailwhale/keys.py; on a cluster every key of one call is in
-- KEYS[1]'s hash slot (hailwhale/store.py groups them so).
-- Numbers stay strings from ARGV to redis.call: Lua numbers are doubles and would round
-- increments past 2^53.

local undoing = ARGV[5] == "undo"
if undoing then
  if redis.call("EXISTS", KEYS[1]) == 0 then
    return 0
  end
elseif ARGV[1] ~= "" then
  for i = 1, #KEYS do
    local seen = redis.call("GET", KEYS[i])
    if seen then
      return {0, seen}
    end
  end
end

local function pfadd(key, uids)
  -- In slices: unpack() of a very long list would overflow Lua's C stack.
  local changed = 0
  for j = 1, #uids, 1000 do
    changed = changed + redis.call("PFADD", key, unpack(uids, j, math.min(j + 999, #uids)))
  end
  return changed
end

local LINE = "(%u)\t([^\t\n]+)\t([^\t\n]*)\t([^\n]*)\n"
-- A line the pattern skipped would be a batch counted in part: refuse the batch instead,
-- before any of it is applied (a Lua error does not undo the commands already run).
local lines = 0
for _ in string.gmatch(ARGV[3], LINE) do
  lines = lines + 1
end
if tostring(lines) ~= ARGV[4] then
  return redis.error_reply("apply.lua: " .. lines .. " operations readable, " .. ARGV[4] .. " sent")
end

-- Redis does not roll a script back when a command fails, and HINCRBY fails past 2^63: then
-- the increments made so far are undone. Counter lines come first (hailwhale/store.py orders
-- them so), so nothing else has been written then. The undo walks the operations again up to
-- the failed increment rather than logging each increment as it is made: a log costs a Lua
-- table per counter on every batch (measured: a third more of Redis' time per batch), for a
-- failure that almost never happens.
-- take_back(line, pair) negates every increment before that line's pair; take_back() all.
local function take_back(stop_line, stop_pair)
  local line = 0
  for code, key, _, items in string.gmatch(ARGV[3], LINE) do
    line = line + 1
    if (stop_line and line > stop_line) or code ~= "H" then
      break
    end
    local pair = 0
    for name, increment in string.gmatch(items, "([^\31]+)\31([^\31]+)") do
      pair = pair + 1
      if line == stop_line and pair == stop_pair then
        break
      end
      local back = string.sub(increment, 1, 1) == "-" and string.sub(increment, 2) or
                   "-" .. increment
      -- Back to 0: the field was new (or 0, which reads the same): remove it, and with its
      -- last field a new key, which has no expiry yet.
      if redis.call("HINCRBY", key, name, back) == 0 then
        redis.call("HDEL", key, name)
      end
    end
  end
end

local function undo(failed_line, failed_pair, failed_key, field, reason)
  take_back(failed_line, failed_pair)
  return redis.error_reply("apply.lua: overflow: " .. failed_key .. " " .. field .. ": " ..
                           reason .. "; nothing of the batch was applied")
end

if undoing then
  take_back()
  redis.call("DEL", KEYS[1])
  return 1
end

local line = 0
for code, key, number, items in string.gmatch(ARGV[3], LINE) do
  line = line + 1
  if code == "H" then
    -- A key's expiry is fixed by its chunk: it only needs setting when the key is new, and
    -- a new key has only new fields, whose value after HINCRBY is the increment itself.
    local fresh = false
    local pair = 0
    for field, increment in string.gmatch(items, "([^\31]+)\31([^\31]+)") do
      pair = pair + 1
      local value = redis.pcall("HINCRBY", key, field, increment)
      if type(value) == "table" then
        return undo(line, pair, key, field, value.err)
      end
      if value == tonumber(increment) then
        fresh = true
      end
    end
    if fresh then
      redis.call("EXPIREAT", key, number)
    end
  elseif code == "U" then
    local uids = {}
    for uid in string.gmatch(items, "[^\31]+") do
      uids[#uids + 1] = uid
    end
    -- A new HyperLogLog always changes; an unchanged one already has its expiry.
    if pfadd(key, uids) > 0 then
      redis.call("EXPIREAT", key, number)
    end
  elseif code == "X" then
    local low, high = string.match(items, "([^\31]+)\31([^\31]+)")
    local known = redis.call("HMGET", key, "<", ">")
    if not known[1] or tonumber(low) < tonumber(known[1]) then
      redis.call("HSET", key, "<", low)
    end
    if not known[2] or tonumber(high) > tonumber(known[2]) then
      redis.call("HSET", key, ">", high)
    end
  elseif code == "G" then
    local parts = {}
    for item in string.gmatch(items, "[^\31]+") do
      parts[#parts + 1] = item
    end
    local child = parts[1]
    local now = tonumber(redis.call("HGET", key, child) or "0")
    local function value(how, given)
      if how == "=" then
        return given
      end
      -- 15 digits: what a double holds exactly in decimal, so 0.7 + 1 reads 1.7.
      return string.format("%.15g", now + tonumber(given))
    end
    for j = 4, #parts - 3, 4 do
      if redis.call("HSET", parts[j], child, value(parts[j + 2], parts[j + 3])) == 1 then
        redis.call("EXPIREAT", parts[j], parts[j + 1])
      end
    end
    redis.call("HSET", key, child, value(parts[2], parts[3]))
    redis.call("EXPIRE", key, number)
  elseif code == "L" then
    if redis.call("EXISTS", items) == 0 then
      redis.call("SET", key, number)
    end
  elseif code == "S" then
    -- pks may be "" (the default pk): split keeping empty members.
    local start = 1
    while start do
      local stop = string.find(items, "\31", start, true)
      redis.call("SADD", key, string.sub(items, start, stop and stop - 1 or -1))
      start = stop and stop + 1
    end
  elseif code == "Z" or code == "M" then
    for first, second in string.gmatch(items, "([^\31]+)\31([^\31]+)") do
      if code == "Z" then
        redis.call("ZADD", key, "GT", first, second)
      else
        redis.call("HSET", key, first, second)
      end
    end
    redis.call("EXPIRE", key, number)
  else
    return redis.error_reply("apply.lua: unknown operation " .. tostring(code))
  end
end

if ARGV[1] ~= "" then
  redis.call("SET", KEYS[1], ARGV[2], "EX", ARGV[1])
end
return {1, ARGV[2]}
