"""Graphite's render and find API over HailWhale, so that Grafana's built-in Graphite data
source reads HailWhale with no plugin. The paths, targets and functions are pure
(hailwhale.graphite_paths, graphite_targets, graphite_series); this module walks the store's
tree (pks, children, metric names) as a token allows, and reads series through the query
layer (hailwhale.query.values_by_path, which evaluates as plotpoints does), so what
``/render`` answers is what ``/plotpoints`` does.

- **Paths**: ``pk.dimension....metric``, escapes as in hailwhale.graphite_paths. A path
  without a glob reads as ``/plotpoints`` would (zeros where nothing was counted); one with a
  glob lists what exists, its explicit segments too: the pks, each dimension's children
  (counted since the window's start), a pk's metrics.
- **Tokens**: a read token of pk ``shop`` (below ``["web"]``) sees only those paths: globs
  skip what it does not cover (and walk through ``web``'s ancestors to reach it); an explicit
  path it does not cover is a 403.
- **Period**: the finest configured period that still keeps ``from`` (and spans at most
  MAX_BUCKETS buckets); ``maxDataPoints``: adjacent buckets merged into as few points.
- **Bounds**: at most MAX_TARGETS targets, MAX_NODES names considered by globs, and
  MAX_QUERY_CELLS series x buckets read, spent from the query budget (heavy-query slots).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import auth
from . import query as queries
from .admission import Budget
from .aggregate import GAUGE, SUM, TIMING
from .config import Settings
from .dimensions import Path
from .errors import BadRequest
from .formulas import parse as parse_formula
from .formulas import split_ref
from .graphite_paths import compile_glob, escape, is_glob, join, split, unescape
from .graphite_series import Context, Grid, Series, evaluate
from .graphite_targets import parse_target, paths
from .periods import Period
from .store import Store

MAX_TARGETS = 100  # targets in one render
MAX_NODES = 10_000  # names one request's globs may consider
# The statistics /metrics/find lists under a timing (any percentile p0 to p100 reads too).
TIMING_LEAVES = ("count", "sum", "mean", "min", "max", "p50", "p90", "p95", "p99")
VERSION = "1.1.10"  # the Graphite API answered: Grafana then asks /functions for the list
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_NOT_ONE_METRIC = re.compile(r"[-+*/()\s]")


@dataclass(frozen=True)
class Node:
    """One node /metrics/find lists: a branch (a pk or a dimension) or a leaf (a metric)."""

    path: str  # the written path, pk first
    leaf: bool

    def as_dict(self) -> dict:
        """Graphite's treejson entry."""
        flag = int(not self.leaf)
        return {"text": self.path.rpartition(".")[2], "id": self.path, "leaf": int(self.leaf),
                "expandable": flag, "allowChildren": flag}


@dataclass(frozen=True)
class Window:
    """The buckets a render reads and the points they are summed into."""

    period: Period
    since: float
    until: float
    ordinals: range
    groups: tuple[tuple[int, int], ...]  # (point time, buckets in the point), in order
    step: int

    @property
    def times(self) -> tuple[int, ...]:
        return tuple(time for time, _ in self.groups)

    def consolidate(self, values: Sequence, how: str = "sum") -> tuple:
        """Each point's value from its buckets' (``how``: sum, last, min, max or average of
        those not null; null when all are)."""
        out, index = [], 0
        for _, size in self.groups:
            part = [v for v in values[index:index + size] if v is not None]
            index += size
            out.append(None if not part else part[0] if size == 1 else
                       _CONSOLIDATE[how](part))
        return tuple(out)


# How the buckets of one point make its value: counted metrics (and a timing's count and
# sum) add up exactly; a gauge is its value at the end; a timing's min and max are the
# smallest and largest; its mean and percentiles cannot be rebuilt from the buckets' own,
# so they are averaged, as Graphite's default consolidateBy does (an approximation).
_CONSOLIDATE = {"sum": sum, "last": lambda v: v[-1], "min": min, "max": max,
                "average": lambda v: sum(v) / len(v)}


def consolidation(kind: str, stat: str | None) -> str:
    """How ``maxDataPoints`` merges buckets of a metric of ``kind`` read as ``stat``."""
    if kind == GAUGE:
        return "last"
    if kind == TIMING:
        return stat if stat in ("min", "max") else "sum" if stat in ("count", "sum") else \
            "average"
    return "sum"


