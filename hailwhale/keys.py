"""The Redis key schema: every key HailWhale uses is built here, and only here.

Pure string building, testable with no Redis. Each user-given part (pk, dimension names,
metric names) is percent-encoded in keys, so the separators ``|``, ``:``, ``{`` and ``}`` (and
the glob characters ``*?[]``) never appear inside a part: two different series can never share
a key, and a ``SCAN`` pattern built from a pk cannot match another pk's keys.

Counters live beside their siblings: one hash per (parent, summed metric, period, bucket)
holds that bucket of every child of the parent, a field per child (the root, which has no
parent, is the field ROOT_FIELD of the root's own hash). A bucket of a page, its section's other
pages and, for the root, the root itself are one key: a batch writes few keys, each holds many
counters compactly, and ``depth=1`` reads one hash per bucket for all the children.

    hw:{<pk>|<dim>}:s:<metric>:<period>:<bucket>   hash: child -> whole units,
                                                   child + FRACTION -> billionths
    hw:{<pk>|<dim>|<dim>}:u:<metric>:<period>:<bucket>  HyperLogLog of uids
    hw:{<pk>|<dim>}:g:<metric>:<period>:<bucket>   hash: child -> a gauge's value at the
                                                   end of the bucket
    hw:{<pk>|<dim>}:l:<metric>                     hash: child -> a gauge's value now
    hw:{<pk>|<dim>|<dim>}:d:<metric>:<period>:<bucket>  hash: a timing's sketch (bins,
                                                   sum, min, max: hailwhale/sketch.py)
    hw:{<pk>|<dim>}:children                       sorted set: child -> last seen
    hw:{<pk>}:metrics                              hash: metric -> its kind ("sum",
                                                   "unique", "gauge", "timing")
    hw:{%pks}                                      set of the pks in use
    hw:{%pks}:layout                               the storage layout's version (LAYOUT)
    hw:{%batch}:<id>                               a batch id already applied
    hw:{<tag>}:batch:<id>                          on a cluster: a slot's part applied
    hw:{<tag>}:migrated:<old key>                  hailwhale migrate: an old key carried over
    hw:{%hail}:buffer, :inflight, :batch:<id>, :dead   a Hail node's buffer (its own Redis)
    hw:{%hail}:dead:<id>                           a batch's dead letters recorded

All keys of one parent's children share a Redis Cluster hash tag (the parent's), so they
are read from one node and per-slot Lua scripts apply a batch atomically. Field names are the
child names as they are: names cannot hold control characters (event parsing refuses them),
so FRACTION and ROOT_FIELD, control characters, are never part of a name.

HailWhale's own keys are tagged ``{%...}``: percent-encoding never yields a ``%`` followed by
letters, so no pk can name them (the pks ``pks`` and ``hail`` once could; see LEGACY).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from urllib.parse import quote, unquote

from .dimensions import Path
from .periods import Period

PREFIX = "hw"
PKS = f"{PREFIX}:{{%pks}}"  # tagged, so a batch marker can sit in its slot
# The storage layout this code reads and writes; a store written by an earlier one is
# carried over by ``hailwhale migrate`` (hailwhale/migrate.py).
LAYOUT = 2
LAYOUT_KEY = f"{PKS}:layout"  # in the slot of PKS: a batch records both in one step
# Appended to a child's name, the field of a bucket's billionths (see hailwhale.numbers).
FRACTION = "\x1e"
# The root's field in its own hashes (beside the root's children).
ROOT_FIELD = "\x1d"


# Key parts and series tags are cached (a batch builds the same names into thousands of
# keys), but only short ones, so each cache stays bounded by what it holds: 65,536 entries
# of at most _CACHED characters, encoded at most three times longer (about 50 MiB in all
# at worst), however many long names clients make up.
_CACHED = 128


def part(text: str) -> str:
    """A user-given name as it is spelled inside keys (percent-encoded)."""
    return _part(text)


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


def location(path: Path) -> tuple[Path, str]:
    """Where a series' counters are: ``(the parent whose hashes hold them, the field)``."""
    return (path[:-1], path[-1]) if path else (path, ROOT_FIELD)


def cells(pk: str, parent: Path, metric: str, period: Period, ordinal: int) -> str:
    """The hash of one bucket of one summed metric, for every child of ``parent`` (and,
    under the root, the root itself: field ROOT_FIELD)."""
    return f"{cells_stem(pk, parent, metric, period)}{ordinal}"


def cells_stem(pk: str, parent: Path, metric: str, period: Period) -> str:
    """What every ``cells`` key of one parent, metric and period starts with: the key of a
    bucket is the stem and its ordinal (read.lua builds them so)."""
    return f"{PREFIX}:{series_tag(pk, parent)}:{CELLS}:{_part(metric)}:{period.code}:"


# The kinds of stem: counters' hashes, HyperLogLogs, gauges' hashes, timings' sketches.
CELLS, UNIQUES, GAUGES, SKETCHES = "s", "u", "g", "d"


def stems(kind: str, tag, metric, code):
    """The stems ``cells_stem`` (kind CELLS) or ``unique_stem`` (kind UNIQUES) spell, as a
    polars expression over columns of series tags (``series_tag``), encoded metric names
    (``part``) and period codes: how Store builds a batch's keys as columns."""
    import polars as pl  # only Whale builds keys as columns

    return pl.concat_str([pl.lit(f"{PREFIX}:"), tag, pl.lit(f":{kind}:"), metric, pl.lit(":"),
                          code, pl.lit(":")])


def fields(name: str) -> tuple[str, str]:
    """The fields of one series in its parent's hash: whole units, and billionths."""
    return name, name + FRACTION


