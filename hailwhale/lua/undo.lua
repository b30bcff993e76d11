-- Takes back one applied part of a batch (apply.lua's counter lines, negated), when a later
-- part of the same batch would overflow a counter: the batch is then counted event by event,
-- and nothing of it may stay counted whole.
--
-- KEYS[1]  the part's marker (set by apply.lua when it applied the part)
-- ARGV[1]  the part's operations as apply.lua took them; only its "H" lines are undone: the
--          other operations (PFADD, ZADD GT, HSET of names, SADD) change nothing when they
--          are made again, so leaving them is the same as making them twice.
-- Returns 1 when the part was undone, 0 when its marker was not there (nothing applied).
-- Undo and marker go in one step, so a crash leaves the part either applied and marked or
-- undone and unmarked.

if redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
for code, key, _, items in string.gmatch(ARGV[1], "(%u)\t([^\t\n]+)\t([^\t\n]*)\t([^\n]*)\n") do
  if code == "H" then
    for name, increment in string.gmatch(items, "([^\31]+)\31([^\31]+)") do
      local back = string.sub(increment, 1, 1) == "-" and string.sub(increment, 2) or
                   "-" .. increment
      -- Back to 0: the field was new (or 0, which reads the same).
      if redis.call("HINCRBY", key, name, back) == 0 then
        redis.call("HDEL", key, name)
      end
    end
  end
end
redis.call("DEL", KEYS[1])
return 1
