"""The store: every Redis read and write HailWhale makes goes through here.

Writes take a pre-aggregated batch (the store never aggregates) and apply it in one step;
reads fetch the buckets of many series in one round trip. Keys come from ``hailwhale.keys`` only.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster

from . import keys, telemetry
from .aggregate import GAUGE, SUM, TIMING, UNIQUE, Batch, Folded, path_of
from .cardinality import Refused, fold
from .config import Settings
from .connection import connect, redis_errors
from .dimensions import Path
from .errors import CounterOverflow
from .event import Event
from .numbers import NANO, from_nanos, split
from .periods import Period
from .sketch import SUM_FIELD, Sketch
from .wire import US as PATH_US  # how a Folded batch spells paths

Number = int | float
_LUA = pathlib.Path(__file__).parent / "lua"
APPLY_LUA = (_LUA / "apply.lua").read_text()
US = "\x1f"  # separates the items of an apply.lua operation (see the script's header)
UNIQUES_LUA = (_LUA / "uniques.lua").read_text()
READ_LUA = (_LUA / "read.lua").read_text()
ADMIT_LUA = (_LUA / "admit.lua").read_text()
ADMIT_METRICS_LUA = (_LUA / "admit_metrics.lua").read_text()


@dataclass(frozen=True)
class Reading:
    """One metric of one series over a window: a value per bucket and the window's total.
    For a gauge each bucket's value at its end (carried over buckets it did not change in;
    None before its first value) and, as the total, the latest; for a timing a Sketch per
    bucket and their merge."""

    values: list
    total: object


@dataclass(frozen=True)
class _Part:
    """The operations of one apply.lua call: on a single Redis those of the keys of one part
    (keys.apply_part), on a cluster those of one hash slot; counter lines first."""

    number: int  # the part, or the slot
    key: str  # one of its keys: on a cluster it routes the call
    counters: str  # the "H" lines
    rest: str  # the other lines

    @property
    def text(self) -> str:
        return self.counters + self.rest


def _parts(lines: Iterable[tuple[str, str]], number) -> list[_Part]:
    """``(key, line)`` pairs grouped by ``number(key)``, in order of their numbers, each
    part keeping the order of its lines."""
    groups: dict[int, list[tuple[str, str]]] = {}
    for key, line in lines:
        groups.setdefault(number(key), []).append((key, line))
    return [_Part(n, group[0][0], "".join(line for _, line in group if line[0] == "H"),
                  "".join(line for _, line in group if line[0] != "H"))
            for n, group in sorted(groups.items())]


class Store:
    """HailWhale's counters in one Redis (or Redis Cluster)."""

    def __init__(self, client: redis.Redis, settings: Settings):
        self.redis = client
        self.settings = settings
        self._apply = client.register_script(APPLY_LUA)
        self._uniques = client.register_script(UNIQUES_LUA)
        self._read = client.register_script(READ_LUA)
        self._admit_script = client.register_script(ADMIT_LUA)
        self._admit_metrics = client.register_script(ADMIT_METRICS_LUA)
        self._cluster = isinstance(client, RedisCluster)

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> Store:
        """A store on ``url``, by default Whale's configured Redis (keys under an earlier
        version's names renamed first, see hailwhale/legacy.py)."""
        from .legacy import rename_on_open

        client = connect(url or settings.redis_url)
        # The fixed names only (/pks, and the dead letters Celery workers keep here).
        rename_on_open(client, batches=False)
        return cls(client, settings)

    # -- writes ------------------------------------------------------------------------
    def write(self, batch: Batch | Folded, batch_id: str | None = None,
              record: str = "") -> tuple[bool, str]:
        """Apply a pre-aggregated batch.

        Without a ``batch_id``, on a single Redis, in one script call: all of it or none.
        With one, at most once, whatever the batch holds (also nothing: a batch whose every
        event was refused is remembered too): a repeat of the id changes nothing and returns
        ``(False, what the first application recorded)``. It is applied in parts, each in a
        script call of its own that remembers the part (on a single Redis the keys of some
        series, keys.apply_part; on Redis Cluster one hash slot), so a batch never holds
        Redis for long, and a retry after a crash applies exactly the parts that were missed;
        a reader may see a batch partly applied meanwhile. Without an id, a retry after a
        failure may count twice. CounterOverflow when a counter would pass a 64-bit integer:
        then nothing of the batch stays applied."""
        memory = str(self.settings.batch_memory) if batch_id else ""
        refused = self._admit(batch)
        if isinstance(batch, Folded) and not refused and not self._cluster:
            parts = self._column_operations(batch)
        else:
            # Refused children (rare: a parent at MAX_CHILDREN) and cluster slots are
            # handled on the batch as dictionaries.
            if isinstance(batch, Folded):
                batch = batch.batch()
            parts = self._operations(fold(batch, refused))
        with redis_errors(), _overflow():
            if not batch_id:
                if not self._cluster and parts:
                    # One call: every counter line first (apply.lua's undo relies on it).
                    parts = [_Part(0, parts[0].key, "".join(p.counters for p in parts),
                                   "".join(p.rest for p in parts))]
                for part in parts:
                    self._apply(keys=[part.key], args=["", record, part.text,
                                                       part.text.count("\n")])
                telemetry.folded(refused)  # counted under __other__ now
                return True, record
            seen = self.redis.get(keys.batch_done(batch_id))
            if seen is not None:
                return False, seen
            markers = [keys.batch_marker(batch_id, part.key) if self._cluster
                       else keys.batch_part(batch_id, part.number) for part in parts]
            # On a single Redis each part also checks the id's own key: the same batch may be
            # applied by two workers at once (a hailwail whose lease ran out, sending it
            # again), and once one has recorded the id it drops the parts' markers.
            done_key = [] if self._cluster else [keys.batch_done(batch_id)]
            for index, (part, marker) in enumerate(zip(parts, markers, strict=True)):
                try:
                    self._apply(keys=[marker, *done_key], args=[memory, record, part.text,
                                                                part.text.count("\n")])
                except redis.ResponseError as exc:
                    if "apply.lua: overflow" in str(exc):
                        # This part undid itself; the parts before it are taken back too
                        # (also any an earlier attempt applied, as this batch holds them).
                        for done, done_marker in zip(parts[:index], markers[:index],
                                                     strict=True):
                            self._apply(keys=[done_marker], args=[
                                "", "", done.counters, done.counters.count("\n"), "undo"])
                    raise
            if self._cluster:
                self.redis.set(keys.batch_done(batch_id), record, ex=int(memory))
            else:
                # Once the id is remembered its parts are never looked at again: dropping
                # their markers keeps one key a batch for BATCH_MEMORY instead of up to 33.
                with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(keys.batch_done(batch_id), record, ex=int(memory))
                    if markers:
                        pipe.delete(*markers)
                    pipe.execute()
        telemetry.folded(refused)
        return True, record

    def admit_metrics(self, names: dict[str, list[tuple[str, str]]]
                      ) -> dict[str, dict[str, str]]:
        """The metric-name guard: per pk, what of ``names`` (pk -> [(metric, kind)], as
        ``metric_names`` gives them) is refused, with why: a name the pk has no room for
        (it holds MAX_PK_METRICS names already), keyed by the name (every kind of it); a
        name it holds as another kind (a sum cannot become a timing), keyed ``name:kind``
        (only that kind: names hold no colon). Decided and reserved atomically in Redis
        by admit_metrics.lua, one pipelined round trip."""
        if not names:
            return {}
        longest = max(p.retention for p in self.settings.periods)
        pks = list(names.items())
        answers = self._each(self._admit_metrics, [
            (keys.metrics(pk), [self.settings.max_pk_metrics, longest,
                                *(part for pair in kinds for part in pair)])
            for pk, kinds in pks])
        refused: dict[str, dict[str, str]] = {}
        for (pk, _), no in zip(pks, answers, strict=True):
            for entry in no:
                if entry.startswith("!"):  # "!name:kind:known": held as another kind
                    name, kind, known = entry[1:].split(":")
                    name, reason = f"{name}:{kind}", (
                        f"{name} is a {known} metric of pk {pk!r}; it cannot be counted as "
                        f"a {kind} (give the {kind} another name)")
                else:
                    name, reason = entry, (
                        f"pk {pk!r} already has MAX_PK_METRICS "
                        f"({self.settings.max_pk_metrics}) metric names; a new one is refused")
                refused.setdefault(pk, {})[name] = reason
        return refused

    def _each(self, script, calls: list[tuple[str, list]]) -> list:
        """``script`` run once per ``(key, args)`` of ``calls``, in one pipelined round trip
        (on a cluster, where scripts cannot be pipelined, one call each): the answers."""
        with redis_errors():
            if self._cluster:
                return [script(keys=[key], args=args) for key, args in calls]
            pipe = self.redis.pipeline(transaction=False)
            for key, args in calls:
                script(keys=[key], args=args, client=pipe)
            return pipe.execute()

    def _admit(self, batch: Batch | Folded) -> Refused:
        """The cardinality guard: for every parent the batch counts children under, which of
        them have no room (MAX_CHILDREN), decided and reserved atomically in Redis by
        admit.lua, one pipelined round trip for the whole batch."""
        if not batch.children:
            return {}
        now = time.time()
        longest = max(p.retention for p in self.settings.periods)
        parents = list(batch.children.items())
        answers = self._each(self._admit_script, [
            (keys.children(pk, parent), [self.settings.max_children, now - longest, now,
                                         longest, *seen])
            for (pk, parent), seen in parents])
        return {parent: set(no_room) for (parent, _), no_room in zip(parents, answers,
                                                                    strict=True) if no_room}

    def _operations(self, batch: Batch) -> list[_Part]:
        """The batch as apply.lua's operations, one part per hash slot on a cluster, per
        keys.apply_part on a single Redis."""
        tz = self.settings.tz
        periods = batch.periods
        lines: list[tuple[str, str]] = []  # (key, line)
        # key -> (expiry, "field US increment" items): one hash per parent, metric, bucket.
        counters: dict[str, tuple[int, list[str]]] = {}
        bucket_ends: dict[tuple[int, int], int] = {}  # (period, ordinal) -> when it may go
        for (pk, path, index, ordinal), sums in batch.counters.items():
            parent, name = keys.location(path)
            whole_field, fraction_field = keys.fields(name)
            period = periods[index]
            for metric, nanos in sums.items():
                if not nanos:
                    continue
                key = keys.cells(pk, parent, metric, period, ordinal)
                found = counters.get(key)
                if found is None:
                    when = bucket_ends.get((index, ordinal))
                    if when is None:
                        when = bucket_ends[(index, ordinal)] = period.expires_at(ordinal, tz)
                    found = counters[key] = (when, [])
                items = found[1]
                whole, fraction = split(nanos)
                if whole:
                    items.append(f"{whole_field}{US}{whole}")
                if fraction:
                    items.append(f"{fraction_field}{US}{fraction}")
        lines += [(key, f"H\t{key}\t{when}\t{US.join(items)}\n")
                  for key, (when, items) in counters.items()]
        for (pk, path, index, ordinal), uids in batch.uniques.items():
            period = periods[index]
            when = bucket_ends.get((index, ordinal))
            if when is None:
                when = bucket_ends[(index, ordinal)] = period.expires_at(ordinal, tz)
            for metric, members in uids.items():
                key = keys.unique(pk, path, metric, period, ordinal)
                lines.append((key, f"U\t{key}\t{when}\t{US.join(members)}\n"))
        lines += self._kind_lines(batch)
        lines += self._index_lines(batch)
        return self._by_slot(lines)

    def _kind_lines(self, batch: Batch | Folded) -> list[tuple[str, str]]:
        """The operations of timings and gauges: per sketch an "H" line of its bins and sum
        (counters, added and undone like any) and an "X" line of its minimum and maximum;
        per gauge series a "G" line of its changes (see apply.lua)."""
        tz, periods = self.settings.tz, batch.periods
        lines: list[tuple[str, str]] = []
        for (pk, path, index, ordinal), found in batch.sketches.items():
            period = periods[index]
            when = period.expires_at(ordinal, tz)
            for metric, sketch in found.items():
                key = keys.sketch(pk, path, metric, period, ordinal)
                whole, fraction = split(sketch.nanos)
                items = [f"{name}{US}{count}" for name, count in sketch.bins.items()]
                if whole:
                    items.append(f"{SUM_FIELD}{US}{whole}")
                if fraction:
                    items.append(f"{SUM_FIELD}{keys.FRACTION}{US}{fraction}")
                lines.append((key, f"H\t{key}\t{when}\t{US.join(items)}\n"))
                lines.append((key, f"X\t{key}\t\t{sketch.low!r}{US}{sketch.high!r}\n"))
        longest = max(p.retention for p in periods) if periods else 0
        for (pk, path, metric), gauge in batch.gauges.items():
            parent, child = keys.location(path)
            key = keys.gauge_level(pk, parent, metric)
            _, absolute, value = gauge.final
            items = [child, "=" if absolute else "+", repr(value)]
            for (index, ordinal), (_, absolute, value) in gauge.buckets.items():
                period = periods[index]
                items += [keys.gauge_cells(pk, parent, metric, period, ordinal),
                          str(period.expires_at(ordinal, tz)), "=" if absolute else "+",
                          repr(value)]
            lines.append((key, f"G\t{key}\t{longest}\t{US.join(items)}\n"))
        return lines

    def _by_slot(self, lines: list[tuple[str, str]]) -> list[_Part]:
        """``(key, line)`` pairs as parts: per hash slot on a cluster, per keys.apply_part
        on a single Redis."""
        return _parts(lines, self._slot if self._cluster else keys.apply_part)

    def _index_lines(self, batch: Batch | Folded) -> list[tuple[str, str]]:
        """The operations after the counters: children, metric names, the layout, pks."""
        lines: list[tuple[str, str]] = []
        longest = max(p.retention for p in self.settings.periods)
        for (pk, parent), children in batch.children.items():
            key = keys.children(pk, parent)
            items = US.join(f"{seen!r}{US}{child}" for child, seen in children.items())
            lines.append((key, f"Z\t{key}\t{longest}\t{items}\n"))
        for pk, kinds in batch.metric_kinds.items():
            key = keys.metrics(pk)
            items = US.join(f"{name}{US}{kind}" for name, kind in kinds.items())
            lines.append((key, f"M\t{key}\t{longest}\t{items}\n"))
        if batch.metric_kinds:
            # A store's first batch (no pks yet) records the layout it is written in.
            lines.append((keys.LAYOUT_KEY,
                          f"L\t{keys.LAYOUT_KEY}\t{keys.LAYOUT}\t{keys.PKS}\n"))
            lines.append((keys.PKS, f"S\t{keys.PKS}\t-\t{US.join(batch.metric_kinds)}\n"))
        return lines

    def _column_operations(self, batch: Folded) -> list[_Part]:
        """A batch folded as columns as apply.lua's operations (on a single Redis, with no
        refused children), in parts as keys.apply_part puts them: the counter and
        HyperLogLog lines built by polars expressions, a Python step only per distinct
        series (a key's stem) and per bucket (its expiry), never per counter."""
        import polars as pl  # loaded by Whale only (see hailwhale.batches)

        tz, periods = self.settings.tz, batch.periods
        counters: dict[int, str] = {}
        others: dict[int, list[str]] = {}
        sums = batch.sums.with_columns(
            whole=pl.col("wholes") + pl.col("fractions") // NANO,
            fraction=pl.col("fractions") % NANO, parts=pl.col("path").str.split(PATH_US))
        sums = sums.with_columns(
            parent=pl.when(pl.col("path") == "").then(pl.lit(""))
            .otherwise(pl.col("parts").list.head(pl.col("parts").list.len() - 1)
                       .list.join(PATH_US)),
            child=pl.when(pl.col("path") == "").then(pl.lit(keys.ROOT_FIELD))
            .otherwise(pl.col("parts").list.last()))
        if sums.height:
            stems = _stems(sums, "parent", "names", keys.CELLS, periods)
            ends = _ends(sums, periods, tz)
            # One string expression (concat_list and list.join took four times as long).
            items = pl.concat_str([
                pl.when(pl.col("whole") != 0).then(
                    pl.col("child") + US + pl.col("whole").cast(pl.String)),
                pl.when(pl.col("fraction") != 0).then(
                    pl.col("child") + keys.FRACTION + US + pl.col("fraction").cast(pl.String)),
            ], separator=US, ignore_nulls=True)
            hashes = (sums.join(stems, on=["pk", "parent", "names", "period"])
                      .join(ends, on=["period", "ordinal"])
                      .select("part", key=pl.col("stem") + pl.col("ordinal").cast(pl.String),
                              when=pl.col("when"), item=items)
                      .filter(pl.col("item") != "")
                      .group_by("key", maintain_order=True)
                      .agg(pl.col("part").first(), pl.col("when").first(),
                           pl.col("item").str.join(US)))
            counters = dict(hashes.group_by("part").agg(pl.concat_str([
                pl.lit("H\t"), pl.col("key"), pl.lit("\t"), pl.col("when").cast(pl.String),
                pl.lit("\t"), pl.col("item"), pl.lit("\n")]).str.join("")).iter_rows())
        members = batch.members
        if members.height:
            stems = _stems(members, "path", "uniques", keys.UNIQUES, periods)
            lines = (members.join(stems, on=["pk", "path", "uniques", "period"])
                     .join(_ends(members, periods, tz), on=["period", "ordinal"])
                     .group_by("part").agg(pl.concat_str([
                         pl.lit("U\t"), pl.col("stem"), pl.col("ordinal").cast(pl.String),
                         pl.lit("\t"), pl.col("when").cast(pl.String), pl.lit("\t"),
                         pl.col("uid").list.join(US), pl.lit("\n")]).str.join("")))
            for number, text in lines.iter_rows():
                others.setdefault(number, []).append(text)
        for key, line in self._kind_lines(batch) + self._index_lines(batch):
            if line[0] == "H":  # a sketch's counters: with the other counter lines
                counters[keys.apply_part(key)] = counters.get(keys.apply_part(key), "") + line
            else:
                others.setdefault(keys.apply_part(key), []).append(line)
        parts = []
        for number in sorted(set(counters) | set(others)):
            text, rest = counters.get(number, ""), "".join(others.get(number, ()))
            parts.append(_Part(number, (text or rest).split("\t", 2)[1], text, rest))
        return parts

    def _slot(self, key: str) -> int:
        """The key's hash slot on a cluster; 0 for every key on a single Redis."""
        return self.redis.keyslot(key) if self._cluster else 0

    def reset(self, pk: str) -> int:
        """Delete every key of one pk; returns how many keys were deleted."""
        deleted = 0
        with redis_errors():
            found: list[str] = []
            for key in self.redis.scan_iter(match=keys.pk_pattern(pk), count=1000):
                found.append(key)
                if len(found) >= 500:
                    deleted += self._delete(found)
                    found = []
            deleted += self._delete(found)
            self.redis.srem(keys.PKS, pk)
        return deleted

    def _delete(self, found: list[str]) -> int:
        # One key per call: on Redis Cluster the keys of a pk live in many slots.
        pipe = self.redis.pipeline(transaction=False)
        for key in found:
            pipe.delete(key)
        return sum(pipe.execute()) if found else 0

    # -- reads -------------------------------------------------------------------------
    def read(
        self,
        pk: str,
        paths: Sequence[Path],
        metrics: dict[str, str],
        period: Period,
        ordinals: range,
        buckets: bool = True,
    ) -> dict[Path, dict[str, Reading]]:
        """Every bucket of ``ordinals`` for each path and metric, in one round trip.

        ``metrics`` maps a metric name to its kind (``sum``, ``unique``, ``gauge`` or
        ``timing``: see Reading). With ``buckets=False`` the readings of summed metrics hold
        only their totals (``values`` empty): all that ranking many children needs, without
        a list per child."""
        sums = [metric for metric, kind in metrics.items()
                if kind not in (UNIQUE, GAUGE, TIMING)] if ordinals else []
        # Each bucket of a summed metric is one hash per parent, holding all its children:
        # paths are read parent by parent, one read.lua call per parent and metric for every
        # bucket of the window, each child's two fields (or, for many children, whole
        # hashes: a long HMGET costs more than HGETALL, which also skips absent children;
        # summed over the window in Redis when only totals are wanted).
        parents: dict[Path, list[Path]] = {}
        for path in paths:
            parents.setdefault(keys.location(path)[0], []).append(path)
        reads: list[tuple[Path, list[Path], str, list[str] | None]] = []
        for parent, children in parents.items():
            wanted = None if len(children) > _HMGET_MOST else \
                [field for path in children for field in keys.fields(keys.location(path)[1])]
            reads += [(parent, children, metric, wanted) for metric in sums]
        # Each unique metric's HyperLogLogs are merged by one script call per series
        # (multi-key PFCOUNT cannot be pipelined on a cluster).
        unique_calls = [(path, metric) for path in paths
                        for metric, kind in metrics.items() if kind == UNIQUE and ordinals]
        # A gauge's buckets are one field each of its parent's hashes, a timing's one hash
        # each (the sketch): one read.lua call per series and metric.
        kind_calls = [(path, metric, kind) for path in paths for metric, kind in metrics.items()
                      if kind in (GAUGE, TIMING) and ordinals]
        calls = [
            (self._read, [keys.cells(pk, parent, metric, period, ordinals.start)],
             [keys.cells_stem(pk, parent, metric, period), ordinals.start, len(ordinals),
              "fields" if wanted else "all" if buckets else "totals", *(wanted or [])])
            for parent, children, metric, wanted in reads
        ] + [
            (self._uniques, [keys.unique(pk, path, metric, period, o) for o in ordinals], [])
            for path, metric in unique_calls
        ] + [self._kind_read(pk, path, metric, kind, period, ordinals)
             for path, metric, kind in kind_calls]
        replies = self._run(calls)
        result: dict[Path, dict[str, Reading]] = {path: {} for path in paths}
        for (_, children, metric, wanted), reply in zip(reads, replies, strict=False):
            if wanted is None and not buckets:  # read.lua summed each field: one "bucket"
                reply, count = [reply], 1
            else:
                count = len(ordinals)
            for path, values in _by_child(children, wanted, reply, count).items():
                if not buckets:
                    result[path][metric] = Reading([], from_nanos(sum(values)))
                else:
                    # Most buckets of a child are empty: 0 needs no conversion.
                    result[path][metric] = Reading([from_nanos(v) if v else 0 for v in values],
                                                   from_nanos(sum(values)))
        unique_replies = replies[len(reads):len(reads) + len(unique_calls)]
        for (path, metric), counts in zip(unique_calls, unique_replies, strict=True):
            result[path][metric] = Reading(list(counts[:-1]), counts[-1])
        kind_replies = replies[len(reads) + len(unique_calls):]
        before = []  # gauges whose window starts empty
        for (path, metric, kind), reply in zip(kind_calls, kind_replies, strict=True):
            if kind == GAUGE:
                result[path][metric] = _gauge_reading(reply, None)
                if reply and reply[0] is None:
                    before.append((path, metric))
                continue
            sketches = [Sketch.from_fields(dict(zip(pairs[::2], pairs[1::2], strict=True)))
                        for pairs in reply]
            total = Sketch()
            for sketch in sketches:
                total.merge(sketch)
            result[path][metric] = Reading(sketches, total)
        # A gauge unchanged since before the window holds the value it had then: read back
        # (over the period's retention) for the gauges whose window starts empty.
        if before:
            back = _retained(period, ordinals.start)
            earlier = self._run([self._kind_read(pk, path, metric, GAUGE, period, back)
                                 for path, metric in before]) if back else []
            for (path, metric), reply in zip(before, earlier, strict=True):
                known = [value for value in reply if value is not None]
                opening = float(known[-1]) if known else None
                result[path][metric] = _gauge_reading(result[path][metric].values, opening)
        for path in paths:  # every metric over an empty window
            for metric in metrics:
                result[path].setdefault(metric, Reading([], 0))
        # Each path's metrics in the order asked.
        return {path: {metric: result[path][metric] for metric in metrics} for path in paths}

    def _kind_read(self, pk: str, path: Path, metric: str, kind: str, period: Period,
                   ordinals: range) -> tuple:
        """The read.lua call of one gauge (its field of each bucket of its parent's hashes)
        or timing (each bucket's sketch, whole) over ``ordinals``."""
        if kind == GAUGE:
            parent, child = keys.location(path)
            return (self._read, [keys.gauge_cells(pk, parent, metric, period, ordinals.start)],
                    [keys.gauge_stem(pk, parent, metric, period), ordinals.start,
                     len(ordinals), "fields", child])
        return (self._read, [keys.sketch(pk, path, metric, period, ordinals.start)],
                [keys.sketch_stem(pk, path, metric, period), ordinals.start, len(ordinals),
                 "all"])

    def _run(self, calls: list[tuple]) -> list:
        """Script calls ``(script, keys, args)`` in one round trip: their replies."""
        with redis_errors():
            if len(calls) == 1 or self._cluster:
                # One call needs no pipeline (whose scripts redis-py checks with SCRIPT EXISTS,
                # a round trip more); on a cluster scripts cannot be pipelined.
                return [script(keys=names, args=args) for script, names, args in calls]
            pipe = self.redis.pipeline(transaction=False)
            for script, names, args in calls:
                script(keys=names, args=args, client=pipe)
            return pipe.execute()

    def children(self, pk: str, path: Path, since: float | None = None) -> list[str]:
        """The children seen under ``path`` (since ``since``, when given), sorted by name."""
        with redis_errors():
            names = self.redis.zrangebyscore(
                keys.children(pk, path), "-inf" if since is None else since, "+inf"
            )
        return sorted(names)

    def children_of(self, pk: str, paths: Sequence[Path],
                    since: float | None = None) -> dict[Path, list[str]]:
        """``children`` of each of ``paths``, in one round trip: ranking a tree asks it of
        every dimension in it (one call each cost a round trip per leaf)."""
        if not paths:
            return {}
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)  # single keys: fine on a cluster
            for path in paths:
                pipe.zrangebyscore(keys.children(pk, path), "-inf" if since is None else since,
                                   "+inf")
            replies = pipe.execute()
        return {path: sorted(names) for path, names in zip(paths, replies, strict=True)}

    def metric_kinds(self, pk: str) -> dict[str, str]:
        """The metrics counted under ``pk``: name -> ``sum`` or ``unique``."""
        with redis_errors():
            return dict(self.redis.hgetall(keys.metrics(pk)))

    def pks(self) -> list[str]:
        """Every pk in use, sorted: those clients count into, not the key spaces of
        decisions (hailwhale.decisions), whose names start with a control character that
        no client's pk can hold."""
        with redis_errors():
            return sorted(pk for pk in self.redis.smembers(keys.PKS) if not pk or pk[0] >= " ")

    def layout(self) -> int:
        """The storage layout of this store's counters: keys.LAYOUT, or an earlier one whose
        counters are not read until ``hailwhale migrate`` carries them over. A store's first
        batch records its layout; an empty store is today's."""
        with redis_errors():
            found = self.redis.get(keys.LAYOUT_KEY)
            if found is not None:
                return int(found)
            # Pks and no layout recorded: written by the first layout, which recorded none.
            return 1 if self.redis.exists(keys.PKS) else keys.LAYOUT

    def ping(self) -> bool:
        """Whether Redis answers."""
        with redis_errors():
            return bool(self.redis.ping())


