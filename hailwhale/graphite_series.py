"""Graphite's series functions over HailWhale's buckets, and the evaluation of a target tree.
Pure, no Redis: the paths of a tree are read beforehand and handed in as ``fetch``.

A series is a name, the path expression it came from (Graphite's ``pathExpression``), the
start time of each point (a bucket's, or a group of buckets' when ``maxDataPoints`` merged
them) and a value per point. Names follow Graphite's (``sumSeries(shop.*.hits)``,
``scale(shop.hits,10)``), so dashboards built against Graphite read the same.

Where HailWhale differs from Graphite, it is on purpose and documented in the README:
``divideSeries`` divides by zero as HailWhale's formulas do (0, where Graphite answers null),
so ``divideSeries(shop.dollars, shop.hits)`` is ``/plotpoints``' ``dollars/hits``.
"""

from __future__ import annotations

import math
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from .errors import BadRequest
from .graphite_targets import Call, Node, Path, Value, parse_interval, parse_target

Number = int | float
REGEX_BUDGET = 5_000_000  # aliasSub's estimated regex steps, over all names of a request
MAX_PATTERN = 200  # characters in an aliasSub pattern
_FLOAT_MAX = sys.float_info.max


@dataclass(frozen=True)
class Series:
    """One series: ``times`` (unix seconds, a point's start) and a value per point."""

    name: str
    path: str
    times: tuple[int, ...]
    values: tuple[Number | None, ...]
    step: int

    def datapoints(self) -> list[list]:
        """Graphite's ``[[value, time], ...]``: values a float cannot hold are null."""
        return [[_shown(value), time] for value, time in zip(self.values, self.times,
                                                               strict=True)]


@dataclass(frozen=True)
class Grid:
    """The points every fetched series has in this request (constantLine draws on them)."""

    times: tuple[int, ...]
    step: int


@dataclass
class Context:
    """What the functions of one request share: the grid, and aliasSub's regex budget."""

    grid: Grid
    regex_spent: int = 0


@dataclass(frozen=True)
class Param:
    """One parameter of a function, as Graphite's /functions describes it."""

    name: str
    type: str
    required: bool = True
    multiple: bool = False
    default: object = None
    options: tuple = ()


@dataclass(frozen=True)
class Function:
    name: str
    implementation: Callable
    group: str
    params: tuple[Param, ...]
    description: str = field(default="")


FUNCTIONS: dict[str, Function] = {}


def _function(name: str, group: str, *params: Param, aliases: Sequence[str] = ()):
    def register(implementation: Callable) -> Callable:
        description = " ".join((implementation.__doc__ or "").split())
        for spelling in (name, *aliases):
            FUNCTIONS[spelling] = Function(spelling, implementation, group, params, description)
        return implementation

    return register


# -- evaluation -------------------------------------------------------------------------
def evaluate(node: Node, fetch: Callable[[str], list[Series]], context: Context,
             param: str = "target") -> list[Series]:
    """The series a target tree stands for; ``fetch`` gives those of a path expression."""
    if isinstance(node, Path):
        return fetch(node.text)
    if isinstance(node, Value):
        raise BadRequest(param, node.text, "a series list is expected here, not a literal")
    function = FUNCTIONS.get(node.name)
    if function is None:
        raise BadRequest(param, node.name, f"unknown function; HailWhale knows "
                         f"{', '.join(sorted(FUNCTIONS))}")
    return function.implementation(context, *_bind(function, node, fetch, context, param))


def _bind(function: Function, call: Call, fetch, context: Context, param: str) -> list:
    """The arguments of ``call`` in ``function``'s order, converted to their types."""
    bound: dict[str, object] = {}
    args = list(call.args)
    for spec in function.params:
        if spec.multiple:
            bound[spec.name] = [_convert(function, spec, a, fetch, context, param) for a in args]
            args = []
        elif args:
            bound[spec.name] = _convert(function, spec, args.pop(0), fetch, context, param)
    if args:
        raise BadRequest(param, function.name, f"takes at most {len(function.params)} "
                         f"arguments, got {len(call.args)}")
    names = {spec.name: spec for spec in function.params}
    for name, value in call.kwargs:
        spec = names.get(name)
        if spec is None or spec.multiple:
            raise BadRequest(param, name, f"{function.name} has no keyword argument {name}")
        if name in bound:
            raise BadRequest(param, name, f"{function.name}: {name} is given twice")
        bound[name] = _convert(function, spec, value, fetch, context, param)
    out: list = []
    for spec in function.params:
        if spec.multiple:
            values = bound.get(spec.name, [])
            if spec.required and not values:
                raise BadRequest(param, function.name, f"needs at least one {spec.name}")
            out.extend(values)
        elif spec.name in bound:
            out.append(bound[spec.name])
        elif spec.required:
            raise BadRequest(param, function.name, f"needs its argument {spec.name}")
        else:
            out.append(spec.default)
    return out


