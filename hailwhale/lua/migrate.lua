-- Carries one counter hash of the first storage layout into today's, once (hailwhale/migrate.py).
--
-- KEYS[1]   the marker that this old hash was carried over; in the hash slot of KEYS[2..]
-- KEYS[2..] the bucket hashes it adds to (hailwhale/keys.py: all of one parent, one slot)
-- ARGV[1]   the old hash's remaining life in milliseconds: the marker's, and that of a bucket
--           hash created here (a hash that exists keeps its own expiry)
-- ARGV[2..] for KEYS[i]: "field US increment US field US increment ..." (US is \31)
-- Returns 1 when carried over, 0 when the marker says it was before (a rerun, or another
-- migrate at the same time): then nothing is added again.
-- Increments stay strings: Lua numbers are doubles and would round past 2^53.

if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
for i = 2, #KEYS do
  for field, increment in string.gmatch(ARGV[i], "([^\31]+)\31([^\31]+)") do
    redis.call("HINCRBY", KEYS[i], field, increment)
  end
  if redis.call("PTTL", KEYS[i]) < 0 then
    redis.call("PEXPIRE", KEYS[i], ARGV[1])
  end
end
redis.call("SET", KEYS[1], "1", "PX", ARGV[1])
return 1
