"""Event parsing and validation: raw parameters in, a checked Event out. Pure, no Redis.

The same rules serve ``GET /count`` (every value a string, JSON where it looks like JSON),
``POST /count`` (JSON values) and the Python API (Python values). Anything wrong is a
BadRequest naming the parameter and quoting what was sent; a valid Event can always be stored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from .config import Settings
from .dimensions import Path
from .errors import BadRequest
from .formulas import NAME
from .numbers import MAX_VALUE
from .windows import parse_time

UNIQUE = "is_unique"
_METRIC_NAME = re.compile(NAME)
# Control characters (tabs, newlines, NUL ...) have no place in a name shown on a graph; the
# store also relies on names never holding them (see hailwhale/lua/apply.lua).
# Lone surrogates (JSON "\ud800") cannot be encoded as UTF-8 for Redis: refused here, in the
# check Hail and Whale share, so Hail never accepts what Whale would refuse.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_METRIC_NAME = 64
# Parameter -> its alias; both spellings are accepted, never both at once.
ALIASES = {"dimensions": "dimension", "metrics": "metric", "pk": "category"}
KNOWN = {"dimensions", "dimension", "metrics", "metric", "pk", "category", "at", "uid"}


@dataclass(frozen=True)
class Event:
    """One checked event: where it is counted, what, and when."""

    branches: tuple[Path, ...]
    metrics: Mapping[str, int | float]
    uniques: tuple[str, ...] = ()
    uid: str | None = None
    pk: str = ""
    at: float = 0.0
    raw: Mapping = field(default_factory=dict, compare=False, repr=False)
    # (name, GAUGE_SET or GAUGE_DELTA, value) of each gauge the event sets or moves.
    gauges: tuple[tuple[str, str, float], ...] = ()
    # (name, samples) of each timing (distribution) the event adds samples to.
    timings: tuple[tuple[str, tuple[float, ...]], ...] = ()


def parse_event(raw: Mapping, settings: Settings, now: float) -> Event:
    """Check one event's raw parameters and return the Event to count."""
    if not isinstance(raw, Mapping):
        raise BadRequest("event", raw, "an event is a JSON object of parameters")
    unknown = sorted(k for k in raw.keys() - KNOWN if not str(k).startswith("_"))
    if unknown:
        raise BadRequest(
            unknown[0], raw[unknown[0]],
            "unknown parameter; use dimensions, metrics, pk, at, uid "
            "(names starting with _ are ignored, for cache busters)",
        )
    dims = _one_of(raw, "dimensions")
    metrics_value = _one_of(raw, "metrics")
    pk = _pk(_one_of(raw, "pk"), settings)
    branches = parse_dimensions(dims, settings)
    metrics = parse_metrics(metrics_value, settings)
    uid = _uid(raw.get("uid"), branches, metrics.uniques, settings)
    at = parse_at(raw.get("at"), settings, now)
    return Event(branches, metrics.sums, metrics.uniques, uid, pk, at, raw, metrics.gauges,
                 metrics.timings)


def event_of(branches: Sequence[Sequence[str]], metrics: Mapping, settings: Settings,
             now: float, pk: str = "", uid: str | None = None,
             at: float | None = None) -> Event:
    """An event given in parts already split (``branches`` as lists of names, ``metrics``
    as name -> number or ``"is_unique"``), checked by the same rules as ``parse_event``:
    how the StatsD listener builds its events. The root is the empty branch."""
    where = [list(branch) for branch in branches if branch]
    paths: list[Path] = []
    for branch in where:
        _collect(branch, (), paths, "dimensions", settings)
    checked = _within_limits(paths, where, "dimensions", settings) if paths else ()
    parsed = parse_metrics(dict(metrics), settings)
    raw = {"dimensions": where, "metrics": dict(metrics), "pk": pk}
    return Event(checked, parsed.sums, parsed.uniques,
                 _uid(uid, checked, parsed.uniques, settings), _pk(pk, settings),
                 parse_at(at, settings, now), raw, parsed.gauges, parsed.timings)


def parse_events(raws: list, settings: Settings, now: float) -> list[Event]:
    """Check every event of a batch; the first bad one refuses the batch, its error
    prefixed with its index (``event 3: metrics.x: ...``) when there are several."""
    events = []
    for index, raw in enumerate(raws):
        try:
            events.append(parse_event(raw, settings, now))
        except BadRequest as exc:
            raise exc.prefixed(f"event {index}") if len(raws) > 1 else exc from None
    return events


def _one_of(raw: Mapping, name: str):
    alias = ALIASES[name]
    if name in raw and alias in raw:
        raise BadRequest(name, raw[name], f"give either {name} or {alias}, not both")
    return raw.get(name, raw.get(alias))


