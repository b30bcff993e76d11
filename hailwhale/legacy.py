"""Renames HailWhale's own keys from their names before they were tagged ``{%...}``.

``hw:{pks}`` and ``hw:{hail}:...`` could be reached by the pks ``pks`` and ``hail`` (``hailwhale
reset --pk pks`` emptied /pks for everyone). Their new names no pk can produce. Each store and
buffer renames what it finds under the old names when it is opened, once: safe to run any
number of times, and by several processes at once (each key moves in one atomic script).
"""

from __future__ import annotations

import logging

import redis

from . import keys

log = logging.getLogger("hailwhale.legacy")

# Moves one key to its new name: a rename, or, when both exist (an old and a new process
# wrote meanwhile), the old one's contents appended to the new one's. Lists keep their
# order (the old list's items were older); sets and sorted sets are unions.
_MOVE = """
local kind = redis.call("TYPE", KEYS[1]).ok
if kind == "none" then return 0 end
if redis.call("EXISTS", KEYS[2]) == 0 then
  redis.call("RENAME", KEYS[1], KEYS[2])
  return 1
end
if kind == "list" then
  while redis.call("LMOVE", KEYS[1], KEYS[2], "RIGHT", "LEFT") do end
elseif kind == "set" then
  redis.call("SUNIONSTORE", KEYS[2], KEYS[2], KEYS[1])
  redis.call("DEL", KEYS[1])
elseif kind == "zset" then
  redis.call("ZUNIONSTORE", KEYS[2], 2, KEYS[2], KEYS[1], "AGGREGATE", "MAX")
  redis.call("DEL", KEYS[1])
else
  redis.call("DEL", KEYS[1])  -- a marker string: the new one already says the same
end
return 1
"""


def rename_on_open(client: redis.Redis, batches: bool = True) -> None:
    """rename_legacy_keys, where a store or buffer is opened: a Redis that cannot be reached
    yet is left for the next start (opening stays lazy; the first request reports it)."""
    try:
        rename_legacy_keys(client, batches)
    except (redis.ConnectionError, redis.TimeoutError):
        log.debug("Redis unreachable: legacy key names not checked")


def rename_legacy_keys(client: redis.Redis, batches: bool = True) -> int:
    """Move every key found under an old name to its new one; how many were moved.
    ``batches``: also a Hail buffer's per-batch keys, found by SCAN (a buffer's Redis is
    small; Whale's store, which may hold millions of keys, is not scanned at every start).

    On Redis Cluster the old and new names lie in different slots, which one script cannot
    span: there the keys are reported, to be moved by hand with Hail and hailwail stopped."""
    found = [(old, new) for old, new in keys.LEGACY.items()]
    scanned = ((f"{keys.LEGACY_HAIL}:batch:*", f"{keys.HAIL}:batch:"),
               (f"{keys.LEGACY_HAIL}:dead:*", f"{keys.HAIL}:dead:")) if batches else ()
    for pattern, new_prefix in scanned:
        old_prefix = pattern[:-1]
        for key in client.scan_iter(match=pattern, count=1000):
            # A Whale batch marker of the pk "hail" is a string under the same pattern;
            # only a Hail node's processing lists and dead-letter markers move.
            wanted = "list" if ":batch:" in pattern else "string"
            if client.type(key) == wanted:
                found.append((key, new_prefix + key[len(old_prefix):]))
    moved = 0
    for old, new in found:
        try:
            moved += client.eval(_MOVE, 2, old, new)
        except (redis.ResponseError, redis.exceptions.RedisClusterException) as exc:
            # CROSSSLOT: on a cluster the two names lie in different slots.
            if client.exists(old):
                log.warning("cannot rename %s to %s here (%s): move it by hand", old, new, exc)
    if moved:
        log.info("renamed %d keys to their current names", moved)
    return moved
