"""Queries: which series a request selects, and the flot-ready answers built from them.

Parsing is pure; the answers read through a Store. Children are chosen by the ``sort`` metric
(or formula): a child is shown when its total is at least ``threshold`` of its parent's (in
absolute value, so negative revenue counts too), the ``limit`` largest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .admission import Budget
from .aggregate import GAUGE, SUM, TIMING, UNIQUE
from .config import Settings
from .dimensions import Path, label
from .errors import BadRequest
from .event import parse_dimensions
from .formulas import Formula, parse, split_ref
from .periods import DAY, Period, find_period
from .sketch import Sketch, is_stat
from .store import Reading, Store
from .windows import resolve

DEFAULT_THRESHOLD = 0.1
MAX_METRICS = 20


@dataclass(frozen=True)
class Query:
    """A checked selection: one dimension of one pk, metrics, a period and a window."""

    pk: str
    path: Path
    metrics: tuple[Formula, ...]
    period: Period
    since: float
    until: float
    depth: int = 0
    threshold: float = DEFAULT_THRESHOLD
    limit: int | None = None
    sort: Formula | None = None
    # tz= a zone whose day buckets are not kept (not in TIMEZONES): the period read, whose
    # buckets (hours) are folded into ``period``'s days in that zone.
    source: Period | None = None
    zone: str | None = None

    @property
    def ranking(self) -> Formula:
        """What children are ranked and thresholded by: ``sort``, else the first metric."""
        return self.sort or self.metrics[0]


# The parameters of /plotpoints and /totals; others are refused, as /count refuses them
# (names starting with _ are cache busters, ignored).
KNOWN = {"pk", "category", "dimensions", "dimension", "metrics", "metric", "period", "since",
         "until", "depth", "threshold", "limit", "sort", "tz"}


def refuse_unknown(params: Mapping, known: set[str]) -> None:
    """A BadRequest naming the first parameter of ``params`` not in ``known`` (names
    starting with _ are ignored, for cache busters)."""
    unknown = sorted(str(k) for k in params if k not in known and not str(k).startswith("_"))
    if unknown:
        raise BadRequest(unknown[0], params[unknown[0]],
                         f"unknown parameter; use {', '.join(sorted(known))} (names starting "
                         "with _ are ignored, for cache busters)")


def parse_query(params: Mapping, settings: Settings, now: float) -> Query:
    """A Query from request parameters (strings, or JSON values)."""
    refuse_unknown(params, KNOWN)
    path = parse_path(params.get("dimensions", params.get("dimension")), settings)
    metrics = tuple(parse(text) for text in _metric_list(params.get("metrics",
                                                                     params.get("metric"))))
    period, since, until, source, zone = window_of(params, settings, now)
    depth = _integer(params, "depth", 0, 0, settings.max_depth)
    threshold = _number(params, "threshold", DEFAULT_THRESHOLD, 0.0, 1.0)
    limit = _integer(params, "limit", None, 1, 10_000)
    sort = params.get("sort")
    pk = params.get("pk", params.get("category")) or ""
    return Query(str(pk), path, metrics, period, since, until, depth, threshold, limit,
                 parse(sort, "sort") if sort not in (None, "") else None, source, zone)


def window_of(params: Mapping, settings: Settings, now: float
              ) -> tuple[Period, float, float, Period | None, str | None]:
    """``(period, since, until, source, zone)`` of a query's ``period``, ``since``, ``until``
    and ``tz``: the period in the zone asked (see Query.source and Query.zone)."""
    period = find_period(settings.periods, params.get("period"))
    zone, tz = _zone(params.get("tz"), settings)
    source = None
    if zone is not None and period.daily:
        period = period.in_zone(zone)
    since, until = resolve(period, params.get("since"), params.get("until"), now, tz,
                           settings.max_buckets)
    if zone is not None and period.daily and zone not in settings.timezones:
        source = _hours_for(period, since, now, settings)
    return period, since, until, source, zone


def _zone(value, settings: Settings) -> tuple[str | None, tzinfo]:
    """``(the zone a tz= names, or None for the configured TIMEZONE; its tzinfo)``."""
    if value in (None, "") or value == settings.timezone:
        return None, settings.tz
    try:
        return str(value), ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadRequest("tz", value, "an IANA time zone such as Europe/Berlin") from None


def _hours_for(period: Period, since: float, now: float, settings: Settings) -> Period:
    """The period whose buckets a zone's days are folded from: the finest configured one of
    whole hours that still keeps ``since``; a BadRequest naming tz when none does."""
    hourly = [p for p in settings.periods if not p.daily and p.interval % 3600 == 0
              and DAY % p.interval == 0]
    for candidate in sorted(hourly, key=lambda p: p.interval):
        if candidate.keeps(since, now, settings.tz):
            return candidate
    kept = max((p.retention for p in hourly), default=0)
    raise BadRequest("tz", period.zone, f"day buckets in {period.zone} are kept only for the "
                     f"zones of TIMEZONES ({', '.join(settings.timezones) or 'none'}); other "
                     "zones' days are folded from hourly buckets, kept "
                     + (f"for {kept // DAY} days: narrow since" if kept else "by no period")
                     + ", or add the zone to TIMEZONES")


def parse_path(value, settings: Settings) -> Path:
    """The one dimension path a query selects; nothing selects the overall root."""
    branches = parse_dimensions(value, settings)
    if len(branches) > 1:
        raise BadRequest("dimensions", value, "a query selects one dimension path")
    return branches[0] if branches else ()


def _metric_list(value) -> list[str]:
    if value is None or value == "":
        return ["hits"]
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except RecursionError:
            raise BadRequest("metrics", value[:120], "JSON nested too deeply") from None
        except ValueError as exc:
            raise BadRequest("metrics", value, f"malformed JSON: {exc}") from None
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest("metrics", value, 'metrics is a list such as ["dollars", "dollars/hits"]')
    if len(value) > MAX_METRICS:
        raise BadRequest("metrics", value, f"at most {MAX_METRICS} metrics in one query")
    return value


def _integer(params: Mapping, name: str, default, low: int, high: int):
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(name, value, "must be a whole number") from None
    if not low <= number <= high:
        raise BadRequest(name, value, f"must be between {low} and {high}")
    return number


def _number(params: Mapping, name: str, default: float, low: float, high: float) -> float:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(name, value, "must be a number") from None
    if not low <= number <= high:  # also refuses NaN
        raise BadRequest(name, value, f"must be between {low:g} and {high:g}")
    return number


# -- answers ---------------------------------------------------------------------------
def _kinds(registry: Mapping[str, str], formulas: Sequence[Formula]) -> dict[str, str]:
    """The stored metrics the formulas read, with their kinds from the pk's ``registry``;
    a metric not counted yet is a sum, or, asked for a statistic, the kind that has it.
    A statistic its metric's kind has not is a BadRequest naming ``metrics``."""
    kinds: dict[str, str] = {}
    for formula in formulas:
        for ref in sorted(formula.names):
            name, stat = split_ref(ref)
            kind = registry.get(name) or (SUM if stat is None else
                                          GAUGE if stat == "last" else TIMING)
            if stat is not None and not (kind == GAUGE and stat == "last"
                                         or kind == TIMING and is_stat(stat)):
                raise BadRequest("metrics", formula.text, _stat_error(name, kind, stat))
            kinds[name] = kind
    return kinds