def _maybe_json(value, param: str):
    """A GET parameter's value: JSON when it looks like JSON, else the plain string."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.strip()[:1] in ('[', '{', '"'):
        try:
            return json.loads(value)
        except RecursionError:
            # json's decoder recurses per level: ~1,000 levels exhaust the stack.
            raise BadRequest(param, value[:120], "JSON nested too deeply") from None
        except ValueError as exc:
            raise BadRequest(param, value, f"malformed JSON: {exc}") from None
    return value


def _name(value, param: str, settings: Settings | _Limits) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(param, value, "a dimension name must be a string or a whole number")
    text = str(value)
    if not text.strip():
        raise BadRequest(param, value, "a dimension name cannot be empty")
    if len(text) > settings.max_name_length:
        raise BadRequest(param, value, f"a name is at most {settings.max_name_length} characters")
    if _CONTROL.search(text):
        raise BadRequest(param, value, "a name cannot hold control characters or lone surrogates")
    return text


def parse_dimensions(value, settings: Settings, param: str = "dimensions") -> tuple[Path, ...]:
    """The branches of a ``dimensions`` value: a plain string is one level, a list is a
    hierarchy, an object nests (several keys make several branches)."""
    # Batches repeat the same few dimensions many times: the usual spellings (a string, a
    # list of names) are checked once and remembered. Errors are never cached, and neither
    # are long spellings, so that the cache stays small whatever clients send.
    if type(value) is list and all(type(v) is str for v in value):
        value = tuple(value)
    if (type(value) is str and len(value) <= _CACHED_LENGTH) or \
            (type(value) is tuple and sum(map(len, value)) <= _CACHED_LENGTH):
        return _cached_dimensions(value, param, settings.max_name_length,
                                  settings.max_branches, settings.max_depth)
    return _parse_dimensions(value, param, _Limits(settings.max_name_length,
                                                   settings.max_branches, settings.max_depth))


@dataclass(frozen=True)
class _Limits:
    max_name_length: int
    max_branches: int
    max_depth: int


_CACHED_LENGTH = 512


@lru_cache(maxsize=16384)
def _cached_dimensions(value: str | tuple, param: str, max_name_length: int,
                       max_branches: int, max_depth: int) -> tuple[Path, ...]:
    limits = _Limits(max_name_length, max_branches, max_depth)
    return _parse_dimensions(list(value) if type(value) is tuple else value, param, limits)


def _parse_dimensions(value, param: str, settings: _Limits) -> tuple[Path, ...]:
    value = _maybe_json(value, param)
    if value is None or value == "" or value == [] or value == {}:
        return ()
    branches: list[Path] = []
    _collect(value, (), branches, param, settings)
    return _within_limits(branches, value, param, settings)


def _within_limits(branches: list[Path], value, param: str, settings) -> tuple[Path, ...]:
    if len(branches) > settings.max_branches:
        raise BadRequest(param, value, f"more than {settings.max_branches} branches")
    for branch in branches:
        if len(branch) > settings.max_depth:
            raise BadRequest(param, value, f"nested deeper than {settings.max_depth} levels")
    return tuple(dict.fromkeys(branches))


def _collect(value, prefix: Path, out: list[Path], param: str, settings: _Limits) -> None:
    # Checked while walking, so a hostile document is never walked further than the limits.
    if len(prefix) > settings.max_depth:
        raise BadRequest(param, value, f"nested deeper than {settings.max_depth} levels")
    if len(out) > settings.max_branches:
        raise BadRequest(param, value, f"more than {settings.max_branches} branches")
    if isinstance(value, list):
        if not value:
            raise BadRequest(param, value, "a dimension list cannot be empty")
        out.append(prefix + tuple(_name(v, param, settings) for v in value))
    elif isinstance(value, dict):
        if not value:
            raise BadRequest(param, value, "a dimension object cannot be empty")
        for key, child in value.items():
            _collect(child, prefix + (_name(key, param, settings),), out, param, settings)
    else:
        out.append(prefix + (_name(value, param, settings),))


class Metrics(NamedTuple):
    """An event's metrics by kind (see ``parse_metrics``). A tuple: one is made per event,
    and a frozen dataclass costs several times as much to make."""

    sums: dict[str, int | float]
    uniques: tuple[str, ...] = ()
    gauges: tuple[tuple[str, str, float], ...] = ()
    timings: tuple[tuple[str, tuple[float, ...]], ...] = ()


def parse_metrics(value, settings: Settings) -> Metrics:
    """An event's ``metrics`` value by kind: a number is summed, ``"is_unique"`` counts the
    uid, ``{"gauge": n}`` sets a gauge, ``{"delta": n}`` moves it, ``{"timing": n}`` or
    ``{"timing": [n, ...]}`` adds samples to a distribution; ``hits: 1`` is added unless
    the event sets ``hits`` itself."""
    value = _maybe_json(value, "metrics")
    if value is None or value == "":
        value = {}
    if not isinstance(value, dict):
        raise BadRequest("metrics", value, 'metrics is a JSON object such as {"dollars": 200}')
    if len(value) > settings.max_metrics:
        raise BadRequest("metrics", value, f"more than {settings.max_metrics} metrics")
    sums: dict[str, int | float] = {}
    uniques: list[str] = []
    gauges: list[tuple[str, str, float]] = []
    timings: list[tuple[str, tuple[float, ...]]] = []
    samples = 0
    for name, number in value.items():
        if not isinstance(name, str):
            raise BadRequest("metrics", name, "a metric name is letters, digits and _, "
                             "not starting with a digit")
        _check_metric_name(name)
        param = f"metrics.{name}"
        if type(number) in (int, float):  # the usual case first
            sums[name] = _number(number, param)
            continue
        if name == "hits" and (number == UNIQUE or isinstance(number, dict)):
            what = "unique metric" if number == UNIQUE else "metric"
            raise BadRequest(param, number, f"hits counts every event; give the {what} "
                             "another name, such as visitors")
        if number == UNIQUE:
            uniques.append(name)
            continue
        if isinstance(number, dict):
            kind, given = _kind_of(number, param)
            if kind == TIMING:
                spelled = given if isinstance(given, list) else [given]
                if not spelled:
                    raise BadRequest(param, number, "a timing needs at least one sample")
                samples += len(spelled)
                if samples > MAX_SAMPLES:
                    raise BadRequest(param, number, f"more than {MAX_SAMPLES} timing samples "
                                     "in one event")
                timings.append((name, tuple(float(_number(v, param)) for v in spelled)))
            else:
                gauges.append((name, GAUGE_SET if kind == GAUGE else GAUGE_DELTA,
                               float(_number(given, param))))
            continue
        sums[name] = _number(number, param)
    sums.setdefault("hits", 1)
    return Metrics(sums, tuple(uniques), tuple(gauges), tuple(timings))


# The kinds of metric an event's ``metrics`` object can spell as {"<kind>": value}.
GAUGE, DELTA, TIMING = "gauge", "delta", "timing"
GAUGE_SET, GAUGE_DELTA = "=", "+"  # how a gauge is changed: set, or moved by a delta
# Timing samples one event may carry, over all its timings.
MAX_SAMPLES = 1000


def _kind_of(value: dict, param: str) -> tuple[str, object]:
    if len(value) != 1 or next(iter(value)) not in (GAUGE, DELTA, TIMING):
        raise BadRequest(param, value, f'a metric is a number or "{UNIQUE}", or an object: '
                         '{"gauge": n} (set a gauge), {"delta": n} (move it) or '
                         '{"timing": n or [n, ...]} (a distribution\'s samples)')
    return next(iter(value.items()))


def _number(number, param: str) -> int | float:
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise BadRequest(param, number, f'a metric is a number or "{UNIQUE}"')
    if isinstance(number, float) and not math.isfinite(number):
        raise BadRequest(param, number, "a metric must be a finite number")
    if abs(number) > MAX_VALUE:
        raise BadRequest(param, number, f"a metric is at most {MAX_VALUE:.0e} in size")
    return number


@lru_cache(maxsize=4096)
def _check_metric_name(name: str) -> None:
    """Refuses a bad metric name (cached: a batch names the same few metrics)."""
    if not _METRIC_NAME.fullmatch(name):
        raise BadRequest("metrics", name, "a metric name is letters, digits and _, "
                         "not starting with a digit")
    if len(name) > _MAX_METRIC_NAME:
        raise BadRequest("metrics", name, f"a metric name is at most {_MAX_METRIC_NAME} "
                         "characters")


def _pk(value, settings: Settings) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest("pk", value, "pk is a string")
    text = str(value)
    if len(text) > settings.max_name_length:
        raise BadRequest("pk", value, f"pk is at most {settings.max_name_length} characters")
    if _CONTROL.search(text):
        raise BadRequest("pk", value, "pk cannot hold control characters or lone surrogates")
    return text


def _uid(value, branches: tuple[Path, ...], uniques: tuple[str, ...], settings) -> str | None:
    if value is not None and value != "":
        return _name(value, "uid", settings)
    if not uniques:
        return None
    deepest = max(branches, key=len, default=())
    if not deepest:
        raise BadRequest("uid", value, f'"{UNIQUE}" needs a uid or a dimension to count')
    return deepest[-1]


def parse_at(value, settings: Settings, now: float) -> float:
    """An event time: unix seconds (milliseconds past year 5000 are taken as ms, as
    JavaScript's Date.now() gives them), or ISO 8601 (no zone: the configured TIMEZONE)."""
    if value is None or value == "":
        return now
    if type(value) in (int, float, str):  # a batch repeats the same few times
        return _cached_at(value, now, settings.tz, settings.future_skew, settings.periods)
    return _parse_at(value, now, settings.tz, settings.future_skew, settings.periods)


@lru_cache(maxsize=4096)
def _cached_at(value, now: float, tz, future_skew: int, periods) -> float:
    return _parse_at(value, now, tz, future_skew, periods)


def _parse_at(value, now: float, tz, future_skew: int, periods) -> float:
    ts = parse_time(value, tz, "at")
    if ts > now + future_skew:
        raise BadRequest("at", value, f"more than {future_skew}s in the future")
    if not any(p.keeps(ts, now, tz) for p in periods):
        raise BadRequest("at", value, "older than every period's retention")
    return ts
