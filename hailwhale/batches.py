"""Counting a delivered batch of raw events exactly once.

Also counting checked events with no batch id (``count_events``). Used by Whale's ``POST
/batch`` (hailwail's deliveries), its ``/count``, the Python API and the Celery worker: each event
is checked on its own, the good ones are counted together under the batch id, the bad ones
are reported by index with the reason, so the sender can dead-letter them and move on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence

from . import telemetry
from .aggregate import Batch, aggregate
from .errors import BadRequest, CounterOverflow
from .event import Event, parse_event
from .store import Store, metric_names, over_cap

MAX_BATCH_ID = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def count_events(store: Store, events: Iterable[Event], now: float | None = None) -> int:
    """Count checked events (Whale's own ``/count``, the Python API), with no batch id;
    returns how many were counted. BadRequest, counting nothing, when an event names a
    metric its pk has no room for (MAX_PK_METRICS)."""
    now = time.time() if now is None else now
    events = list(events)
    refused = store.admit_metrics(metric_names(events))
    for event in events:
        found = over_cap(event, refused)
        if found is not None:
            name, reason = found
            raise BadRequest(f"metrics.{name}", name, reason)
    batch = aggregate(events, store.settings.counted_periods, store.settings.tz, now)
    store.write(batch)
    telemetry.counted(batch.events)
    return batch.events


def check_batch_id(batch_id) -> str:
    """A batch id is a non-empty string of at most 200 characters."""
    if not isinstance(batch_id, str) or not batch_id or len(batch_id) > MAX_BATCH_ID:
        raise BadRequest("id", batch_id, f"a batch id is a string of 1 to {MAX_BATCH_ID} "
                         "characters")
    if _UNSAFE.search(batch_id):
        raise BadRequest("id", batch_id, "a batch id cannot hold control characters or "
                         "lone surrogates")
    return batch_id


def count_batch(store: Store, batch_id: str, raw_events: Sequence, now: float) -> dict:
    """Count ``raw_events`` at most once under ``batch_id``.

    Returns ``{"batch", "counted", "rejected": [{"index", "error"}], "duplicate"}``; for a
    batch id seen before nothing is counted and the first answer is returned again, with
    ``duplicate: true``."""
    check_batch_id(batch_id)
    settings = store.settings
    events, indexes, rejected = [], [], []
    for index, raw in enumerate(raw_events):
        try:
            events.append(parse_event(raw, settings, now))
            indexes.append(index)
        except BadRequest as exc:
            rejected.append({"index": index, "error": str(exc)})
    # Events naming a metric their pk has no room for (MAX_PK_METRICS) are refused alone.
    invalid = len(rejected)
    refused = store.admit_metrics(metric_names(events))
    if refused:
        kept = []
        for index, event in zip(indexes, events, strict=True):
            found = over_cap(event, refused)
            if found is None:
                kept.append((index, event))
            else:
                name, reason = found
                rejected.append({"index": index, "error": str(BadRequest(
                    f"metrics.{name}", name, reason))})
        indexes, events = [i for i, _ in kept], [e for _, e in kept]
        rejected.sort(key=lambda item: item["index"])

    def alone():
        return [(index, lambda e=event: aggregate([e], settings.counted_periods, settings.tz,
                                                    now))
                for index, event in zip(indexes, events, strict=True)]

    return _apply(store, batch_id, aggregate(events, settings.counted_periods, settings.tz, now),
                  rejected, len(events), alone, now, len(rejected) - invalid)


def count_lines(store: Store, batch_id: str, items: Sequence[str], now: float) -> dict:
    """Count the wire lines ``items`` (hailwhale.wire; lines of the first wire form too) at
    most once under ``batch_id``, as ``count_batch`` does: each line's shape is checked,
    all at once, and the accepted ones are folded as columns."""
    # Imported here: polars costs a process about 150 ms and tens of MB to load, and only
    # Whale's POST /batch needs it (Hail nodes and Celery workers import this module too).
    from . import columns

    check_batch_id(batch_id)
    settings = store.settings
    table, rejected = columns.check(items, settings, now)
    invalid = len(rejected)
    refused = store.admit_metrics(columns.metric_names(table))
    if refused:
        table, capped = columns.without(table, refused)
        rejected += [{"index": index, "error": str(BadRequest(
            f"metrics.{name}", name, refused[pk][key]))} for index, pk, name, key in capped]
        rejected.sort(key=lambda item: item["index"])

    def fold_row(row: int):
        return lambda: columns.fold(table.slice(row, 1), settings.counted_periods, settings.tz,
                                    now)

    def alone():
        return [(index, fold_row(row)) for row, index in enumerate(table["index"])]

    return _apply(store, batch_id, columns.fold(table, settings.counted_periods, settings.tz,
                                                    now),
                  rejected, table.height, alone, now, len(rejected) - invalid)


def _apply(store: Store, batch_id: str, batch: Batch, rejected: list[dict], counted: int,
           alone: Callable[[], list[tuple[int, Callable[[], Batch]]]], now: float,
           capped: int = 0) -> dict:
    """Write the folded ``batch`` of ``counted`` events under ``batch_id``; ``alone()`` gives
    a fold of each of its events by itself (with its index in the batch), for the one-by-one
    fallback. Built only then: thousands of closures a batch cost 3 us an event. ``capped``
    of the ``rejected`` were refused by MAX_PK_METRICS, the others as invalid (telemetry)."""
    started, refused = time.perf_counter(), len(rejected)
    answer = {"batch": batch_id, "counted": counted, "rejected": rejected}
    try:
        applied, recorded = store.write(batch, batch_id, _record(answer))
    except CounterOverflow:
        # Some event would push a counter past 64 bits, and nothing was applied: count the
        # events one by one (each under an id of its own, so a retry counts none twice),
        # refusing those that overflow, and remember the batch id with that answer.
        answer = _one_by_one(store, batch_id, alone(), rejected)
        settings = store.settings
        applied, recorded = store.write(aggregate([], settings.counted_periods, settings.tz,
                                                  now),
                                        batch_id, _record(answer))
    if not applied:
        answer = json.loads(recorded)
    telemetry.batch(applied, answer["counted"], refused - capped, capped,
                    len(answer["rejected"]) - refused, time.perf_counter() - started)
    return {**answer, "duplicate": not applied}


def _record(answer: dict) -> str:
    return json.dumps(answer, separators=(",", ":"))


def _one_by_one(store: Store, batch_id: str, alone: list[tuple[int, Callable[[], Batch]]],
                rejected: list[dict]) -> dict:
    counted = 0
    for index, fold in alone:
        try:
            store.write(fold(), f"{batch_id}#{index}")
            counted += 1
        except CounterOverflow as exc:
            rejected.append({"index": index, "error": f"metrics: {exc}"})
    rejected.sort(key=lambda item: item["index"])
    return {"batch": batch_id, "counted": counted, "rejected": rejected}
