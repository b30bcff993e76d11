"""Pre-aggregation of a batch of events: pure, no Redis.

Before anything reaches Redis, a batch is folded into one increment per counter, one set of
uids per HyperLogLog, one entry per new child: ten thousand hits on one page in one bucket
become one HINCRBY.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import tzinfo

from .dimensions import Path, expand, parent_links
from .event import Event
from .numbers import to_nanos
from .periods import Period

SUM = "sum"
UNIQUE = "unique"

# (pk, dimension path, metric, period, bucket ordinal)
CellKey = tuple[str, Path, str, Period, int]


@dataclass
class Batch:
    """What a batch of events adds to the store."""

    counters: dict[CellKey, int] = field(default_factory=lambda: defaultdict(int))  # nanos
    uniques: dict[CellKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    children: dict[tuple[str, Path], dict[str, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )  # (pk, parent) -> child -> last seen
    metric_kinds: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    events: int = 0

    _buckets: dict[float, list[tuple[Period, int]]] = field(default_factory=dict, repr=False)

    def add(self, event: Event, periods: Iterable[Period], tz: tzinfo, now: float) -> None:
        """Fold one event in: every prefix of every branch, in every period that keeps it."""
        paths = expand(event.branches)
        # Most events of a batch share a time; the bucket maths is done once per time.
        live = self._buckets.get(event.at)
        if live is None:
            live = [(p, p.ordinal(event.at, tz)) for p in periods if p.keeps(event.at, now, tz)]
            self._buckets[event.at] = live
        nanos = {name: to_nanos(value) for name, value in event.metrics.items()}
        for path in paths:
            for period, ordinal in live:
                for name, amount in nanos.items():
                    self.counters[(event.pk, path, name, period, ordinal)] += amount
                for name in event.uniques:
                    self.uniques[(event.pk, path, name, period, ordinal)].add(event.uid)
        for parent, child in parent_links(paths):
            seen = self.children[(event.pk, parent)]
            seen[child] = max(seen.get(child, 0.0), event.at)
        kinds = self.metric_kinds[event.pk]
        kinds.update(dict.fromkeys(event.metrics, SUM))
        kinds.update(dict.fromkeys(event.uniques, UNIQUE))
        self.events += 1


def aggregate(events: Iterable[Event], periods: Iterable[Period], tz: tzinfo, now: float) -> Batch:
    """One Batch holding all of ``events``."""
    periods = tuple(periods)
    batch = Batch()
    for event in events:
        batch.add(event, periods, tz, now)
    return batch
