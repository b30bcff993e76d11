"""The Redis key schema: every key HailWhale uses is built here, and only here.

Pure string building, testable with no Redis. Each user-given part (pk, dimension names,
metric names) is percent-encoded, so the separators ``|``, ``:``, ``{`` and ``}`` (and the glob
characters ``*?[]``) never appear inside a part: two different series can never share a key,
and a ``SCAN`` pattern built from a pk cannot match another pk's keys.

All keys of one series (pk + dimension path) share a Redis Cluster hash tag, so a series is
read from one node, and per-slot Lua scripts can apply a batch atomically.

    hw:{<pk>|<dim>|<dim>}:c:<metric>:<period>:<chunk>   hash: bucket -> counter
    hw:{<pk>|<dim>|<dim>}:u:<metric>:<period>:<bucket>  HyperLogLog of uids
    hw:{<pk>|<dim>}:children                             sorted set: child -> last seen
    hw:{<pk>}:metrics                                    hash: metric -> "sum" | "unique"
    hw:{%pks}                                            set of the pks in use
    hw:{%batch}:<id>                                     a batch id already applied
    hw:{<tag>}:batch:<id>                                on a cluster: a slot's part applied
    hw:{%hail}:buffer, :inflight, :batch:<id>, :dead     a Hail node's buffer (its own Redis)
    hw:{%hail}:dead:<id>                                 a batch's dead letters recorded

HailWhale's own keys are tagged ``{%...}``: percent-encoding never yields a ``%`` followed by
letters, so no pk can name them (the pks ``pks`` and ``hail`` once could; see LEGACY).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from .dimensions import Path
from .periods import Period

PREFIX = "hw"
PKS = f"{PREFIX}:{{%pks}}"  # tagged, so a batch marker can sit in its slot
# Buckets per counter hash. With two fields at most per bucket (whole and fraction), a chunk
# stays under Redis' default hash-max-listpack-entries (128), so it keeps the compact encoding.
CHUNK = 60


# Key parts and series tags are cached (a batch builds the same names into thousands of
# keys), but only short ones, so each cache stays bounded by what it holds: 65,536 entries
# of at most _CACHED characters, encoded at most three times longer (about 50 MiB in all
# at worst), however many long names clients make up.
_CACHED = 128


def _part(text: str) -> str:
    return _cached_part(text) if len(text) <= _CACHED else quote(text, safe="")


@lru_cache(maxsize=65536)
def _cached_part(text: str) -> str:
    return quote(text, safe="")


def _pk(pk: str) -> str:
    # The default pk "" would make the root's hash tag "{}", which Redis Cluster ignores
    # (it then hashes the whole key, scattering one series over many slots). A lone "%" is
    # never produced by percent-encoding, so it cannot stand for any other pk.
    return _part(pk) or "%"


def series_tag(pk: str, path: Path) -> str:
    """The hash tag shared by every key of one series: ``{pk|dim|dim}``."""
    if len(pk) + sum(len(part) for part in path) <= _CACHED:
        return _cached_tag(pk, path)
    return _tag(pk, path)


def _tag(pk: str, path: Path) -> str:
    return "{" + _pk(pk) + "".join("|" + _part(part) for part in path) + "}"


_cached_tag = lru_cache(maxsize=65536)(_tag)


def chunk_of(ordinal: int) -> tuple[int, int]:
    """``(chunk number, slot in the chunk)`` of a bucket ordinal."""
    return divmod(ordinal, CHUNK)


def counter(pk: str, path: Path, metric: str, period: Period, chunk: int) -> str:
    """The hash holding ``CHUNK`` buckets of one summed metric."""
    return f"{PREFIX}:{series_tag(pk, path)}:c:{_part(metric)}:{period.code}:{chunk}"


def counter_fields(slot: int) -> tuple[str, str]:
    """The fields of one bucket: whole units and billionths (see hailwhale.numbers)."""
    return _FIELDS[slot] if 0 <= slot < CHUNK else (str(slot), f"{slot}f")


_FIELDS = [(str(slot), f"{slot}f") for slot in range(CHUNK)]  # every batch spells them


def unique(pk: str, path: Path, metric: str, period: Period, ordinal: int) -> str:
    """The HyperLogLog of one bucket of a unique metric."""
    return f"{PREFIX}:{series_tag(pk, path)}:u:{_part(metric)}:{period.code}:{ordinal}"


def children(pk: str, path: Path) -> str:
    """The sorted set of the children seen under ``path``, scored by when last seen."""
    return f"{PREFIX}:{series_tag(pk, path)}:children"


def metrics(pk: str) -> str:
    """The hash of a pk's metric names and their kinds."""
    return f"{PREFIX}:{series_tag(pk, ())}:metrics"


def batch_done(batch_id: str) -> str:
    """The key remembering that a batch id was applied (the whole batch, whatever it held)."""
    return f"{PREFIX}:{{%batch}}:{_part(batch_id)}"


def batch_marker(batch_id: str, near: str) -> str:
    """On a cluster, the key remembering that one hash slot's part of a batch was applied,
    in the slot of the key ``near``, so a retry after a crash completes the missed slots."""
    tag = near[near.index("{") + 1: near.index("}", near.index("{"))] if "{" in near else near
    return f"{PREFIX}:{{{tag}}}:batch:{_part(batch_id)}"


# A Hail node's buffer, in its own Redis (HAIL_REDIS_URL); one hash tag, so the buffer's
# scripts also run on a cluster.
HAIL = f"{PREFIX}:{{%hail}}"
BUFFER = f"{HAIL}:buffer"  # list of events, oldest first
INFLIGHT = f"{HAIL}:inflight"  # sorted set: batch id -> lease start
DEAD = f"{HAIL}:dead"  # list of events that cannot be counted, with reasons

# The names of HailWhale's own keys before they were tagged {%...}: old name -> new name,
# and the old prefixes of per-batch keys (see hailwhale/legacy.py, which renames them).
LEGACY_HAIL = f"{PREFIX}:{{hail}}"
LEGACY = {f"{PREFIX}:{{pks}}": PKS, f"{LEGACY_HAIL}:buffer": BUFFER,
          f"{LEGACY_HAIL}:inflight": INFLIGHT, f"{LEGACY_HAIL}:dead": DEAD}


def dead_marker(batch_id: str) -> str:
    """The key remembering that a batch's refused events were dead-lettered (beside DEAD)."""
    return f"{HAIL}:dead:{_part(batch_id)}"


def processing(batch_id: str) -> str:
    """The list holding one in-flight batch's events until Whale confirms them."""
    return f"{HAIL}:batch:{_part(batch_id)}"


def pk_pattern(pk: str) -> str:
    """A SCAN pattern that matches every key of ``pk`` and nothing else."""
    # The pk is followed by "}" (the root's keys) or "|" (every other path's).
    return f"{PREFIX}:{{{_pk(pk)}[}}|]*"