# Children of one parent read with HMGET (two fields each) up to this many; more are read
# whole with HGETALL, which also skips the many children empty in a given bucket.
_HMGET_MOST = 32


def _by_child(children: Sequence[Path], wanted: list[str] | None, reply: list,
              count: int) -> dict[Path, list[int]]:
    """Each child's nanos in each of ``count`` buckets, from read.lua's reply for their
    parent: the values of ``wanted`` bucket after bucket or, when ``wanted`` is None, each
    bucket's fields and values."""
    values = {path: [0] * count for path in children}
    if wanted is not None:
        width = len(wanted)
        for i, path in enumerate(children):
            row = values[path]
            wholes, fractions = reply[2 * i::width], reply[2 * i + 1::width]
            for bucket, (whole, fraction) in enumerate(zip(wholes, fractions, strict=True)):
                if whole is not None or fraction is not None:
                    row[bucket] = int(whole or 0) * NANO + int(fraction or 0)
        return values
    names = {keys.location(path)[1]: path for path in children}
    for bucket, pairs in enumerate(reply):
        for field, amount in zip(pairs[::2], pairs[1::2], strict=True):
            fraction = field.endswith(keys.FRACTION)
            path = names.get(field[:-1] if fraction else field)
            if path is not None:
                values[path][bucket] += int(amount) if fraction else int(amount) * NANO
    return values