def _convert(function: Function, spec: Param, node, fetch, context: Context, param: str):
    where = f"{function.name}: {spec.name}"
    if spec.type == "seriesList":
        if isinstance(node, Value):
            raise BadRequest(param, node.text, f"{where} is a series list, not a literal")
        return evaluate(node, fetch, context, param)
    if not isinstance(node, Value):
        raise BadRequest(param, getattr(node, "text", getattr(node, "name", "")),
                         f"{where} is a {spec.type}, not a series list")
    value = node.value
    if spec.type in ("float", "integer", "node"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (spec.type != "float" and not isinstance(value, int)):
            raise BadRequest(param, node.text, f"{where} must be a "
                             f"{'number' if spec.type == 'float' else 'whole number'}")
        return value
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise BadRequest(param, node.text, f"{where} must be true or false")
        return value
    if not isinstance(value, str):
        raise BadRequest(param, node.text, f"{where} must be a quoted string")
    if spec.options and value not in spec.options:
        raise BadRequest(param, value, f"{where} is one of {', '.join(spec.options)}")
    return value


# -- helpers ----------------------------------------------------------------------------
def _shown(value: Number | None) -> Number | None:
    """``value`` as JSON can carry it: None (null) for what a float cannot hold."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:
        return None
    return value


def _present(values: Iterable[Number | None]) -> list[Number]:
    return [value for value in values if value is not None]


_AGGREGATES: dict[str, Callable[[list], Number]] = {
    "sum": sum, "total": sum,
    "average": lambda v: sum(v) / len(v), "avg": lambda v: sum(v) / len(v),
    "median": statistics.median, "max": max, "min": min,
    "last": lambda v: v[-1], "current": lambda v: v[-1], "first": lambda v: v[0],
    "count": len, "range": lambda v: max(v) - min(v),
}
AGGREGATE_NAMES = tuple(_AGGREGATES)


def _aggregate(name: str, values: list[Number | None]) -> Number | None:
    present = _present(values)
    if not present:
        return None
    try:
        return _AGGREGATES[name](present)
    except OverflowError:
        return None


def _path_expressions(series: Sequence[Series]) -> str:
    return ",".join(dict.fromkeys(s.path for s in series))


def _combine(series: list[Series], how: str, label: str) -> list[Series]:
    """One series of ``how`` over ``series`` at each time any of them has."""
    if not series:
        return []
    times = sorted({t for s in series for t in s.times})
    at = [dict(zip(s.times, s.values, strict=True)) for s in series]
    values = tuple(_aggregate(how, [points.get(t) for points in at]) for t in times)
    name = f"{label}({_path_expressions(series)})"
    return [Series(name, name, tuple(times), values, max(s.step for s in series))]


def _first_path(name: str) -> str:
    """The first path in a series name, as Graphite's _getFirstPathExpression finds it; the
    name itself when it holds none (an alias)."""
    try:
        node = parse_target(name)
    except BadRequest:
        return name
    while isinstance(node, Call) and node.args:
        node = node.args[0]
    return node.text if isinstance(node, Path) else name


def _each(series: list[Series], name: Callable[[Series], str],
          value: Callable[[Number], Number], rename_path: bool = True) -> list[Series]:
    out = []
    for s in series:
        new = name(s)
        values = tuple(None if v is None else _safe(value, v) for v in s.values)
        out.append(replace(s, name=new, path=new if rename_path else s.path, values=values))
    return out


def _safe(function: Callable[[Number], Number], value: Number) -> Number | None:
    try:
        return function(value)
    except OverflowError:
        return None


# -- the functions ----------------------------------------------------------------------
_SERIES = Param("seriesList", "seriesList")
_SERIES_LISTS = Param("seriesLists", "seriesList", multiple=True)


@_function("sumSeries", "Combine", _SERIES_LISTS, aliases=("sum",))
def sum_series(context: Context, *series: list[Series]) -> list[Series]:
    """Adds the series together point by point: one series of their sum (a rolled-up parent
    already holds its children's sum: shop.hits is every event of shop)."""
    return _combine([s for group in series for s in group], "sum", "sumSeries")


@_function("averageSeries", "Combine", _SERIES_LISTS, aliases=("avg",))
def average_series(context: Context, *series: list[Series]) -> list[Series]:
    """The mean of the series at each point."""
    return _combine([s for group in series for s in group], "average", "averageSeries")


@_function("maxSeries", "Combine", _SERIES_LISTS)
def max_series(context: Context, *series: list[Series]) -> list[Series]:
    """The largest of the series at each point."""
    return _combine([s for group in series for s in group], "max", "maxSeries")


@_function("minSeries", "Combine", _SERIES_LISTS)
def min_series(context: Context, *series: list[Series]) -> list[Series]:
    """The smallest of the series at each point."""
    return _combine([s for group in series for s in group], "min", "minSeries")


@_function("divideSeries", "Combine", Param("dividendSeriesList", "seriesList"),
           Param("divisorSeries", "seriesList"))
def divide_series(context: Context, dividends: list[Series], divisors: list[Series]):
    """Divides each dividend by the one divisor series, point by point; a point whose divisor
    is 0 is 0, as in HailWhale's formulas (divideSeries(x.dollars, x.hits) is dollars/hits)."""
    if not divisors:
        return [replace(s, name=f"divideSeries({s.name},MISSING)",
                        path=f"divideSeries({s.name},MISSING)",
                        values=tuple(None for _ in s.values)) for s in dividends]
    if len(divisors) > 1:
        raise BadRequest("target", [s.name for s in divisors][:5], "divideSeries: the divisor "
                         f"must be exactly one series (got {len(divisors)}); sum them first")
    divisor = divisors[0]
    by_time = dict(zip(divisor.times, divisor.values, strict=True))
    out = []
    for s in dividends:
        name = f"divideSeries({s.name},{divisor.name})"
        values = tuple(_divide(v, by_time.get(t)) for t, v in zip(s.times, s.values,
                                                                   strict=True))
        out.append(replace(s, name=name, path=name, values=values))
    return out


def _divide(a: Number | None, b: Number | None) -> Number | None:
    if a is None or b is None:
        return None
    if not b:
        return 0
    try:
        return a / b
    except OverflowError:  # int / int past float's range
        return None


@_function("scale", "Transform", _SERIES, Param("factor", "float"))
def scale(context: Context, series: list[Series], factor: Number) -> list[Series]:
    """Multiplies every point by a constant."""
    return _each(series, lambda s: f"scale({s.name},{float(factor):g})", lambda v: v * factor)


@_function("offset", "Transform", _SERIES, Param("factor", "float"))
def offset(context: Context, series: list[Series], factor: Number) -> list[Series]:
    """Adds a constant to every point."""
    return _each(series, lambda s: f"offset({s.name},{float(factor):g})", lambda v: v + factor)


@_function("alias", "Alias", _SERIES, Param("newName", "string"))
def alias(context: Context, series: list[Series], new_name: str) -> list[Series]:
    """Names every series of the list newName in the legend."""
    return [replace(s, name=new_name) for s in series]


@_function("aliasByNode", "Alias", _SERIES, Param("nodes", "node", multiple=True))
def alias_by_node(context: Context, series: list[Series], *nodes: int) -> list[Series]:
    """Names each series by the nodes (0 is the pk, then the dimensions, last the metric;
    negative from the end) of the first path in its name, joined by dots."""
    out = []
    for s in series:
        pieces = _first_path(s.name).split(".")
        try:
            out.append(replace(s, name=".".join(pieces[n] for n in nodes)))
        except IndexError:
            raise BadRequest("target", list(nodes), f"aliasByNode: {'.'.join(pieces)} has "
                             f"{len(pieces)} nodes (0 to {len(pieces) - 1})") from None
    return out


@_function("aliasByMetric", "Alias", _SERIES)
def alias_by_metric(context: Context, series: list[Series]) -> list[Series]:
    """Names each series by the last node of its path: the metric."""
    return [replace(s, name=_first_path(s.name).split(".")[-1]) for s in series]


@_function("aliasSub", "Alias", _SERIES, Param("search", "string"), Param("replace", "string"))
def alias_sub(context: Context, series: list[Series], search: str, replacement: str):
    """Runs each name through a regular expression search and replace (Python's syntax, as
    Graphite's: \\1 in the replacement is the first group). Patterns are bounded: no
    backreferences, no repeated groups, and a budget of regex work per request."""
    exponent = _pattern_cost(search)
    try:
        pattern = re.compile(search)
    except (re.error, RecursionError, OverflowError) as exc:
        raise BadRequest("target", search, f"aliasSub: not a regular expression: {exc}") \
            from None
    out = []
    for s in series:
        context.regex_spent += max(1, len(s.name)) ** exponent
        if context.regex_spent > REGEX_BUDGET:
            raise BadRequest("target", search, "aliasSub: this pattern would take too long "
                             "over these names; use fewer repetitions or anchor it with ^")
        try:
            out.append(replace(s, name=pattern.sub(replacement, s.name)))
        except (re.error, IndexError) as exc:
            raise BadRequest("target", replacement, f"aliasSub: bad replacement: {exc}") \
                from None
    return out


_FIXED = re.compile(r"\{\d+\}")  # {n}: exactly n, no choice to backtrack over
_RANGE = re.compile(r"\{\d*,\d*\}")


def _pattern_cost(pattern: str) -> int:
    """The exponent of the worst-case work of a backtracking search with ``pattern`` over a
    name of n characters (n ** exponent): one more than its repetitions (``*``, ``+``, ``?``,
    ``{m,n}``), one fewer when anchored at the start. Refuses what can take exponential
    time whatever the name: backreferences, and repeated groups such as ``(a+)+``."""
    if len(pattern) > MAX_PATTERN:
        raise BadRequest("target", pattern, f"aliasSub: a pattern is at most {MAX_PATTERN} "
                         "characters")
    repetitions, index, previous = 0, 0, ""
    while index < len(pattern):
        char, length, repeats = pattern[index], 1, False
        if char == "\\":
            if pattern[index + 1:index + 2].isdigit() or pattern[index + 1:index + 3] == "g<":
                raise BadRequest("target", pattern, "aliasSub: backreferences are not allowed")
            length, kind = 2, "atom"
        elif char == "[":  # a class: ] right after [ or [^ is a literal
            end = pattern.find("]", index + (3 if pattern[index + 1:index + 2] == "^" else 2))
            length, kind = (end if end > 0 else len(pattern)) - index + 1, "atom"
        elif pattern.startswith("(?P=", index):
            raise BadRequest("target", pattern, "aliasSub: backreferences are not allowed")
        elif char in "*+?" and previous not in ("", "(", "|"):
            repeats, kind = previous != "repeat", "repeat"  # *? +? ??: one, lazily
        elif found := (_FIXED.match(pattern, index) or _RANGE.match(pattern, index)):
            length, repeats, kind = len(found.group(0)), "," in found.group(0), "repeat"
        else:
            kind = char if char in "()|" else "atom"
        if kind == "repeat" and previous == ")":
            raise BadRequest("target", pattern, "aliasSub: a repeated group such as (a+)+ is "
                             "not allowed (it can take exponential time)")
        repetitions += repeats
        previous = kind
        index += length
    anchored = pattern.startswith(("^", "(^", "(?:^"))
    return max(1, repetitions + (0 if anchored else 1))


@_function("summarize", "Transform", _SERIES,
           Param("intervalString", "interval", options=()),
           Param("func", "aggFunc", required=False, default="sum", options=AGGREGATE_NAMES),
           Param("alignToFrom", "boolean", required=False, default=False))
def summarize(context: Context, series: list[Series], interval_text: str, func: str = "sum",
              align_to_from: bool = False) -> list[Series]:
    """Groups the points into intervals (1h, 1d...) aligned to the epoch, or to the first
    point with alignToFrom, and keeps one value each: sum (the events of each interval, as a
    coarser period counts them), avg, median, max, min, first, last, count or range of the
    points in it."""
    interval = parse_interval(interval_text)
    out = []
    for s in series:
        origin = s.times[0] if align_to_from and s.times else 0
        groups: dict[int, list] = {}
        for t, v in zip(s.times, s.values, strict=True):
            groups.setdefault(t - (t - origin) % interval, []).append(v)
        flag = ", true" if align_to_from else ""
        name = f'summarize({s.name}, "{interval_text}", "{func}"{flag})'
        out.append(Series(name, name, tuple(groups),
                          tuple(_aggregate(func, values) for values in groups.values()),
                          interval))
    return out


@_function("constantLine", "Special", Param("value", "float"))
def constant_line(context: Context, value: Number) -> list[Series]:
    """A horizontal line at value across the graph (Grafana's "Save & test" draws
    constantLine(100))."""
    grid = context.grid
    return [Series(str(value), f"constantLine({value})", grid.times,
                   tuple(value for _ in grid.times), grid.step)]


def describe() -> dict:
    """The functions as Graphite's ``/functions`` lists them (Grafana's query editor offers
    these and only these)."""
    out = {}
    for name, function in sorted(FUNCTIONS.items()):
        params = []
        for spec in function.params:
            entry: dict = {"name": spec.name, "type": spec.type, "required": spec.required}
            if spec.multiple:
                entry["multiple"] = True
            if spec.default is not None:
                entry["default"] = spec.default
            if spec.options:
                entry["options"] = list(spec.options)
            params.append(entry)
        signature = ", ".join(f"*{p.name}" if p.multiple else p.name for p in function.params)
        out[name] = {"name": name, "function": f"{name}({signature})",
                     "description": function.description, "module": __name__,
                     "group": function.group, "params": params}
    return out
