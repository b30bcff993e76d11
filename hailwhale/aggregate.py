"""Pre-aggregation of a batch of events: pure, no Redis.

Before anything reaches Redis, a batch is folded into one increment per counter, one set of
uids per HyperLogLog, one entry per new child: ten thousand hits on one page in one bucket
become one HINCRBY.

Folding happens in two steps, because expanding an event is the expensive part (every prefix
of every branch, times every period): events are first grouped by what they are counted
into (pk, branches and the bucket of each period), which costs one dictionary update per
event; only each group is then expanded into its counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import tzinfo
from functools import lru_cache

from .dimensions import Path, expand, parent_links
from .event import GAUGE_SET, Event
from .numbers import NANO, to_nanos
from .periods import Period
from .sketch import Sketch
from .wire import US

# The kinds of metric (a pk's registry, keys.metrics, names each of its metrics' kind).
SUM = "sum"
UNIQUE = "unique"
GAUGE = "gauge"
TIMING = "timing"

# (pk, dimension path, index of the period in Batch.periods, bucket ordinal). An int stands
# for the period because cells are hashed millions of times and a Period hashes in Python.
CellKey = tuple[str, Path, int, int]
# The buckets an event time falls in: (period index, ordinal) for every period keeping it.
Buckets = tuple[tuple[int, int], ...]


# The expansion cache holds at most 16,384 entries of dimensions up to _CACHED_NAMES
# characters in all: about 5 KiB an entry at worst, so 80 MiB at most whatever clients send
# (a worst-case event, 16 branches x 8 levels of 200 characters, expands to about 58 KiB
# and is never cached).
_CACHED_NAMES = 256


def _expansion(branches: tuple[Path, ...]) -> tuple[tuple[Path, ...], tuple[tuple[Path, str], ...]]:
    """Every path an event with ``branches`` is counted into, and its parent links.
    Cached, for short dimensions: a batch repeats the same dimensions many times."""
    if sum(len(name) for branch in branches for name in branch) <= _CACHED_NAMES:
        return _cached_expansion(branches)
    return _expand(branches)


def _expand(branches: tuple[Path, ...]) -> tuple[tuple[Path, ...], tuple[tuple[Path, str], ...]]:
    paths = tuple(expand(branches))
    return paths, tuple(parent_links(paths))


_cached_expansion = lru_cache(maxsize=16384)(_expand)


@dataclass
class _Group:
    """Events sharing pk, branches and buckets: their summed metrics, uids, latest time."""

    nanos: dict[str, int]
    uids: dict[str, set[str]]
    last: float
    sketches: dict[str, Sketch] = field(default_factory=dict)


@dataclass
class Gauge:
    """What a batch does to one gauge of one series: for each (period index, ordinal) it
    changed, the gauge's value after its last change there, and the value it is left at.
    Each value is ``(when, absolute, value)``: absolute when the batch set the gauge at or
    before that change, else ``value`` is relative to the gauge's value before the batch
    (the sum of the deltas since), which only the store knows."""

    buckets: dict[tuple[int, int], tuple[float, bool, float]]
    final: tuple[float, bool, float]


# (pk, dimension path, metric) of one gauge series.
GaugeKey = tuple[str, Path, str]


def fold_gauges(rows: Iterable[tuple[float, int, str, tuple[Path, ...], tuple]],
                buckets) -> dict[GaugeKey, Gauge]:
    """The gauges of ``rows``, ``(at, index, pk, branches, gauges)`` of each event that has
    any (``gauges`` as Event.gauges), applied in order of ``(at, index)`` into every path the
    event is counted into; ``buckets(at)`` gives the (period index, ordinal) pairs of a
    time. Pure Python: gauges are reported by few series (a host's CPU every ten seconds),
    not by every event."""
    found: dict[GaugeKey, Gauge] = {}
    for at, _, pk, branches, gauges in sorted(rows, key=lambda row: (row[0], row[1])):
        live = buckets(at)
        for path in _expansion(branches)[0]:
            for name, op, value in gauges:
                gauge = found.get((pk, path, name))
                if gauge is None:
                    gauge = found[(pk, path, name)] = Gauge({}, (at, False, 0.0))
                _, absolute, level = gauge.final
                if op == GAUGE_SET:
                    absolute, level = True, value
                else:
                    level += value
                gauge.final = (at, absolute, level)
                for bucket in live:
                    gauge.buckets[bucket] = gauge.final
    return found


@dataclass
class Batch:
    """What a batch of events adds to the store: per cell, each summed metric's nanos, each
    unique metric's uids and each timing's sketch; per gauge series, its changes."""

    periods: tuple[Period, ...] = ()
    counters: dict[CellKey, dict[str, int]] = field(default_factory=dict)
    uniques: dict[CellKey, dict[str, set[str]]] = field(default_factory=dict)
    children: dict[tuple[str, Path], dict[str, float]] = field(default_factory=dict)
    # (pk, parent) -> child -> last seen
    metric_kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    events: int = 0
    sketches: dict[CellKey, dict[str, Sketch]] = field(default_factory=dict)
    gauges: dict[GaugeKey, Gauge] = field(default_factory=dict)


def path_of(spelled: str) -> Path:
    """The path a Folded batch spells as its names joined by wire.US (the root as "")."""
    return tuple(spelled.split(US)) if spelled else ()


@dataclass
class Folded:
    """A batch folded as columns (hailwhale.columns.fold), which Store.write turns into its
    operations without a Python step per counter. ``sums`` has a row per counter (pk, path,
    period, ordinal, names, wholes, fractions: the metric's sum in whole units and
    billionths), ``members`` a row per HyperLogLog (pk, path, period, ordinal, uniques, uid:
    the list of uids); a path is spelled as its names joined by wire.US (``path_of``).
    Children, metric kinds and events are as in Batch. Polars frames, used only through
    their methods: this module does not import polars."""

    periods: tuple[Period, ...]
    sums: object
    members: object
    children: dict[tuple[str, Path], dict[str, float]]
    metric_kinds: dict[str, dict[str, str]]
    events: int
    # Timings and gauges, already as dictionaries (as in Batch): a row per bin or change,
    # far fewer than the rows of sums.
    sketches: dict[CellKey, dict[str, Sketch]] = field(default_factory=dict)
    gauges: dict[GaugeKey, Gauge] = field(default_factory=dict)

    def batch(self) -> Batch:
        """The same batch as dictionaries."""
        counters: dict[CellKey, dict[str, int]] = {}
        for pk, path, period, ordinal, name, whole, fraction in self.sums.iter_rows():
            counters.setdefault((pk, path_of(path), period, ordinal), {})[name] = \
                whole * NANO + fraction
        uniques: dict[CellKey, dict[str, set[str]]] = {}
        for pk, path, period, ordinal, name, uids in self.members.iter_rows():
            uniques.setdefault((pk, path_of(path), period, ordinal), {})[name] = set(uids)
        return Batch(self.periods, counters, uniques, self.children, self.metric_kinds,
                     self.events, self.sketches, self.gauges)


class Folder:
    """Folds events into a Batch: ``add`` each event, then ``batch()``."""

    def __init__(self, periods: Iterable[Period], tz: tzinfo, now: float):
        self.periods = tuple(periods)
        self.tz = tz
        self.now = now
        self.groups: dict[tuple[str, tuple[Path, ...], Buckets], _Group] = {}
        self.events = 0
        self._buckets: dict[float, Buckets] = {}
        self._gauges: list[tuple[float, int, str, tuple[Path, ...], tuple]] = []

    def buckets(self, at: float) -> Buckets:
        """The buckets of ``at`` in every period that still keeps it (cached per time:
        most events of a batch share a few seconds)."""
        live = self._buckets.get(at)
        if live is None:
            live = tuple((i, p.ordinal(at, self.tz)) for i, p in enumerate(self.periods)
                         if p.keeps(at, self.now, self.tz))
            self._buckets[at] = live
        return live

    def add(self, event: Event) -> None:
        """Fold one event into its group."""
        key = (event.pk, event.branches, self.buckets(event.at))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group({}, {}, event.at)
        elif event.at > group.last:
            group.last = event.at
        nanos = group.nanos
        for name, value in event.metrics.items():
            nanos[name] = nanos.get(name, 0) + to_nanos(value)
        for name in event.uniques:
            uids = group.uids.get(name)
            if uids is None:
                group.uids[name] = {event.uid}
            else:
                uids.add(event.uid)
        for name, samples in event.timings:
            sketch = Sketch.of(samples, sum(map(to_nanos, samples)))
            if name in group.sketches:
                group.sketches[name].merge(sketch)
            else:
                group.sketches[name] = sketch
        if event.gauges:
            self._gauges.append((event.at, self.events, event.pk, event.branches,
                                 event.gauges))
        self.events += 1

    def batch(self) -> Batch:
        """Every group rolled up into counters, HyperLogLog members and children."""
        counters: dict[CellKey, dict[str, int]] = {}
        uniques: dict[CellKey, dict[str, set[str]]] = {}
        sketches: dict[CellKey, dict[str, Sketch]] = {}
        for index in range(len(self.periods)):
            # Within one period, groups that differ only in another period's bucket fold
            # together; each is then rolled up from its branch's end to the root.
            levels: dict[int, _Level] = {}
            for (pk, branches, live), group in self.groups.items():
                ordinal = _ordinal_in(live, index)
                if ordinal is None:
                    continue
                if len(branches) == 1:
                    branch = branches[0]
                    if len(branch) not in levels:
                        levels[len(branch)] = _Level()
                    levels[len(branch)].add((pk, branch, ordinal), group)
                else:
                    # Several branches share prefixes (the root, at least), each counted
                    # once per event: expanded here, never rolled up.
                    direct = levels.setdefault(-1, _Level())
                    for path in _expansion(branches)[0]:
                        direct.add((pk, path, ordinal), group)
            direct = levels.pop(-1, _Level())
            for depth in range(max(levels, default=0), 0, -1):
                above = levels.setdefault(depth - 1, _Level())
                for (pk, path, ordinal), group in levels[depth].groups.items():
                    above.add((pk, path[:-1], ordinal), group)
            # Only now, rolled up, do the several-branch events join their paths' counters.
            for (pk, path, ordinal), group in direct.groups.items():
                levels.setdefault(len(path), _Level()).add((pk, path, ordinal), group)
            for level in levels.values():
                for (pk, path, ordinal), group in level.groups.items():
                    counters[(pk, path, index, ordinal)] = group.nanos
                    if group.uids:
                        uniques[(pk, path, index, ordinal)] = group.uids
                    if group.sketches:
                        sketches[(pk, path, index, ordinal)] = group.sketches
        return Batch(self.periods, counters, uniques, self._children(), self._kinds(),
                     self.events, sketches, fold_gauges(self._gauges, self.buckets))

    def _children(self) -> dict[tuple[str, Path], dict[str, float]]:
        """(pk, parent) -> child -> when last seen, for every branch of the batch."""
        last: dict[tuple[str, tuple[Path, ...]], float] = {}
        for (pk, branches, _), group in self.groups.items():
            if last.get((pk, branches), -1.0) < group.last:
                last[(pk, branches)] = group.last
        children: dict[tuple[str, Path], dict[str, float]] = {}
        for (pk, branches), seen in last.items():
            for parent, child in _expansion(branches)[1]:
                known = children.setdefault((pk, parent), {})
                if known.get(child, -1.0) < seen:
                    known[child] = seen
        return children

    def _kinds(self) -> dict[str, dict[str, str]]:
        """pk -> metric -> SUM or UNIQUE."""
        kinds: dict[str, dict[str, str]] = {}
        for (pk, _, _), group in self.groups.items():
            found = kinds.setdefault(pk, {})
            for name in group.nanos:
                found[name] = SUM
            for name in group.uids:
                found[name] = UNIQUE
            for name in group.sketches:
                found[name] = TIMING
        for _, _, pk, _, gauges in self._gauges:
            found = kinds.setdefault(pk, {})
            for name, _, _ in gauges:
                found[name] = GAUGE
        return kinds


def _ordinal_in(live: Buckets, index: int) -> int | None:
    for period, ordinal in live:
        if period == index:
            return ordinal
    return None


class _Level:
    """Groups keyed by (pk, path, ordinal). A key's first group is kept as it is (most keys
    get only one) and copied when a second is added, so no group is ever changed that
    another level or period still reads."""

    def __init__(self):
        self.groups: dict[tuple[str, Path, int], _Group] = {}
        self._copied: set[tuple[str, Path, int]] = set()

    def add(self, key: tuple[str, Path, int], group: _Group) -> None:
        found = self.groups.get(key)
        if found is None:
            self.groups[key] = group
            return
        if key not in self._copied:
            self._copied.add(key)
            found = self.groups[key] = _Group(
                found.nanos.copy(), {name: set(uids) for name, uids in found.uids.items()},
                found.last, {name: Sketch().merge(s) for name, s in found.sketches.items()})
        nanos = found.nanos
        for name, amount in group.nanos.items():
            nanos[name] = nanos.get(name, 0) + amount
        for name, uids in group.uids.items():
            if name in found.uids:
                found.uids[name] |= uids
            else:
                found.uids[name] = set(uids)
        for name, sketch in group.sketches.items():
            if name in found.sketches:
                found.sketches[name].merge(sketch)
            else:
                found.sketches[name] = Sketch().merge(sketch)


def aggregate(events: Iterable[Event], periods: Iterable[Period], tz: tzinfo, now: float) -> Batch:
    """One Batch holding all of ``events``."""
    folder = Folder(periods, tz, now)
    for event in events:
        folder.add(event)
    return folder.batch()
