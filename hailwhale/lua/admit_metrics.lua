-- The metric-name guard: which of a batch's metric names a pk has room for, decided and
-- reserved in one atomic step (concurrent writers cannot pass the cap).
--
-- KEYS[1]   the pk's metric registry (hash: name -> "sum" | "unique" | "gauge" | "timing")
-- ARGV[1]   MAX_PK_METRICS
-- ARGV[2]   seconds the registry lives (the longest retention), as apply.lua keeps it
-- ARGV[3..] name, kind, name, kind, ... of the batch (a name may come with several kinds)
-- Returns the names refused: those with no room as they are, and those the pk already holds
-- as another kind as "!name:kind:known" (a sum cannot become a timing: their counters
-- differ; kind is the one refused, known the one held);
-- the events carrying them are refused.

local count = redis.call("HLEN", KEYS[1])
local cap = tonumber(ARGV[1])
local refused = {}
local added = false
for i = 3, #ARGV, 2 do
  local name = ARGV[i]
  local known = redis.call("HGET", KEYS[1], name)
  if known and known ~= ARGV[i + 1] then
    refused[#refused + 1] = "!" .. name .. ":" .. ARGV[i + 1] .. ":" .. known
  elseif not known then
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
