"""Settings: the defaults in ``settings.py``, overridden by environment variables.

The settings file is loaded by path, never imported as ``settings``, so HailWhale cannot pick
up (or shadow) the settings module of the application that embeds it. ``HAILWHALE_SETTINGS``
names another file; by default it is the ``settings.py`` beside this package's folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError
from .periods import Period, parse_periods

# The project's settings.py: beside the package in a checkout (``pip install -e .``), or where
# a regular install puts it (see ``data-files`` in pyproject.toml).
SETTINGS_FILES = (
    Path(__file__).resolve().parent.parent / "settings.py",
    Path(sys.prefix) / "share" / "hailwhale" / "settings.py",
)
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Environment variable -> setting name, for the settings an operator overrides most.
_ENV = {
    "HAILWHALE_PERIODS": "PERIODS",
    "WHALE_REDIS_URL": "WHALE_REDIS_URL",
    "HAIL_REDIS_URL": "HAIL_REDIS_URL",
    "WHALE_URL": "WHALE_URL",
    "HAILWHALE_TIMEZONE": "TIMEZONE",
    "HAILWHALE_TIMEZONES": "TIMEZONES",
    "HAILWHALE_MAX_DEPTH": "MAX_DEPTH",
    "HAILWHALE_MAX_BRANCHES": "MAX_BRANCHES",
    "HAILWHALE_MAX_METRICS": "MAX_METRICS",
    "HAILWHALE_MAX_NAME_LENGTH": "MAX_NAME_LENGTH",
    "HAILWHALE_FUTURE_SKEW": "FUTURE_SKEW",
    "HAILWHALE_MAX_BUCKETS": "MAX_BUCKETS",
    "HAILWHALE_MAX_CHILDREN": "MAX_CHILDREN",
    "HAILWHALE_MAX_QUERY_CELLS": "MAX_QUERY_CELLS",
    "HAILWHALE_QUERY_SLOTS": "QUERY_SLOTS",
    "HAILWHALE_MAX_PK_METRICS": "MAX_PK_METRICS",
    "HAILWHALE_BATCH_MEMORY": "BATCH_MEMORY",
    "HAIL_BACKEND": "HAIL_BACKEND",
    "CELERY_BROKER_URL": "CELERY_BROKER_URL",
    "HAILWHALE_CELERY_QUEUE": "CELERY_QUEUE",
    "HAILWAIL_INTERVAL": "HAILWAIL_INTERVAL",
    "HAILWHALE_SECRET": "SECRET",
    "HAILWHALE_TOKEN": "TOKEN",
    "HAILWHALE_REVOKED_TOKENS": "REVOKED_TOKENS",
    "HAILWHALE_ALLOW_OPEN": "ALLOW_OPEN",
    "HAILWHALE_STATSD_PORT": "STATSD_PORT",
    "HAILWHALE_STATSD_HOST": "STATSD_HOST",
    "HAILWHALE_STATSD_PK": "STATSD_PK",
}
_INTEGERS = (
    "MAX_DEPTH", "MAX_BRANCHES", "MAX_METRICS", "MAX_NAME_LENGTH", "FUTURE_SKEW", "MAX_BUCKETS",
    "MAX_CHILDREN", "MAX_QUERY_CELLS", "QUERY_SLOTS", "MAX_PK_METRICS", "BATCH_MEMORY",
    "HAILWAIL_INTERVAL", "STATSD_PORT",
)
_STRINGS = (
    "WHALE_REDIS_URL", "HAIL_REDIS_URL", "WHALE_URL", "TIMEZONE", "HAIL_BACKEND",
    "CELERY_BROKER_URL", "CELERY_QUEUE", "SECRET", "TOKEN", "STATSD_HOST", "STATSD_PK",
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
BACKENDS = ("redis", "celery")


@dataclass(frozen=True)
class Settings:
    """Everything HailWhale is configured with, validated."""

    periods: tuple[Period, ...]
    whale_redis_url: str | None = None
    hail_redis_url: str = "redis://127.0.0.1:6379/1"
    whale_url: str = "http://127.0.0.1:8080"
    timezone: str = "UTC"
    max_depth: int = 8
    max_branches: int = 16
    max_metrics: int = 32
    max_name_length: int = 200
    future_skew: int = 300
    max_buckets: int = 5000
    max_children: int = 1000
    max_query_cells: int = 1_000_000
    query_slots: int = 2
    max_pk_metrics: int = 200
    batch_memory: int = 7 * 24 * 3600
    hail_backend: str = "redis"
    celery_broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    celery_queue: str = "hailwhale"
    hailwail_interval: int = 5
    # Authentication (see hailwhale/auth.py): None leaves the service open.
    secret: str | None = field(default=None, repr=False)
    # The token hailwail and the Celery worker send to Whale (None: made from the secret).
    token: str | None = field(default=None, repr=False)
    revoked_tokens: tuple[str, ...] = ()
    # Serve without a secret on an address other machines can reach.
    allow_open: bool = False
    # Hail's StatsD listener (hail/statsd.py): UDP and TCP on this port (0: none), on this
    # address (StatsD carries no token: loopback unless set), counted under this pk.
    statsd_port: int = 8125
    statsd_host: str = "127.0.0.1"
    statsd_pk: str = ""
    # Zones whose day (and week) buckets are kept too, beside TIMEZONE's, for queries with
    # tz= (README: "Time zones").
    timezones: tuple[str, ...] = ()
    tz: ZoneInfo = field(init=False, repr=False, compare=False)
    # The periods every event is counted into: PERIODS, and a copy of each whole-day one
    # in each zone of TIMEZONES.
    counted_periods: tuple[Period, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "tz", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"TIMEZONE: unknown time zone {self.timezone!r}") from None
        for zone in self.timezones:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(f"TIMEZONES: unknown time zone {zone!r}") from None
        zones = [zone for zone in dict.fromkeys(self.timezones) if zone != self.timezone]
        object.__setattr__(self, "counted_periods", self.periods + tuple(
            period.in_zone(zone) for zone in zones for period in self.periods
            if period.daily))
        for name in _INTEGERS:
            if getattr(self, name.lower()) < 1 and name not in ("FUTURE_SKEW", "STATSD_PORT"):
                raise ConfigurationError(f"{name} must be at least 1")
        for name in ("secret", "token"):
            if getattr(self, name) == "":  # an empty setting is no setting
                object.__setattr__(self, name, None)
        if self.secret is not None:
            from .auth import check_secret

            check_secret(self.secret)
        if not 0 <= self.statsd_port <= 65535:
            raise ConfigurationError("STATSD_PORT must be a port (0 turns StatsD off)")
        if self.hail_backend not in BACKENDS:
            raise ConfigurationError(f"HAIL_BACKEND must be one of {', '.join(BACKENDS)}, "
                                     f"not {self.hail_backend!r}")

    @property
    def PERIODS(self) -> list[tuple[int, int]]:  # noqa: N802 - the seed's spelling
        """The periods as ``(interval, retention)`` tuples, as the seed's examples use them."""
        return [(p.interval, p.retention) for p in self.periods]

    PERIOD = PERIODS  # the seed's README writes settings.PERIOD[-1]

    @property
    def redis_url(self) -> str:
        """The Redis URL of Whale's store, with the documented default."""
        return self.whale_redis_url or DEFAULT_REDIS_URL

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> Settings:
        """Settings from UPPERCASE names, as a settings file holds them."""
        if "PERIODS" not in values:
            raise ConfigurationError("PERIODS is not set")
        kwargs: dict = {"periods": parse_periods(values["PERIODS"])}  # type: ignore[arg-type]
        for name in _STRINGS:
            if values.get(name) is not None:
                kwargs[name.lower()] = str(values[name])
        for name in _INTEGERS:
            if values.get(name) is not None:
                try:
                    kwargs[name.lower()] = int(values[name])  # type: ignore[call-overload]
                except (TypeError, ValueError):
                    raise ConfigurationError(f"{name} must be a whole number") from None
        revoked = values.get("REVOKED_TOKENS") or ()
        if isinstance(revoked, str):  # the environment's comma-separated list
            revoked = [part.strip() for part in revoked.split(",")]
        kwargs["revoked_tokens"] = tuple(str(part) for part in revoked if part)
        zones = values.get("TIMEZONES") or ()
        if isinstance(zones, str):  # the environment's comma-separated list
            zones = [part.strip() for part in zones.split(",")]
        kwargs["timezones"] = tuple(str(zone) for zone in zones if zone)
        kwargs["allow_open"] = _flag(values.get("ALLOW_OPEN"), "ALLOW_OPEN")
        return cls(**kwargs)


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if str(value).strip().lower() in _TRUE:
        return True
    if str(value).strip().lower() in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false (1/0, yes/no), not {value!r}")


def read_settings_file(path: str | os.PathLike) -> dict[str, object]:
    """The UPPERCASE names defined in a Python settings file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"settings file not found: {path}")
    spec = importlib.util.spec_from_file_location("_hailwhale_settings", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return {name: getattr(module, name) for name in dir(module) if name.isupper()}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """The settings in force: the settings file, then the environment, then ``overrides``
    (UPPERCASE names, as in the file)."""
    environ = os.environ if environ is None else environ
    path = environ.get("HAILWHALE_SETTINGS") or next(
        (p for p in SETTINGS_FILES if p.is_file()), SETTINGS_FILES[0]
    )
    values = read_settings_file(path)
    for variable, name in _ENV.items():
        if environ.get(variable):
            values[name] = environ[variable]
    values.update(overrides)
    return Settings.from_mapping(values)
