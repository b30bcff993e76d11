"""Connections to Redis, and Redis' failures as HailWhale's errors: what the store and the
Hail buffer share."""

from __future__ import annotations

from contextlib import contextmanager

import redis

from . import telemetry
from .errors import ConfigurationError, StoreUnavailable


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
    # Timeouts, so that an unreachable Redis is an error (503, a retried task), not a hang.
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2,
                                socket_timeout=30)


@contextmanager
def redis_errors():
    """Turns any Redis error (a lost connection, out of memory, a read-only replica, a
    script error) into StoreUnavailable, so apps answer 503. The message names the kind of
    failure only: the exception text may hold Redis' host and port, which anonymous clients
    must not see (it stays in the chained exception, for the server log)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        telemetry.redis_error("connection")
        raise StoreUnavailable("Redis is unavailable (connection lost or timed out)") from exc
    except redis.ResponseError as exc:
        telemetry.redis_error("response")
        # redis-py names the errors it knows by class (OutOfMemoryError, ReadOnlyError, ...),
        # dropping their code from the text; others keep Redis' code as the first word.
        # Either is safe to show.
        if type(exc) is not redis.ResponseError:
            code = type(exc).__name__
        else:
            code = str(exc).split(" ", 1)[0][:20] if str(exc)[:1].isupper() else "ERR"
        raise StoreUnavailable(f"Redis refused the command ({code})") from exc
    except redis.RedisError as exc:
        telemetry.redis_error("other")
        raise StoreUnavailable(f"Redis failed ({type(exc).__name__})") from exc
