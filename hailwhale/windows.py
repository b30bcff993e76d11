"""Query windows: which stretch of time a query covers. Pure functions, no Redis.

``since`` and ``until`` take unix seconds (or milliseconds, as flot and JavaScript give them),
ISO 8601, a duration back from now (``24h``, ``7d``), or the names ``now``, ``today``,
``yesterday``, ``mtd`` (month to date) and ``ytd`` (year to date), in the configured TIMEZONE.
By default a query covers the period's whole retention up to now.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta, tzinfo

from .errors import BadRequest
from .periods import Period, parse_duration

NAMES = ("now", "today", "yesterday", "mtd", "ytd")
LATEST = 253402300799  # 9999-12-31T23:59:59Z


def parse_time(value, tz: tzinfo, param: str) -> float:
    """Unix seconds from unix seconds or milliseconds (any number past 1e11, i.e. after the
    year 5138 in seconds, is taken as ms) or ISO 8601 (a time with no zone is in ``tz``)."""
    if isinstance(value, bool):
        raise BadRequest(param, value, "a time is unix seconds or ISO 8601")
    if isinstance(value, int) and abs(value) > 10**15:
        # float() of an int past 1e308 raises OverflowError; no time is that large anyway.
        raise BadRequest(param, value, "a time must lie between 1970 and 9999")
    if isinstance(value, (int, float)):
        ts = float(value)
    else:
        text = str(value).strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(param, value, "a time is unix seconds or ISO 8601") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=tz)
            ts = moment.timestamp()
    if not math.isfinite(ts):
        raise BadRequest(param, value, "a time must be a finite number")
    return check_range(ts / 1000 if ts > 1e11 else ts, param, value)


def check_range(ts: float, param: str, value) -> float:
    """``ts`` if it lies between 1970 and 9999, the times calendars (and buckets) handle."""
    if not 0 <= ts <= LATEST:
        raise BadRequest(param, value, "a time must lie between 1970 and 9999")
    return ts


def _midnight(moment: datetime, tz: tzinfo) -> float:
    return datetime.combine(moment.date(), time(0), tzinfo=tz).timestamp()


def _named(name: str, now: float, tz: tzinfo) -> tuple[float, float | None]:
    """``(start, end or None)`` of a named window."""
    local = datetime.fromtimestamp(now, tz)
    if name == "now":
        return now, None
    if name == "today":
        return _midnight(local, tz), None
    if name == "yesterday":
        today = _midnight(local, tz)
        return _midnight(local - timedelta(days=1), tz), today - 0.001
    if name == "mtd":
        return _midnight(local.replace(day=1), tz), None
    return _midnight(local.replace(month=1, day=1), tz), None  # ytd


def _point(value, now: float, tz: tzinfo, param: str) -> tuple[float, float | None]:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in NAMES:
        return _named(text, now, tz)
    if text and text[-1] in "smhdwy" and text[:-1].isdigit():
        try:
            return check_range(now - parse_duration(text), param, value), None
        except ValueError as exc:
            raise BadRequest(param, value, str(exc)) from None
    return parse_time(value, tz, param), None


def resolve(
    period: Period, since, until, now: float, tz: tzinfo, max_buckets: int
) -> tuple[float, float]:
    """``(since, until)`` in unix seconds for a query; checks the window is sensible."""
    end = now
    if until not in (None, ""):
        end = _point(until, now, tz, "until")[0]
    if since in (None, ""):
        start = end - period.retention + period.interval
    else:
        start, named_end = _point(since, now, tz, "since")
        if named_end is not None and until in (None, ""):
            end = named_end
    start = check_range(start, "since", since)
    if start > end:
        raise BadRequest("since", since, "since is after until")
    buckets = period.ordinal(end, tz) - period.ordinal(start, tz) + 1
    if buckets > max_buckets:
        raise BadRequest(
            "since", since, f"the window spans {buckets} buckets of {period.name}; "
            f"at most {max_buckets} (choose a longer period or a shorter window)",
        )
    return start, end