def choose_window(settings: Settings, since: float, until: float, now: float,
                  max_points: int | None) -> Window:
    """The finest period that keeps ``since`` (within MAX_BUCKETS), else the one that
    remembers longest; a window older than every retention starts where the longest
    retention does (nothing older is kept)."""
    tz = settings.tz
    longest = max(settings.periods, key=lambda p: p.retention)
    oldest = now - longest.retention - longest.interval
    if since < oldest < until:
        since = oldest
    ordered = sorted(settings.periods, key=lambda p: (p.interval, -p.retention))
    fits = [p for p in ordered
            if p.ordinal(until, tz) - p.ordinal(since, tz) + 1 <= settings.max_buckets]
    if not fits:
        raise BadRequest("from", since, f"the window spans more than MAX_BUCKETS "
                         f"({settings.max_buckets}) buckets of every period; narrow it")
    keeping = [p for p in fits if p.keeps(since, now, tz)]
    period = keeping[0] if keeping else max(fits, key=lambda p: p.retention)
    ordinals = period.ordinals(since, until, tz)
    size = 1 if not max_points or len(ordinals) <= max_points else \
        math.ceil(len(ordinals) / max_points)
    first = ordinals[0]
    # Points aligned to multiples of `size` buckets stay put as the window slides (no
    # jitter between refreshes), unless that makes one point too many.
    aligned = ordinals[-1] // size - first // size + 1 <= (max_points or len(ordinals))
    starts: dict[int, int] = {}
    for ordinal in ordinals:
        key = ordinal // size * size if aligned else first + (ordinal - first) // size * size
        starts[key] = starts.get(key, 0) + 1
    groups = tuple((int(period.start(key, tz)), count) for key, count in starts.items())
    return Window(period, since, until, ordinals, groups, period.interval * size)


@dataclass(frozen=True)
class Resolved:
    """One concrete series a path expression stands for."""

    pk: str
    path: Path
    metric: str

    @property
    def name(self) -> str:
        return join((self.pk, *self.path, self.metric))


class _Tree:
    """The store's tree as one request's grant sees it: each list read once, every name
    considered counted against MAX_NODES."""

    def __init__(self, store: Store, grant: auth.Grant, since: float | None, param: str):
        self.store, self.grant, self.since, self.param = store, grant, since, param
        self.spent = 0
        self._pks: list[str] | None = None
        self._children: dict[tuple[str, Path], list[str]] = {}
        self._kinds: dict[str, dict[str, str]] = {}
        self._metrics: dict[str, list[str]] = {}

    def _spend(self, names: int) -> None:
        self.spent += names + 1
        if self.spent > MAX_NODES:
            raise BadRequest(self.param, "", f"the patterns reach more than {MAX_NODES:,} "
                             "names; narrow them")

    def pks(self) -> list[str]:
        if self._pks is None:
            known = set(self.store.pks()) | (self.grant.pks - {auth.ANY_PK})
            self._pks = self.grant.visible_pks(sorted(known))
            self._spend(len(self._pks))
        return self._pks

    def children(self, pk: str, path: Path) -> list[str]:
        key = (pk, path)
        if key not in self._children:
            names = self.store.children(pk, path, since=self.since)
            self._spend(len(names))
            self._children[key] = [n for n in names if self.may_walk(path + (n,))]
        return self._children[key]

    def kinds(self, pk: str) -> dict[str, str]:
        """A pk's metric names and kinds (Store.metric_kinds)."""
        if pk not in self._kinds:
            self._kinds[pk] = self.store.metric_kinds(pk)
            self._spend(len(self._kinds[pk]))
        return self._kinds[pk]

    def metrics(self, pk: str) -> list[str]:
        """What a path may end with under ``pk``: each metric, a timing as its statistics
        (``latency:p99``), as /plotpoints names them."""
        if pk not in self._metrics:
            self._metrics[pk] = sorted(
                spelling for name, kind in self.kinds(pk).items()
                for spelling in ([f"{name}:{stat}" for stat in TIMING_LEAVES]
                                 if kind == TIMING else [name]))
        return self._metrics[pk]

    def may_walk(self, path: Path) -> bool:
        """Whether the grant covers ``path`` or it leads there (an ancestor of its prefix)."""
        return self.grant.covers_path(path) or tuple(self.grant.dims[:len(path)]) == path


def _pk(segment: str, settings: Settings, param: str) -> str:
    pk = unescape(segment, param)
    if len(pk) > settings.max_name_length or _CONTROL.search(pk):
        raise BadRequest(param, segment, f"a pk is at most {settings.max_name_length} "
                         "characters, with no control characters")
    return pk


