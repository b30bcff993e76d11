-- The metric-name guard: which of a batch's metric names a pk has room for, decided and
-- reserved in one atomic step (concurrent writers cannot pass the cap).
--
-- KEYS[1]   the pk's metric registry (hash: name -> "sum" | "unique")
-- ARGV[1]   MAX_PK_METRICS
-- ARGV[2]   seconds the registry lives (the longest retention), as apply.lua keeps it
-- ARGV[3..] name, kind, name, kind, ... of the batch
-- Returns the names with no room: the events carrying them are refused.

local count = redis.call("HLEN", KEYS[1])
local cap = tonumber(ARGV[1])
local refused = {}
local added = false
for i = 3, #ARGV, 2 do
  local name = ARGV[i]
  if redis.call("HEXISTS", KEYS[1], name) == 0 then
    if count < cap then
      redis.call("HSET", KEYS[1], name, ARGV[i + 1])
      count = count + 1
      added = true
    else
      refused[#refused + 1] = name
    end
  end
end
if added then
  redis.call("EXPIRE", KEYS[1], ARGV[2])
end
return refused
