"""``hailwhale migrate``: carries counters of the first storage layout into today's.

The first layout kept one hash per series, summed metric, period and chunk of 60 buckets
(``hw:{pk|path}:c:<metric>:<period>:<chunk>``); today's keeps one hash per parent, summed metric,
period and bucket, a field per child (hailwhale/keys.py). HyperLogLogs, children, metric
names and pks are where they were.

Each old hash is added into the new hashes by one script that also sets a marker in their
hash slot (kept as long as the old hash would have lived), then deleted: an old hash is added
once however often the migration is run, stopped or run twice at once, and an interrupted run
is finished by running it again. Whale may count meanwhile: the migration adds, it never overwrites.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import keys
from .store import US, Store, redis_errors

log = logging.getLogger("hailwhale.migrate")

MIGRATE_LUA = (pathlib.Path(__file__).parent / "lua" / "migrate.lua").read_text()
# An old hash with no expiry (none was written so; a hand-made one) keeps its migrated
# counters this long: the longest retention a default setting has.
NO_EXPIRY_MS = 366 * 86400 * 1000


@dataclass
class Report:
    """What one run did."""

    carried: int = 0  # old hashes added into the new layout by this run
    already: int = 0  # old hashes a run before (or at the same time) had added
    skipped: int = 0  # old hashes of a period no longer configured: left to expire

    def line(self) -> str:
        return (f"migrate: {self.carried} counter hashes carried into layout {keys.LAYOUT}, "
                f"{self.already} carried before, {self.skipped} of periods not configured "
                "left to expire")


def _plan(old_key: str, fields: dict[str, str], store: Store) -> tuple[list[str], list[str]] | None:
    """The new hashes an old one adds to and what it adds to each: ``(keys, items)``; None
    for a key that is not an old counter, or of a period not configured."""
    parsed = keys.parse_v1_counter(old_key)
    if parsed is None:
        return None
    pk, path, metric, code, chunk = parsed
    period = next((p for p in store.settings.periods if p.code == code), None)
    if period is None:
        return None
    parent, name = keys.location(path)
    whole_field, fraction_field = keys.fields(name)
    added: dict[str, list[str]] = {}
    for slot, value in fields.items():
        fraction = slot.endswith("f")
        ordinal = chunk * keys.V1_CHUNK + int(slot[:-1] if fraction else slot)
        if int(value):
            target = keys.cells(pk, parent, metric, period, ordinal)
            added.setdefault(target, []).append(
                f"{fraction_field if fraction else whole_field}{US}{int(value)}")
    return list(added), [US.join(items) for items in added.values()]


def _old_hashes(store: Store, batch: int) -> Iterator[list[str]]:
    found: list[str] = []
    for key in store.redis.scan_iter(match=keys.V1_COUNTERS, count=1000):
        found.append(key)
        if len(found) >= batch:
            yield found
            found = []
    if found:
        yield found


def migrate(store: Store, batch: int = 500, say: Callable[[str], None] = log.info) -> Report:
    """Carry every first-layout counter hash of ``store`` into today's layout, then record
    the layout as today's. Safe to run again, and at the same time as another run."""
    report = Report()
    script = store.redis.register_script(MIGRATE_LUA)
    with redis_errors():
        for found in _old_hashes(store, batch):
            pipe = store.redis.pipeline(transaction=False)
            for key in found:
                pipe.hgetall(key)
                pipe.pttl(key)
            replies = pipe.execute()
            done: list[str] = []
            for i, key in enumerate(found):
                fields, ttl = replies[2 * i], replies[2 * i + 1]
                plan = _plan(key, fields, store)
                if plan is None:
                    report.skipped += 1
                    continue
                targets, items = plan
                if not targets:  # only zeros, or deleted by another run meanwhile
                    done.append(key)
                    continue
                marker = keys.migrated(key, targets[0])
                life = ttl if ttl and ttl > 0 else NO_EXPIRY_MS
                carried = script(keys=[marker, *targets], args=[life, *items])
                report.carried += bool(carried)
                report.already += not carried
                done.append(key)
            # One key a call: on a cluster the old keys are in other slots. The markers stay
            # until the old hash would have expired: another run may have read an old hash
            # before this one deleted it, and must still find it carried.
            pipe = store.redis.pipeline(transaction=False)
            for key in done:
                pipe.delete(key)
            pipe.execute()
            say(report.line())
        # Hashes of periods no longer configured are not read by today's code either way:
        # left to expire, they do not keep the store from being today's layout.
        store.redis.set(keys.LAYOUT_KEY, keys.LAYOUT)
    return report
