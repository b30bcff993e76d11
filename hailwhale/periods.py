"""Periods and bucket maths: pure functions, no Redis.

A period is ``(interval_seconds, retention_seconds)``: every event is counted into the bucket
of each period that contains its time, and a bucket is kept for ``retention`` seconds after it
closes. Buckets are numbered by an integer *ordinal*:

* intervals shorter than a day (or not a whole number of days) are aligned to the UTC epoch:
  ``ordinal = floor(t / interval)``;
* intervals of whole days are aligned to local midnight in the configured time zone, so a
  "day" bucket is the viewer's calendar day, 23 or 25 hours long across daylight-saving
  changes; whole weeks start on Monday.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from functools import cached_property
from urllib.parse import quote
from zoneinfo import ZoneInfo

from .errors import BadRequest, ConfigurationError

DAY = 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY, "y": 365 * DAY}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdwy]?)\s*$")
_EPOCH_DAY = date(1970, 1, 1).toordinal()
# 1970-01-01 was a Thursday: shifting by 3 days makes whole-week buckets start on Monday.
_MONDAY_SHIFT = 3


def parse_duration(text: str | int) -> int:
    """Seconds in a duration such as ``15s``, ``3h``, ``7d``, ``1w``, ``1y`` or ``90``."""
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"not a duration: {text!r} (use e.g. 15s, 5m, 3h, 7d, 1w, 1y)")
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of ``seconds`` in y, d, h, m or s: ``10800`` -> ``3h``."""
    for unit in ("y", "d", "h", "m"):  # 7d reads better than 1w
        size = _UNITS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Period:
    """One roll-up period: bucket width and how long buckets are kept, both in seconds."""

    interval: int
    retention: int
    label: str | None = None
    # A whole-day period's buckets in a zone of their own (a zone of TIMEZONES), not the
    # configured TIMEZONE's: a copy of a configured period, counted beside it.
    zone: str | None = None

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.retention < self.interval:
            raise ConfigurationError(
                f"period {self.interval}:{self.retention}: the interval must be positive and "
                "the retention at least one interval"
            )

    def __hash__(self) -> int:
        # Periods key every counter of a batch: a cheap hash (equal periods still hash alike).
        return self.interval * 1_000_003 + self.retention + hash(self.zone)

    @property
    def name(self) -> str:
        """The canonical spelling, ``15s:3h`` (``1d:1y@Europe/Berlin`` in a zone)."""
        name = f"{format_duration(self.interval)}:{format_duration(self.retention)}"
        return f"{name}@{self.zone}" if self.zone else name

    @cached_property
    def code(self) -> str:
        """The period's part of a Redis key; interval and retention both, so that two
        periods of the same interval never share counters, and a zone's copy its zone.
        (Cached: every key of a batch spells it.)"""
        code = f"{self.interval}r{self.retention}"
        return f"{code}z{quote(self.zone, safe='')}" if self.zone else code

    def in_zone(self, zone: str) -> Period:
        """This whole-day period with its buckets in ``zone``."""
        return dataclasses.replace(self, zone=zone)

    @cached_property
    def _zoneinfo(self) -> tzinfo | None:
        return ZoneInfo(self.zone) if self.zone else None

    def _tz(self, tz: tzinfo) -> tzinfo:
        return self._zoneinfo or tz

    @property
    def daily(self) -> bool:
        """Whether buckets are calendar days (or weeks) in the configured time zone."""
        return self.interval % DAY == 0

    @property
    def slots(self) -> int:
        """How many buckets the retention keeps."""
        return max(1, self.retention // self.interval)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "interval": self.interval,
            "retention": self.retention,
        }

    # -- bucket maths ------------------------------------------------------------------
    def ordinal(self, ts: float, tz: tzinfo) -> int:
        """The number of the bucket holding the unix time ``ts``."""
        if not self.daily:
            return math.floor(ts / self.interval)
        # Whole seconds: fromtimestamp rounds to the microsecond, which could move a time
        # just before midnight into the next day.
        days = datetime.fromtimestamp(math.floor(ts), self._tz(tz)).date().toordinal() - \
            _EPOCH_DAY
        return (days + self._shift) // (self.interval // DAY)

    def start(self, ordinal: int, tz: tzinfo) -> float:
        """The unix time at which bucket ``ordinal`` begins."""
        if not self.daily:
            return float(ordinal * self.interval)
        days = ordinal * (self.interval // DAY) - self._shift
        day = date.fromordinal(_EPOCH_DAY + days)
        return datetime.combine(day, time(0), tzinfo=self._tz(tz)).timestamp()

    def expires_at(self, ordinal: int, tz: tzinfo) -> int:
        """When bucket ``ordinal`` may be forgotten: its end plus the retention."""
        return math.ceil(self.start(ordinal + 1, tz)) + self.retention

    def ordinals(self, since: float, until: float, tz: tzinfo) -> range:
        """Every bucket that overlaps ``[since, until]``, oldest first."""
        return range(self.ordinal(since, tz), self.ordinal(until, tz) + 1)

    def keeps(self, ts: float, now: float, tz: tzinfo) -> bool:
        """Whether an event at ``ts`` still falls in a bucket this period retains at ``now``."""
        return self.expires_at(self.ordinal(ts, tz), tz) > now

    @property
    def _shift(self) -> int:
        return _MONDAY_SHIFT if (self.interval // DAY) % 7 == 0 else 0


def parse_period(spec: str | tuple | list | Period) -> Period:
    """A period from ``(interval, retention[, label])``, ``15s:3h`` or a Period."""
    if isinstance(spec, Period):
        return spec
    if isinstance(spec, (tuple, list)):
        if len(spec) not in (2, 3):
            raise ConfigurationError(f"a period is (interval, retention[, label]), got {spec!r}")
        label = spec[2] if len(spec) == 3 else None
        try:
            return Period(parse_duration(spec[0]), parse_duration(spec[1]), label)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    text = str(spec).strip()
    if ":" not in text:
        raise ConfigurationError(f"a period is INTERVAL:RETENTION such as 15s:3h, got {text!r}")
    interval, retention = text.split(":", 1)
    try:
        return Period(parse_duration(interval), parse_duration(retention))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def parse_periods(spec: str | list | tuple) -> tuple[Period, ...]:
    """The configured periods from a list of specs or ``15s:3h,1h:7d,1d:1y``."""
    items = [s for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    periods = tuple(parse_period(item) for item in items)
    if not periods:
        raise ConfigurationError("at least one period must be configured")
    if len({p.code for p in periods}) != len(periods):
        raise ConfigurationError(f"periods are configured twice: {[p.name for p in periods]}")
    return periods


def find_period(periods: tuple[Period, ...], spec: object) -> Period:
    """The configured period a query names: ``15s:3h``, a label, an interval such as ``1h``
    when only one period has it, an ``(interval, retention)`` tuple, or None for the first."""
    if spec is None or spec == "":
        return periods[0]
    if isinstance(spec, Period) and spec in periods:
        return spec
    for period in periods:
        if spec == period.label or spec == period.name:
            return period
    try:
        wanted = parse_period(spec)
        for period in periods:
            if (period.interval, period.retention) == (wanted.interval, wanted.retention):
                return period
    except ConfigurationError:
        try:
            interval = parse_duration(spec)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            interval = None
        matches = [p for p in periods if p.interval == interval]
        if len(matches) == 1:
            return matches[0]
    names = ", ".join(p.name for p in periods)
    raise BadRequest("period", spec, f"unknown period; configured: {names}")
