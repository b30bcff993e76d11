"""A Hail node's buffer: the Redis list events wait in until hailwail moves them to Whale.

Every step is one atomic Redis operation, so a crash between any two of them loses nothing:
``push`` appends, ``take`` moves a batch into its own processing list and records it in
flight, ``ack`` removes it (dead-lettering what Whale refused) once Whale confirmed, and a
batch whose sender died is ``claim``-ed and sent again, under the same id, after its lease.
"""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from dataclasses import dataclass

import redis

from . import keys, wire
from .connection import connect, redis_errors

_LUA = pathlib.Path(__file__).parent / "lua"
POOL_SIZE = 32  # Redis connections per process (a Hail worker, hailwail)


@dataclass(frozen=True)
class BufferStats:
    """What is waiting: buffered events, their age, batches in flight, dead letters."""

    waiting: int
    oldest_age: float | None
    in_flight: int
    dead: int

    def as_dict(self) -> dict:
        return {"waiting": self.waiting, "oldest_age": self.oldest_age,
                "in_flight": self.in_flight, "dead": self.dead}


class Buffer:
    """The buffer in one Redis (a Hail node's ``HAIL_REDIS_URL``)."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._take = client.register_script((_LUA / "take.lua").read_text())
        self._claim = client.register_script((_LUA / "claim.lua").read_text())

    @classmethod
    def from_url(cls, url: str) -> Buffer:
        """A buffer on ``url``; short timeouts, so Hail answers 503 quickly when it is down."""
        from .legacy import rename_on_open

        if url.startswith("memory://"):
            return cls(connect(url))
        # A bounded pool: under gevent one worker serves up to a thousand requests at once,
        # and each would otherwise open a Redis connection of its own. Past POOL_SIZE in use,
        # a request waits for one (up to the same 2 s, then 503).
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=2, decode_responses=True,
            socket_timeout=2, socket_connect_timeout=1, retry_on_timeout=False)
        client = redis.Redis(connection_pool=pool)
        rename_on_open(client)  # keys under an earlier version's names
        return cls(client)

    def push(self, events: list[str | dict], counts: dict[str, int] | None = None) -> None:
        """Append events in one atomic command: wire lines (hailwhale.wire) as they are, or
        raw parameters (the first wire form) as JSON. ``counts`` are added to the StatsD
        listener's tallies (``statsd_counts``) in the same step."""
        items = [e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))
                 for e in events]
        if not items and not counts:
            return
        with redis_errors():
            if not counts:
                self.redis.rpush(keys.BUFFER, *items)
                return
            pipe = self.redis.pipeline(transaction=True)
            if items:
                pipe.rpush(keys.BUFFER, *items)
            for name, amount in counts.items():
                pipe.hincrby(keys.STATSD, name, amount)
            pipe.execute()

    def statsd_counts(self) -> dict[str, int]:
        """What the StatsD listener took since the buffer's Redis began: UDP packets, lines
        (UDP and TCP), events buffered, lines refused."""
        with redis_errors():
            return {name: int(value) for name, value in self.redis.hgetall(keys.STATSD).items()}

    def take(self, size: int, now: float | None = None) -> tuple[str, list[str]] | None:
        """``(batch id, events)`` of up to ``size`` of the oldest events, now in flight."""
        batch_id = uuid.uuid4().hex
        with redis_errors():
            items = self._take(keys=[keys.BUFFER, keys.INFLIGHT, keys.processing(batch_id)],
                               args=[size, batch_id, time.time() if now is None else now])
        return (batch_id, items) if items else None

    def stale(self, lease: float, now: float | None = None) -> list[str]:
        """Ids of in-flight batches whose lease started ``lease`` seconds ago or more."""
        now = time.time() if now is None else now
        with redis_errors():
            return self.redis.zrangebyscore(keys.INFLIGHT, "-inf", now - lease)

    def claim(self, batch_id: str, lease: float, now: float | None = None) -> list[str]:
        """The events of a stale batch, leased to the caller; none if someone holds it."""
        now = time.time() if now is None else now
        with redis_errors():
            return self._claim(keys=[keys.INFLIGHT, keys.processing(batch_id)],
                               args=[batch_id, now, now - lease])

    def release(self, batch_id: str) -> None:
        """Give up a batch's lease (its delivery failed): the next drain sends it again."""
        with redis_errors():
            self.redis.zadd(keys.INFLIGHT, {batch_id: 0}, xx=True)

    def ack(self, batch_id: str, dead: list[tuple[str, str]] = (), now: float | None = None
            ) -> None:
        """Whale confirmed the batch: dead-letter the ``(event, reason)`` pairs it refused and
        forget the batch, in one transaction."""
        with redis_errors():
            pipe = self.redis.pipeline(transaction=True)
            self.dead_letter(batch_id, dead, now, pipe)
            pipe.delete(keys.processing(batch_id))
            pipe.zrem(keys.INFLIGHT, batch_id)
            pipe.execute()

    def dead_letter(self, batch_id: str, dead: list[tuple[str, str]],
                    now: float | None = None, pipe=None) -> None:
        """Append ``(event, reason)`` pairs to the dead-letter list (in ``pipe``, if given)."""
        if not dead:
            return
        now = time.time() if now is None else now
        entries = [json.dumps({"event": item, "reason": reason, "batch": batch_id, "at": now},
                              separators=(",", ":")) for item, reason in dead]
        if pipe is not None:
            pipe.rpush(keys.DEAD, *entries)
            return
        with redis_errors():
            self.redis.rpush(keys.DEAD, *entries)

    def dead_count(self) -> int:
        """How many events the dead-letter list holds."""
        with redis_errors():
            return int(self.redis.llen(keys.DEAD))

    def dead_letters(self, count: int = 100) -> list[dict]:
        """The oldest ``count`` dead letters: ``{"event", "reason", "batch", "at"}``."""
        with redis_errors():
            return [json.loads(item) for item in self.redis.lrange(keys.DEAD, 0, count - 1)]

    def stats(self, now: float | None = None) -> BufferStats:
        """How much is waiting, and for how long the oldest event has."""
        now = time.time() if now is None else now
        with redis_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(keys.BUFFER).lindex(keys.BUFFER, 0).zcard(keys.INFLIGHT).llen(keys.DEAD)
            waiting, oldest, in_flight, dead = pipe.execute()
        received = wire.received_of(oldest) if oldest else None
        age = None if received is None else max(0.0, now - received)
        return BufferStats(waiting, age, in_flight, dead)

    def ping(self) -> bool:
        with redis_errors():
            return bool(self.redis.ping())