def unique(pk: str, path: Path, metric: str, period: Period, ordinal: int) -> str:
    """The HyperLogLog of one bucket of a unique metric."""
    return f"{unique_stem(pk, path, metric, period)}{ordinal}"


def unique_stem(pk: str, path: Path, metric: str, period: Period) -> str:
    """What every ``unique`` key of one series, metric and period starts with: the key of a
    bucket is the stem and its ordinal."""
    return f"{PREFIX}:{series_tag(pk, path)}:{UNIQUES}:{_part(metric)}:{period.code}:"


def gauge_cells(pk: str, parent: Path, metric: str, period: Period, ordinal: int) -> str:
    """The hash of one bucket of one gauge, for every child of ``parent`` (as ``cells``):
    each child's value at the end of the bucket."""
    return f"{gauge_stem(pk, parent, metric, period)}{ordinal}"


def gauge_stem(pk: str, parent: Path, metric: str, period: Period) -> str:
    """What every ``gauge_cells`` key of one parent, metric and period starts with."""
    return f"{PREFIX}:{series_tag(pk, parent)}:{GAUGES}:{_part(metric)}:{period.code}:"


def gauge_level(pk: str, parent: Path, metric: str) -> str:
    """The hash of one gauge's value now, for every child of ``parent``: what a delta moves."""
    return f"{PREFIX}:{series_tag(pk, parent)}:l:{_part(metric)}"


def sketch(pk: str, path: Path, metric: str, period: Period, ordinal: int) -> str:
    """The hash of one bucket of one timing of one series: its sketch."""
    return f"{sketch_stem(pk, path, metric, period)}{ordinal}"


def sketch_stem(pk: str, path: Path, metric: str, period: Period) -> str:
    """What every ``sketch`` key of one series, metric and period starts with."""
    return f"{PREFIX}:{series_tag(pk, path)}:{SKETCHES}:{_part(metric)}:{period.code}:"


def children(pk: str, path: Path) -> str:
    """The sorted set of the children seen under ``path``, scored by when last seen."""
    return f"{PREFIX}:{series_tag(pk, path)}:children"


def metrics(pk: str) -> str:
    """The hash of a pk's metric names and their kinds."""
    return f"{PREFIX}:{series_tag(pk, ())}:metrics"


def batch_done(batch_id: str) -> str:
    """The key remembering that a batch id was applied (the whole batch, whatever it held)."""
    return f"{PREFIX}:{{%batch}}:{_part(batch_id)}"


def migrated(old_key: str, near: str) -> str:
    """The marker that ``old_key`` of an earlier layout was carried over, in the hash slot of
    the key ``near`` it was carried into (so one script checks and sets it with the writes)."""
    return f"{PREFIX}:{{{_tag_of(near)}}}:migrated:{_part(old_key)}"


def _tag_of(key: str) -> str:
    return key[key.index("{") + 1: key.index("}", key.index("{"))] if "{" in key else key


# On a single Redis a batch with an id is applied in this many script calls, each holding
# the keys of some hash tags (apply_part), so one batch never holds Redis for long: other
# clients are served between the calls.
APPLY_PARTS = 32


def apply_part(key: str) -> int:
    """Which of the APPLY_PARTS calls of a batch writes ``key``: a stable function of the
    key's hash tag (the series), so a retried batch puts every key in the same part whatever
    else it holds. ``key`` may also be a bare series tag (``series_tag``)."""
    return zlib.crc32(_tag_of(key).encode()) % APPLY_PARTS


def batch_part(batch_id: str, part: int) -> str:
    """On a single Redis, the key remembering that one part (``apply_part``) of a batch was
    applied, so a retry after a crash applies exactly the parts that were missed; dropped
    once the batch id itself is recorded (``batch_done``)."""
    return f"{batch_done(batch_id)}:{part}"


def batch_marker(batch_id: str, near: str) -> str:
    """On a cluster, the key remembering that one hash slot's part of a batch was applied,
    in the slot of the key ``near``, so a retry after a crash completes the missed slots."""
    return f"{PREFIX}:{{{_tag_of(near)}}}:batch:{_part(batch_id)}"


# A Hail node's buffer, in its own Redis (HAIL_REDIS_URL); one hash tag, so the buffer's
# scripts also run on a cluster.
HAIL = f"{PREFIX}:{{%hail}}"
BUFFER = f"{HAIL}:buffer"  # list of events, oldest first
INFLIGHT = f"{HAIL}:inflight"  # sorted set: batch id -> lease start
DEAD = f"{HAIL}:dead"  # list of events that cannot be counted, with reasons
STATSD = f"{HAIL}:statsd"  # hash: the StatsD listener's tallies (packets, lines, refused)

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


# The first layout's counters (hailwhale/migrate.py reads them): one hash per series, summed
# metric, period and chunk of V1_CHUNK buckets, fields "<slot>" (whole units) and "<slot>f"
# (billionths).
V1_CHUNK = 60
V1_COUNTERS = f"{PREFIX}:{{*}}:c:*"  # a SCAN pattern matching every such key


def parse_v1_counter(key: str) -> tuple[str, Path, str, str, int] | None:
    """``(pk, path, metric, period code, chunk)`` of a first-layout counter key, or None
    when ``key`` is not one."""
    if not key.startswith(PREFIX + ":{") or "}:c:" not in key:
        return None
    tag, rest = key[len(PREFIX) + 2:].split("}:c:", 1)
    parts = rest.split(":")
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        return None
    names = [unquote(part) for part in tag.split("|")]
    pk = "" if names[0] == "%" else names[0]
    return pk, tuple(names[1:]), unquote(parts[0]), parts[1], int(parts[2])
