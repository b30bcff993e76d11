"""The store: every Redis read and write HailWhale makes goes through here.

Writes take a pre-aggregated Batch and send it in one pipelined transaction; reads fetch the
buckets of many series in one round trip. Keys come from ``hailwhale.keys`` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from . import keys
from .aggregate import SUM, UNIQUE, Batch, aggregate
from .config import Settings
from .dimensions import Path
from .errors import ConfigurationError, StoreUnavailable
from .event import Event
from .numbers import NANO, from_nanos, split
from .periods import Period

Number = int | float


def connect(url: str) -> redis.Redis:
    """A Redis client for ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``
    or ``memory://`` (an in-process fakeredis, for tests and the demo)."""
    if url.startswith("memory://"):
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    if url.startswith("redis+cluster://"):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url("redis://" + url[len("redis+cluster://"):],
                                     decode_responses=True)
    if url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"not a Redis URL: {url!r}")
    return redis.Redis.from_url(url, decode_responses=True)


@dataclass(frozen=True)
class Reading:
    """One metric of one series over a window: a value per bucket and the window's total."""

    values: list[Number]
    total: Number


class Store:
    """HailWhale's counters in one Redis (or Redis Cluster)."""

    def __init__(self, client: redis.Redis, settings: Settings):
        self.redis = client
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> Store:
        """A store on ``url``, by default Whale's configured Redis."""
        return cls(connect(url or settings.redis_url), settings)

    # -- writes ------------------------------------------------------------------------
    def count(self, events: Iterable[Event], now: float | None = None) -> int:
        """Count checked events; returns how many were counted."""
        now = time.time() if now is None else now
        batch = aggregate(events, self.settings.periods, self.settings.tz, now)
        self.write(batch)
        return batch.events

    def write(self, batch: Batch) -> None:
        """Apply a pre-aggregated batch in one pipelined transaction: all of it or none."""
        tz = self.settings.tz
        expiries: dict[str, int] = {}
        with _errors():
            pipe = self.redis.pipeline(transaction=True)
            for (pk, path, metric, period, ordinal), nanos in batch.counters.items():
                if not nanos:
                    continue
                chunk, slot = keys.chunk_of(ordinal)
                key = keys.counter(pk, path, metric, period, chunk)
                whole, fraction = split(nanos)
                whole_field, fraction_field = keys.counter_fields(slot)
                if whole:
                    pipe.hincrby(key, whole_field, whole)
                if fraction:
                    pipe.hincrby(key, fraction_field, fraction)
                if key not in expiries:
                    last = (chunk + 1) * keys.CHUNK - 1
                    expiries[key] = period.expires_at(last, tz)
            for (pk, path, metric, period, ordinal), uids in batch.uniques.items():
                key = keys.unique(pk, path, metric, period, ordinal)
                pipe.pfadd(key, *uids)
                expiries[key] = period.expires_at(ordinal, tz)
            for key, when in expiries.items():
                pipe.expireat(key, when)
            longest = max(p.retention for p in self.settings.periods)
            for (pk, parent), seen in batch.children.items():
                key = keys.children(pk, parent)
                pipe.zadd(key, seen, gt=True)
                pipe.expire(key, longest)
            for pk, kinds in batch.metric_kinds.items():
                pipe.hset(keys.metrics(pk), mapping=kinds)
                pipe.expire(keys.metrics(pk), longest)
            if batch.metric_kinds:
                pipe.sadd(keys.PKS, *batch.metric_kinds)
            pipe.execute()

    def reset(self, pk: str) -> int:
        """Delete every key of one pk; returns how many keys were deleted."""
        deleted = 0
        with _errors():
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
    ) -> dict[Path, dict[str, Reading]]:
        """Every bucket of ``ordinals`` for each path and metric, in one round trip.

        ``metrics`` maps a metric name to its kind (``sum`` or ``unique``)."""
        chunks = range(keys.chunk_of(ordinals.start)[0], keys.chunk_of(ordinals.stop - 1)[0] + 1) \
            if ordinals else range(0)
        with _errors():
            pipe = self.redis.pipeline(transaction=False)
            for path in paths:
                for metric, kind in metrics.items():
                    if kind == UNIQUE:
                        unique_keys = [keys.unique(pk, path, metric, period, o) for o in ordinals]
                        for key in unique_keys:
                            pipe.pfcount(key)
                        if unique_keys:
                            pipe.pfcount(*unique_keys)
                    else:
                        for chunk in chunks:
                            pipe.hgetall(keys.counter(pk, path, metric, period, chunk))
            replies = iter(pipe.execute())
        result: dict[Path, dict[str, Reading]] = {}
        for path in paths:
            result[path] = {}
            for metric, kind in metrics.items():
                if kind == UNIQUE:
                    values = [next(replies) for _ in ordinals]
                    total = next(replies) if ordinals else 0
                else:
                    values = self._buckets([next(replies) for _ in chunks], chunks, ordinals)
                    total = from_nanos(sum(values))
                    values = [from_nanos(v) for v in values]
                result[path][metric] = Reading(values, total)
        return result

    @staticmethod
    def _buckets(hashes: list[dict], chunks: range, ordinals: range) -> list[int]:
        """Nanos per ordinal from the chunk hashes that cover them."""
        nanos = [0] * len(ordinals)
        for chunk, fields in zip(chunks, hashes, strict=True):
            for name, value in fields.items():
                fraction = name.endswith("f")
                ordinal = chunk * keys.CHUNK + int(name[:-1] if fraction else name)
                index = ordinal - ordinals.start
                if 0 <= index < len(nanos):
                    nanos[index] += int(value) if fraction else int(value) * NANO
        return nanos

    def children(self, pk: str, path: Path, since: float | None = None) -> list[str]:
        """The children seen under ``path`` (since ``since``, when given), sorted by name."""
        with _errors():
            names = self.redis.zrangebyscore(
                keys.children(pk, path), "-inf" if since is None else since, "+inf"
            )
        return sorted(names)

    def metric_kinds(self, pk: str) -> dict[str, str]:
        """The metrics counted under ``pk``: name -> ``sum`` or ``unique``."""
        with _errors():
            return dict(self.redis.hgetall(keys.metrics(pk)))

    def pks(self) -> list[str]:
        """Every pk in use, sorted."""
        with _errors():
            return sorted(self.redis.smembers(keys.PKS))

    def ping(self) -> bool:
        """Whether Redis answers."""
        with _errors():
            return bool(self.redis.ping())


@contextmanager
def _errors():
    """Turns a lost Redis connection into StoreUnavailable, so apps can answer 503."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc


__all__ = ["Store", "Reading", "connect", "SUM", "UNIQUE"]
