"""Counting a delivered batch of raw events exactly once.

Used by Whale's ``POST /batch`` (hailwail's deliveries) and by the Celery worker: each event
is checked on its own, the good ones are counted together under the batch id, the bad ones
are reported by index with the reason, so the sender can dead-letter them and move on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from .aggregate import aggregate
from .errors import BadRequest
from .event import parse_event
from .store import Store

MAX_BATCH_ID = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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
    events, rejected = [], []
    for index, raw in enumerate(raw_events):
        try:
            events.append(parse_event(raw, settings, now))
        except BadRequest as exc:
            rejected.append({"index": index, "error": str(exc)})
    answer = {"batch": batch_id, "counted": len(events), "rejected": rejected}
    batch = aggregate(events, settings.periods, settings.tz, now)
    applied, recorded = store.write(batch, batch_id, json.dumps(answer, separators=(",", ":")))
    if not applied:
        answer = json.loads(recorded)
    return {**answer, "duplicate": not applied}