def _stat_error(name: str, kind: str, stat: str) -> str:
    if kind == GAUGE:
        return f"{name} is a gauge: {name} or {name}:last is its value"
    if kind == TIMING:
        return (f"{name}:{stat}: a timing's statistics are count, sum, mean, min, max and "
                "percentiles p0 to p100 (p999 is 99.9%)")
    return f"{name} is a {'unique count' if kind == 'unique' else 'sum'}: it has no :{stat}"


def _stat(reading_value, kind: str, stat: str | None):
    """What a formula's name reads of one stored value (a bucket's, or the total)."""
    if kind == TIMING:
        sketch = reading_value if isinstance(reading_value, Sketch) else Sketch()
        return sketch.stat(stat or "mean")
    return reading_value


def _columns(formula: Formula, readings: Mapping[str, Reading],
             kinds: Mapping[str, str]) -> dict[str, list]:
    """Each name of ``formula`` (``latency:p99`` ...) as its values bucket by bucket."""
    columns = {}
    for ref in formula.names:
        name, stat = split_ref(ref)
        reading = readings.get(name)
        if reading is None or not reading.values:
            continue
        kind = kinds.get(name, SUM)
        columns[ref] = reading.values if kind != TIMING else \
            [_stat(value, kind, stat) for value in reading.values]
    return columns


def values_of(formula: Formula, readings: Mapping[str, Reading], kinds: Mapping[str, str],
              length: int) -> list:
    """The formula's value in each of ``length`` buckets of one series' ``readings`` (as
    ``read_selection`` gives them, with the metrics' ``kinds``)."""
    return formula.evaluate_each(_columns(formula, readings, kinds), length)