def _gauge_reading(raw: list, opening: float | None) -> Reading:
    """A gauge's Reading from its buckets' stored values (None where it did not change),
    each empty bucket holding the value before it (``opening`` before the first)."""
    values: list[float | None] = []
    last = opening
    for value in raw:
        if value is not None:
            last = _number(value)
        values.append(last)
    return Reading(values, last)


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _retained(period: Period, start: int) -> range:
    """The buckets of ``period`` before ``start`` that its retention may still keep."""
    return range(max(0, start - period.retention // period.interval - 1), start)


def _stems(cells, path: str, metric: str, kind: str, periods: tuple[Period, ...]):
    """(pk, ``path``, ``metric``, period, stem, part) for each distinct stem of ``cells``'
    keys: the series tags and metric names encoded once each (keys.series_tag, keys.part),
    the stems spelled by keys.stems, the part of the apply (keys.apply_part) by series."""
    import polars as pl

    distinct = cells.select("pk", path, metric, "period").unique()
    series = distinct.select("pk", path).unique()
    tags = [keys.series_tag(pk, path_of(spelled)) for pk, spelled in series.iter_rows()]
    series = series.with_columns(tag=pl.Series(tags, dtype=pl.String),
                                 part=pl.Series([keys.apply_part(tag) for tag in tags],
                                                dtype=pl.Int64))
    names = distinct.select(metric).unique()
    names = names.with_columns(part=pl.Series([keys.part(n) for n in names[metric]],
                                              dtype=pl.String))
    codes = pl.DataFrame({"period": list(range(len(periods))),
                          "code": [p.code for p in periods]},
                         schema={"period": distinct.schema["period"], "code": pl.String})
    return (distinct.join(series, on=["pk", path]).join(names.rename({"part": "name"}),
                                                        on=metric)
            .join(codes, on="period")
            .select("pk", path, metric, "period", "part",
                    stem=keys.stems(kind, pl.col("tag"), pl.col("name"), pl.col("code"))))


def _ends(cells, periods: tuple[Period, ...], tz):
    """(period, ordinal, when) for each distinct bucket of ``cells``: when it expires."""
    import polars as pl

    buckets = cells.select("period", "ordinal").unique()
    return buckets.with_columns(when=pl.Series([
        periods[index].expires_at(ordinal, tz) for index, ordinal in buckets.iter_rows()],
        dtype=pl.Int64))


def metric_names(events: Iterable[Event]) -> dict[str, list[tuple[str, str]]]:
    """pk -> [(metric name, its kind: SUM, UNIQUE, GAUGE, TIMING)], of every metric
    ``events`` count, each pair once."""
    names: dict[str, dict[tuple[str, str], None]] = {}
    for event in events:
        found = names.setdefault(event.pk, {})
        for pair in _named(event):
            found[pair] = None
    return {pk: list(pairs) for pk, pairs in names.items()}


def _named(event: Event) -> list[tuple[str, str]]:
    return [*((name, SUM) for name in event.metrics), *((name, UNIQUE) for name in event.uniques),
            *((name, GAUGE) for name, _, _ in event.gauges),
            *((name, TIMING) for name, _ in event.timings)]


def over_cap(event: Event, refused: dict[str, dict[str, str]]) -> tuple[str, str] | None:
    """``(the first metric of event refused for its pk, why)`` (Store.admit_metrics: by
    name, or by ``name:kind``), if any."""
    no = refused.get(event.pk)
    if not no:
        return None
    for name, kind in _named(event):
        reason = no.get(name) or no.get(f"{name}:{kind}")
        if reason is not None:
            return name, reason
    return None


@contextmanager
def _overflow():
    """apply.lua's refusal of a counter past 64 bits, as CounterOverflow."""
    try:
        yield
    except redis.ResponseError as exc:
        if "apply.lua: overflow" in str(exc):
            raise CounterOverflow(str(exc).split("apply.lua: ", 1)[1]) from None
        raise


__all__ = ["Store", "Reading", "connect", "SUM", "UNIQUE"]
