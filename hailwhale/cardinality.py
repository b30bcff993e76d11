"""The cardinality guard's arithmetic: a batch's refused children folded into ``__other__``.
Pure, no Redis (the store decides which children are refused, atomically, in Redis).

A parent holds at most MAX_CHILDREN children. An event under a child the parent has no room
for is counted under the parent's child ``__other__`` instead: that child's cell becomes
``parent + (__other__,)`` and the levels below it are not kept, so the parent still equals
its children plus ``__other__``, exactly, and a million made-up names cost one series.
"""

from __future__ import annotations

from .aggregate import Batch, CellKey
from .dimensions import Path

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
    return Batch(batch.periods, counters, uniques, children, batch.metric_kinds, batch.events)