def _total(formula: Formula, readings: Mapping[str, Reading], kinds: Mapping[str, str]):
    values = {}
    for ref in formula.names:
        name, stat = split_ref(ref)
        reading = readings.get(name)
        if reading is not None:
            values[ref] = _stat(reading.total, kinds.get(name, SUM), stat)
    return formula.evaluate(values)


def select(store: Store, query: Query, registry: Mapping[str, str],
           budget: Budget | None = None) -> list[Path]:
    """The selected dimension, then the children worth showing, largest first;
    ``registry`` is the pk's metric kinds (``Store.metric_kinds``); what is read is spent
    from ``budget``."""
    if not query.depth:
        return [query.path]
    ranking = query.ranking
    kinds = _kinds(registry, [ranking])
    period, ordinals = read_window(query, store)
    # A ranking that overflows (None) ranks as 0: it can neither be compared nor shared.
    parents = {query.path: _total(ranking, store.read(
        query.pk, [query.path], kinds, period, ordinals, buckets=False)[query.path],
        kinds) or 0}
    chosen: list[tuple[Path, float]] = []
    for _level in range(query.depth):
        candidates = [parent + (child,) for parent in parents
                      for child in store.children(query.pk, parent, since=query.since)]
        if not candidates:
            break
        _spend(store.settings, query, len(candidates), len(ordinals), "rank", budget)
        readings = store.read(query.pk, candidates, kinds, period, ordinals, buckets=False)
        kept = {}
        for path in candidates:
            total = _total(ranking, readings[path], kinds) or 0
            parent_total = parents[path[:-1]]
            if _shown(total, parent_total, query.threshold):
                kept[path] = total
        chosen.extend(kept.items())
        parents = kept
    chosen.sort(key=lambda item: (-item[1], item[0]))
    if query.limit is not None:
        chosen = chosen[: query.limit]
    return [query.path] + [path for path, _ in chosen]


def _spend(settings: Settings, query: Query, series: int, buckets: int, doing: str,
           budget: Budget | None) -> None:
    """A query reads at most MAX_QUERY_CELLS (series x buckets) to rank its dimensions, and
    as many to show them: past it, a 400 that says how to narrow it, rather than a worker
    busy (and growing) for minutes while counting waits. Within it, the cells are spent
    from ``budget`` (past HEAVY_CELLS, a heavy-query slot) before they are read."""
    if series * buckets > settings.max_query_cells:
        how = ("lower depth, or narrow since/until, or choose a coarser period" if doing ==
               "rank" else "set a limit, raise threshold, lower depth or ask fewer metrics")
        raise BadRequest("depth", query.depth,
                         f"this query would {doing} {series:,} series over {buckets:,} "
                         f"buckets, more than MAX_QUERY_CELLS ({settings.max_query_cells:,}) "
                         f"series x buckets: {how}")
    if budget is not None:
        budget.spend(series * buckets)


def _shown(total, parent_total, threshold: float) -> bool:
    if not total:
        return False
    if not parent_total:
        return True  # a parent that nets to zero: every moving child matters
    return abs(total) >= threshold * abs(parent_total)


def _window(query: Query, store: Store) -> tuple[range, list[int]]:
    tz = store.settings.tz
    ordinals = query.period.ordinals(query.since, query.until, tz)
    return ordinals, [int(query.period.start(o, tz) * 1000) for o in ordinals]


def read_window(query: Query, store: Store) -> tuple[Period, range]:
    """The period and buckets a query reads: its own, or, folding a zone's days from hours,
    the hours those days cover."""
    tz = store.settings.tz
    days = query.period.ordinals(query.since, query.until, tz)
    if query.source is None:
        return query.period, days
    first, end = query.period.start(days.start, tz), query.period.start(days.stop, tz)
    return query.source, query.source.ordinals(first, end - 1, tz)


