-- The cardinality guard: which of a batch's children a parent has room for, decided and
-- reserved in one atomic step, so concurrent writers can never push a parent past its cap.
--
-- KEYS[1]   the parent's children sorted set (child -> when last seen)
-- ARGV[1]   MAX_CHILDREN
-- ARGV[2]   forget children not seen since this time (the longest retention ago)
-- ARGV[3]   the time to reserve a new child with
-- ARGV[4]   seconds the set lives (the longest retention), as apply.lua keeps it
-- ARGV[5..] the batch's children of this parent
-- Returns the children with no room: the caller counts them under "__other__".
-- "__other__" itself always has room and does not count against the cap.

local other = "__other__"
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", "(" .. ARGV[2])
local count = redis.call("ZCARD", KEYS[1])
if redis.call("ZSCORE", KEYS[1], other) then
  count = count - 1
end
local cap = tonumber(ARGV[1])
local refused = {}
local added = false
for i = 5, #ARGV do
  local child = ARGV[i]
  if child ~= other and not redis.call("ZSCORE", KEYS[1], child) then
    if count < cap then
      redis.call("ZADD", KEYS[1], ARGV[3], child)
      count = count + 1
      added = true
    else
      refused[#refused + 1] = child
    end
  end
end
if added then
  redis.call("EXPIRE", KEYS[1], ARGV[4])
end
return refused
