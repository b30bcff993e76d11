"""The cardinality guard's arithmetic: a batch's refused children folded into ``__other__``.
Pure, no Redis (the store decides which children are refused, atomically, in Redis).

A parent holds at most MAX_CHILDREN children. An event under a child the parent has no room
for is counted under the parent's child ``__other__`` instead: that child's cell becomes
``parent + (__other__,)`` and the levels below it are not kept, so the parent still equals
its children plus ``__other__``, exactly, and a million made-up names cost one series.
"""

from __future__ import annotations

from .aggregate import Batch, CellKey, Gauge, GaugeKey
from .dimensions import Path
from .sketch import Sketch

OTHER = "__other__"

Refused = dict[tuple[str, Path], set[str]]  # (pk, parent) -> children with no room


def _fold_path(pk: str, path: Path, refused: Refused) -> Path | None:
    """Where a cell of ``path`` is counted: itself, ``... + (__other__,)`` at the first
    refused level, or None for the levels below a refused child (dropped)."""
    for depth in range(len(path)):
        if path[depth] in refused.get((pk, path[:depth]), ()):
            return path[:depth] + (OTHER,) if depth == len(path) - 1 else None
    return path


def fold(batch: Batch, refused: Refused) -> Batch:
    """``batch`` with every refused child counted under its parent's ``__other__``."""
    if not any(refused.values()):
        return batch
    counters: dict[CellKey, dict[str, int]] = {}
    for (pk, path, index, ordinal), sums in batch.counters.items():
        target = _fold_path(pk, path, refused)
        if target is None:
            continue
        merged = counters.setdefault((pk, target, index, ordinal), {})
        for metric, nanos in sums.items():
            merged[metric] = merged.get(metric, 0) + nanos
    uniques: dict[CellKey, dict[str, set[str]]] = {}
    for (pk, path, index, ordinal), members in batch.uniques.items():
        target = _fold_path(pk, path, refused)
        if target is None:
            continue
        merged_uids = uniques.setdefault((pk, target, index, ordinal), {})
        for metric, uids in members.items():
            merged_uids.setdefault(metric, set()).update(uids)
    sketches: dict[CellKey, dict[str, Sketch]] = {}
    for (pk, path, index, ordinal), found in batch.sketches.items():
        target = _fold_path(pk, path, refused)
        if target is None:
            continue
        merged_sketches = sketches.setdefault((pk, target, index, ordinal), {})
        for metric, sketch in found.items():
            merged_sketches.setdefault(metric, Sketch()).merge(sketch)
    gauges: dict[GaugeKey, Gauge] = {}
    for (pk, path, metric), gauge in batch.gauges.items():
        target = _fold_path(pk, path, refused)
        if target is None:
            continue
        # Several folded children's gauges in one: each bucket (and the end) takes the
        # change made last, by its time.
        into = gauges.get((pk, target, metric))
        if into is None:
            gauges[(pk, target, metric)] = Gauge(dict(gauge.buckets), gauge.final)
            continue
        for bucket, change in gauge.buckets.items():
            if bucket not in into.buckets or into.buckets[bucket][0] <= change[0]:
                into.buckets[bucket] = change
        if into.final[0] <= gauge.final[0]:
            into.final = gauge.final
    children: dict[tuple[str, Path], dict[str, float]] = {}
    for (pk, parent), seen in batch.children.items():
        if _fold_path(pk, parent, refused) != parent:
            continue  # a parent below a refused child (or __other__): not kept
        no_room = refused.get((pk, parent), set())
        kept = {child: when for child, when in seen.items() if child not in no_room}
        folded = [when for child, when in seen.items() if child in no_room]
        if folded:
            kept[OTHER] = max(max(folded), kept.get(OTHER, folded[0]))
        children[(pk, parent)] = kept
    return Batch(batch.periods, counters, uniques, children, batch.metric_kinds, batch.events,
                 sketches, gauges)