def _name(segment: str, settings: Settings, param: str) -> str:
    name = unescape(segment, param)
    try:
        queries.parse_path([name], settings)  # a dimension name's own checks
    except BadRequest as exc:
        raise BadRequest(param, segment, exc.reason) from None
    return name


def _metric(segment: str, param: str) -> str:
    """The metric a path's last segment names: one name /plotpoints accepts as a metric
    (``hits``; whatever kinds it learns, such as ``latency:p99``), not a formula."""
    text = unescape(segment, param)
    if _NOT_ONE_METRIC.search(text) or len(parse_formula(text, param).names) != 1:
        raise BadRequest(param, segment, "the last segment names one metric; combine metrics "
                         "with functions such as divideSeries or sumSeries")
    return text


def _prefixes(tree: _Tree, segments: Sequence[str], settings: Settings, listing: bool):
    """``(pk, dimension path, reached through a glob)`` for each place the segments name.
    When ``listing`` (find, expand), explicit names must exist, as Graphite's do, and an
    explicit place the grant does not lead to is a 403; a render reads explicit places as
    they are."""
    param = tree.param
    first = segments[0]
    if is_glob(first):
        glob = compile_glob(first, param)
        places = [(pk, (), True) for pk in tree.pks() if glob.match(escape(pk))]
    else:
        pk = _pk(first, settings, param)
        auth.require(tree.grant, "read", pk)
        places = [(pk, (), False)] if not listing or pk in tree.pks() else []
    for segment in segments[1:]:
        reached = []
        if is_glob(segment):
            glob = compile_glob(segment, param)
            for pk, path, _ in places:
                reached += [(pk, path + (child,), True) for child in tree.children(pk, path)
                            if glob.match(escape(child))]
        else:
            name = _name(segment, settings, param)
            for pk, path, via_glob in places:
                place = path + (name,)
                if listing and not tree.may_walk(place):
                    if via_glob:
                        continue
                    auth.require(tree.grant, "read", pk, [place])
                if not listing or name in tree.children(pk, path):
                    reached.append((pk, place, via_glob))
        places = reached
    return places


def _check_depth(segments: Sequence[str], settings: Settings, text: str, param: str) -> None:
    if len(segments) > settings.max_depth + 2:
        raise BadRequest(param, text, f"a path is a pk, at most {settings.max_depth} "
                         "dimension names and a metric")


def resolve(tree: _Tree, text: str, settings: Settings) -> list[Resolved]:
    """The concrete series of one path expression of a render."""
    segments = split(text, tree.param)
    if len(segments) < 2:
        raise BadRequest(tree.param, text, "a path is the pk, the dimension names, and the "
                         "metric last: shop.web.hits (~.hits for the default pk)")
    _check_depth(segments, settings, text, tree.param)
    last = segments[-1]
    glob = compile_glob(last, tree.param) if is_glob(last) else None
    metric = None if glob else _metric(last, tree.param)
    found = []
    # A pattern lists what exists (its explicit names too, as /metrics/find); an explicit
    # path reads as /plotpoints does, zeros where nothing was counted.
    listing = any(map(is_glob, segments))
    for pk, path, via_glob in _prefixes(tree, segments[:-1], settings, listing):
        if not tree.grant.covers_path(path):
            if via_glob or glob:
                continue  # a glob sees only what the token covers
            auth.require(tree.grant, "read", pk, [path])
        if glob:
            found += [Resolved(pk, path, m) for m in tree.metrics(pk) if glob.match(escape(m))]
        else:
            found.append(Resolved(pk, path, metric))
    return found


def nodes(store: Store, grant: auth.Grant, settings: Settings, pattern: str,
          since: float | None = None, param: str = "query") -> list[Node]:
    """The nodes a /metrics/find pattern matches: branches first, then leaves, each sorted,
    and, as graphite-web's treejson, one of each name (``shop.*.hits`` lists ``hits`` once,
    as the next segment to choose); a name that is both a dimension and a metric is listed
    as each."""
    auth.require(grant, "read")
    tree = _Tree(store, grant, since, param)
    seen: set[tuple[str, bool]] = set()
    listed = []
    for node in _nodes(tree, pattern, settings):
        key = (node.path.rpartition(".")[2], node.leaf)
        if key not in seen:
            seen.add(key)
            listed.append(node)
    return listed