def _folded(readings: dict, kinds: Mapping[str, str], query: Query, hours: range,
            days: range, tz) -> dict:
    """Readings of hours as readings of the days (in the query's zone) that hold them:
    sums added, a gauge's last value, timings' sketches merged; totals as they are (the
    window's hours are its days')."""
    day_of = [query.period.ordinal(query.source.start(hour, tz), tz) - days.start
              for hour in hours]
    folded: dict = {}
    for path, metrics in readings.items():
        folded[path] = {}
        for name, reading in metrics.items():
            kind = kinds.get(name, SUM)
            if kind == UNIQUE:
                raise BadRequest("tz", query.zone, f"{name} is a unique count: its days in "
                                 f"{query.zone} need day buckets of that zone (add it to "
                                 "TIMEZONES)")
            values: list = [None if kind == GAUGE else Sketch() if kind == TIMING else 0
                            for _ in days]
            for day, value in zip(day_of, reading.values, strict=False):
                if kind == GAUGE:
                    values[day] = value if value is not None else values[day]
                elif kind == TIMING:
                    values[day].merge(value)
                else:
                    values[day] += value
            folded[path][name] = Reading(values if reading.values else [], reading.total)
    return folded


def _header(query: Query) -> dict:
    return {
        "pk": query.pk,
        "dimension": list(query.path),
        "period": query.period.name.split("@")[0],  # as configured (and /periods lists it)
        **({"tz": query.zone} if query.zone else {}),
        "interval": query.period.interval,
        "since": int(query.since * 1000),
        "until": int(query.until * 1000),
    }


def read_selection(store: Store, query: Query, budget: Budget | None = None):
    """``(paths, bucket starts in ms, readings, the metrics' kinds)`` of everything a query
    shows."""
    registry = store.metric_kinds(query.pk)  # read once, for ranking and for showing
    kinds = _kinds(registry, query.metrics)  # checked before anything is read
    paths = select(store, query, registry, budget)
    ordinals, starts = _window(query, store)
    period, read = read_window(query, store)
    series = len(paths) * max(len(kinds), len(query.metrics))
    _spend(store.settings, query, series, len(read), "show", budget)
    readings = store.read(query.pk, paths, kinds, period, read)
    if query.source is not None:
        readings = _folded(readings, kinds, query, read, ordinals, store.settings.tz)
    return paths, starts, readings, kinds


def _series_label(path: Path, formula: Formula, several: bool) -> str:
    return f"{label(path)}: {formula.text}" if several else label(path)


def plotpoints(store: Store, query: Query, budget: Budget | None = None) -> dict:
    """Flot-ready series: one per shown dimension and metric, every bucket present."""
    paths, starts, readings, kinds = read_selection(store, query, budget)
    several = len(query.metrics) > 1
    series = []
    for path in paths:
        metrics = readings[path]
        for formula in query.metrics:
            values = values_of(formula, metrics, kinds, len(starts))
            series.append({
                "label": _series_label(path, formula, several),
                "dimension": list(path),
                "metric": formula.text,
                "data": [[ms, value] for ms, value in zip(starts, values, strict=True)],
                "total": _total(formula, metrics, kinds),
            })
    return {**_header(query), "series": series}


def values_by_path(store: Store, pk: str, paths: Sequence[Path], metrics: Sequence[Formula],
                   period: Period, since: float, until: float,
                   budget: Budget | None = None) -> dict[Path, list[list]]:
    """Each path's values of each of ``metrics``, bucket by bucket: what ``plotpoints``
    shows for each path at depth 0, read in one call for all of them (Graphite's globs ask
    for a thousand children at once: one read, not a thousand). ``len(paths) x metrics x
    buckets`` cells are spent from ``budget``; the caller bounds them."""
    kinds = _kinds(store.metric_kinds(pk), metrics)  # checked before anything is read
    ordinals = period.ordinals(since, until, store.settings.tz)
    if budget is not None:
        budget.spend(len(paths) * max(len(kinds), len(metrics)) * len(ordinals))
    readings = store.read(pk, list(paths), kinds, period, ordinals)
    return {path: [values_of(formula, readings[path], kinds, len(ordinals))
                   for formula in metrics] for path in paths}


def totals(store: Store, query: Query, budget: Budget | None = None) -> dict:
    """The summary numbers of the same selection: each shown dimension's metric totals."""
    paths, _starts, readings, kinds = read_selection(store, query, budget)
    rows = [{
        "label": label(path),
        "dimension": list(path),
        "totals": {f.text: _total(f, readings[path], kinds) for f in query.metrics},
    } for path in paths]
    return {**_header(query), "totals": rows}


def dimensions(store: Store, pk: str, path: Path) -> dict:
    """The children of a dimension, for drill-down."""
    return {
        "pk": pk,
        "dimension": list(path),
        "label": label(path),
        "children": [{"name": name, "dimension": [*path, name]}
                     for name in store.children(pk, path)],
    }