def _nodes(tree: _Tree, pattern: str, settings: Settings) -> list[Node]:
    segments = split(pattern, tree.param)
    _check_depth(segments, settings, pattern, tree.param)
    *parents, last = segments
    glob = compile_glob(last, tree.param)
    if not parents:
        return [Node(written, False) for written in sorted(map(escape, tree.pks()))
                if glob.match(written)]
    branches, leaves = {}, {}
    for pk, path, _ in _prefixes(tree, parents, settings, listing=True):
        base = join((pk, *path))
        if len(path) < settings.max_depth:
            for child in tree.children(pk, path):
                if glob.match(escape(child)):
                    branches[f"{base}.{escape(child)}"] = None
        if tree.grant.covers_path(path):
            for metric in tree.metrics(pk):
                if glob.match(escape(metric)):
                    leaves[f"{base}.{escape(metric)}"] = None
    return [Node(path, False) for path in sorted(branches)] + \
        [Node(path, True) for path in sorted(leaves)]


def expand(store: Store, grant: auth.Grant, settings: Settings, patterns: Iterable[str],
           since: float | None = None, leaves_only: bool = False,
           group_by_expr: bool = False) -> dict:
    """Graphite's /metrics/expand: the paths each pattern matches, ``{"results": [...]}``
    (sorted, all patterns together; by pattern with ``group_by_expr``)."""
    auth.require(grant, "read")
    tree = _Tree(store, grant, since, "query")
    found = {pattern: sorted({n.path for n in _nodes(tree, pattern, settings)
                              if n.leaf or not leaves_only}) for pattern in patterns}
    if group_by_expr:
        return {"results": found}
    return {"results": sorted({path for paths_ in found.values() for path in paths_})}


def render(store: Store, grant: auth.Grant, settings: Settings, targets: Sequence[str],
           since: float, until: float, now: float, max_points: int | None = None,
           budget: Budget | None = None) -> list[Series]:
    """The series of Graphite targets over ``[since, until]``, in order."""
    auth.require(grant, "read")
    if len(targets) > MAX_TARGETS:
        raise BadRequest("target", targets[MAX_TARGETS], f"at most {MAX_TARGETS} targets")
    trees = [parse_target(text) for text in targets]
    window = choose_window(settings, since, until, now, max_points)
    tree = _Tree(store, grant, window.since, "target")
    expressions = list(dict.fromkeys(p for node in trees for p in paths(node)))
    resolved = {text: resolve(tree, text, settings) for text in expressions}
    wanted = list(dict.fromkeys(r for found in resolved.values() for r in found))
    cells = len(wanted) * len(window.ordinals)
    if cells > settings.max_query_cells:
        raise BadRequest("target", expressions[:3], f"these targets would read {len(wanted):,} "
                         f"series over {len(window.ordinals):,} buckets, more than "
                         f"MAX_QUERY_CELLS ({settings.max_query_cells:,}): narrow the globs, "
                         "the window or use a coarser period")
    values = _read(store, window, wanted, tree, budget)
    fetched = {text: [Series(r.name, text, window.times, values[r], window.step)
                      for r in found] for text, found in resolved.items()}
    context = Context(Grid(window.times, window.step))
    return [series for node in trees for series in evaluate(node, fetched.__getitem__, context)]


def _read(store: Store, window: Window, wanted: Sequence[Resolved], tree: _Tree,
          budget: Budget | None) -> dict[Resolved, tuple]:
    """Each series' points, evaluated by /plotpoints' own code (query.values_by_path): one
    read per pk and set of metrics, for all the dimension paths that ask for them."""
    metrics_of: dict[tuple[str, Path], list[str]] = {}
    for r in wanted:
        metrics_of.setdefault((r.pk, r.path), []).append(r.metric)
    groups: dict[tuple[str, tuple[str, ...]], list[Path]] = {}
    for (pk, path), metrics in metrics_of.items():
        groups.setdefault((pk, tuple(metrics)), []).append(path)
    out: dict[Resolved, tuple] = {}
    for (pk, metrics), paths_ in groups.items():
        kinds = tree.kinds(pk)
        try:
            found = queries.values_by_path(
                store, pk, paths_, [parse_formula(m, "target") for m in metrics],
                window.period, window.since, window.until, budget)
        except BadRequest as exc:  # a statistic the metric's kind has not, say
            raise BadRequest("target", exc.value, exc.reason) from None
        for path, columns in found.items():
            for metric, values in zip(metrics, columns, strict=True):
                name, stat = split_ref(metric)
                how = consolidation(kinds.get(name, SUM), stat)
                out[Resolved(pk, path, metric)] = window.consolidate(values, how)
    return out
