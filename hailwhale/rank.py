"""The children that matter (issue 12): which descendants of a dimension are important.

``rank_children`` is the rule, a pure function of each path's totals; ``answer`` and
``ranked`` read those totals through the store for ``GET /rank`` and ``HailWhale.rank``.

Every descendant is compared with the dimension ranked (its *parent* below), as the
original HailWhale did, so a grandchild's importance is measured against what was asked
about, not against its own small parent:

* **A summed value** (``dollars``, ``hits``, ``clicks+shares``): a child is important when it
  holds more than MIN_EVENTS events (``hits``) and more than THRESHOLD of the parent's total
  (in absolute value). A descendant stops being important when the children that pass that
  rule explain it: what they leave of its total is under THRESHOLD of the parent's.
* **A ratio** (a formula whose last operation is a division by metrics, ``dollars/visitors``):
  a child is important when its ratio differs from the parent's by more than THRESHOLD (of
  the parent's ratio) with more than MIN_DENOMINATOR under the denominator. A descendant
  stops being important when what its passing children leave (numerator and denominator)
  would not pass the rule itself.

Only children in the answer explain their parent: with one level (``recursive=False``)
nothing is explained. ``significance`` is a z-score beside the rule (see ``_sum`` and
``_ratio``): sums hold no variances, so it rests on a stated model, described there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import NamedTuple

from .admission import Budget
from .config import Settings
from .dimensions import Path
from .errors import BadRequest
from .formulas import Formula, parse
from .periods import Period

# The helpers /plotpoints ranks its children with, so /rank checks a formula's metrics,
# evaluates totals and bounds its reads exactly as they do.
from .query import (
    Query,
    _header,
    _integer,
    _kinds,
    _spend,
    _total,
    parse_path,
    read_window,
    refuse_unknown,
    window_of,
)
from .store import Store

THRESHOLD = 0.1  # the share of the parent's total, or of its ratio, that matters
MIN_EVENTS = 10  # a summed child needs more events than this
MIN_DENOMINATOR = 5  # a ratio's child needs more than this under the denominator
HITS = parse("hits")  # the events: every event counts hits
KNOWN = {"pk", "category", "dimensions", "dimension", "value", "metrics", "period", "since",
         "until", "recursive", "depth", "tz"}
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class Totals(NamedTuple):
    """What the rule reads of one path over the window: the value's total (a ratio's
    numerator), its events (``hits``), and a ratio's denominator (None for a sum)."""

    numerator: float
    events: float
    denominator: float | None = None


def rank_children(totals: Mapping[Path, Totals], root: Path) -> dict[Path, dict]:
    """Every path of ``totals`` below ``root`` (whose totals are there too), ranked against
    ``root``: ``{"important", "score", "difference", "effect", "value", "count",
    "significance"}`` each, the important first, then by score. A ratio when the totals
    carry a denominator. Pure: no store."""
    parent = totals[root]
    ratio = parent.denominator is not None
    measure = _ratio if ratio else _sum
    below = {path: t for path, t in totals.items()
             if len(path) > len(root) and path[:len(root)] == root}
    rows = {path: measure(t, parent) for path, t in below.items()}
    passing: dict[Path, list[Totals]] = {}
    for path, row in rows.items():
        if row["important"] and path[:-1] in rows:
            passing.setdefault(path[:-1], []).append(below[path])
    for path, row in rows.items():
        # Explained by the children that pass the rule, whether or not they are explained in
        # turn: a grandchild that explains its parent explains the grandparent too.
        if row["important"] and _explained(below[path], passing.get(path, []), parent):
            row["important"] = False
    order = sorted(rows, key=lambda p: (not rows[p]["important"], -(rows[p]["score"] or 0), p))
    return {path: {name: _finite(value) for name, value in rows[path].items()}
            for path in order}


def _sum(child: Totals, parent: Totals) -> dict:
    """A summed value's row. ``significance``: how many standard errors the child's share
    lies above THRESHOLD, under a binomial model of the share with the parent's value in
    units of its mean per event (at least 1, so counts such as hits are their events):
    ``(|share| - THRESHOLD) / sqrt(THRESHOLD * (1 - THRESHOLD) / units)``."""
    total, value = parent.numerator, child.numerator
    share = value / total if total else None
    units = min(abs(total), parent.events) if parent.events else abs(total)
    return {
        "important": child.events > MIN_EVENTS and _passes(value, total),
        "score": abs(share) if share is not None else None,
        "difference": share,
        "effect": value,
        "value": value,
        "count": child.events,
        "significance": (abs(share) - THRESHOLD) / math.sqrt(
            THRESHOLD * (1 - THRESHOLD) / units) if share is not None and units else None,
    }


def _ratio(child: Totals, parent: Totals) -> dict:
    """A ratio's row. ``significance``: the child's ratio minus the rest of the parent's
    (the parent without the child) over its standard error, the numerator a Poisson count
    in units ``u`` of the parent's numerator per event (at least 1: a count such as clicks is
    Poisson in itself; an amount such as dollars as if each event carried the mean), both
    rates the parent's ``R`` under the null: ``(r - r') / sqrt(u |R| (1/b + 1/b'))``."""
    top, bottom = parent.numerator, parent.denominator or 0
    rate = top / bottom if bottom else 0
    mine_top, mine_bottom = child.numerator, child.denominator or 0
    mine = mine_top / mine_bottom if mine_bottom else 0
    effect = mine_top - rate * mine_bottom
    rest_top, rest_bottom = top - mine_top, bottom - mine_bottom
    unit = max(1.0, abs(top) / parent.events) if parent.events else 1.0
    significance = None
    if mine_bottom > 0 and rest_bottom > 0 and rate:
        significance = (mine - rest_top / rest_bottom) / math.sqrt(
            unit * abs(rate) * (1 / mine_bottom + 1 / rest_bottom))
    return {
        "important": _ratio_passes(mine_top, mine_bottom, rate),
        "score": abs(effect) / abs(top) if top else None,
        "difference": (mine - rate) / abs(rate) if rate else None,
        "effect": effect,
        "value": mine,
        "count": mine_bottom,
        "significance": significance,
    }


def _passes(value: float, total: float) -> bool:
    """More than THRESHOLD of ``total``; of a total that nets to zero, anything moving."""
    return abs(value) > THRESHOLD * abs(total) if total else value != 0


def _ratio_passes(top: float, bottom: float, rate: float) -> bool:
    if bottom <= MIN_DENOMINATOR:
        return False
    return _passes(top / bottom - rate, rate)


def _explained(node: Totals, children: list[Totals], parent: Totals) -> bool:
    """Whether what ``children`` leave of ``node`` no longer matters by itself."""
    left = node.numerator - sum(c.numerator for c in children)
    if parent.denominator is None:
        return abs(left) < THRESHOLD * abs(parent.numerator)
    left_bottom = (node.denominator or 0) - sum(c.denominator or 0 for c in children)
    bottom = parent.denominator
    return not _ratio_passes(left, left_bottom, parent.numerator / bottom if bottom else 0)


def _finite(value):
    """JSON carries no NaN or Infinity: a float past its range (huge sums) is None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- reading -----------------------------------------------------------------------------
def parse_rank(params: Mapping, settings: Settings, now: float) -> Query:
    """The Query a /rank request asks: its one value formula in ``metrics``, and ``depth``
    the levels ranked (``recursive``, the default, is every level). Unknown parameters are
    refused, as /count refuses them (names starting with _ are ignored: cache busters)."""
    refuse_unknown(params, KNOWN)
    path = parse_path(params.get("dimensions", params.get("dimension")), settings)
    period, since, until, source, zone = window_of(params, settings, now)
    pk = params.get("pk", params.get("category")) or ""
    return Query(str(pk), path, (value_formula(params),), period, since, until,
                 _depth(params, settings), source=source, zone=zone)


def value_formula(params: Mapping) -> Formula:
    """The one metric or formula ranked: ``value`` (or ``metrics``, /plotpoints' name)."""
    given = [name for name in ("value", "metrics") if params.get(name) not in (None, "")]
    if len(given) > 1:
        raise BadRequest("metrics", params["metrics"], "value and metrics name the same "
                         "thing: give one")
    name = given[0] if given else "value"
    text = params.get(name) or "hits"
    if isinstance(text, str) and ("," in text or text.strip().startswith("[")):
        raise BadRequest(name, text, "rank reads one metric or formula, such as dollars or "
                         "dollars/visitors")
    return parse(text, name)


def _depth(params: Mapping, settings: Settings) -> int:
    if params.get("depth") not in (None, ""):
        if params.get("recursive") not in (None, ""):
            raise BadRequest("recursive", params["recursive"], "give recursive or depth, "
                             "not both")
        return _integer(params, "depth", 1, 1, settings.max_depth)
    return settings.max_depth if recursive_flag(params.get("recursive")) else 1


def recursive_flag(value) -> bool:
    """``recursive`` as sent: true (the default) or false, 1 or 0, yes or no."""
    if value is None or value == "" or isinstance(value, bool):
        return value is not False
    flag = _FLAGS.get(str(value).strip().lower())
    if flag is None:
        raise BadRequest("recursive", value, "must be true or false")
    return flag


def read_totals(store: Store, query: Query,
                budget: Budget | None = None) -> dict[Path, Totals]:
    """The Totals of the dimension and of its descendants ``query.depth`` levels down (those
    seen since the window's start), level by level, each level in one store read; the cells
    read are spent from ``budget`` as /plotpoints' ranking spends them."""
    value = query.metrics[0]
    parts = value.division()
    formulas = [value, HITS, *(parts or ())]
    try:
        kinds = _kinds(store.metric_kinds(query.pk), formulas)  # checked before any read
    except BadRequest as exc:  # a statistic the metric has not: the parameter is value
        raise BadRequest("value", exc.value, exc.reason) from None
    period, ordinals = read_window(query, store)  # with tz=, perhaps the hours of its days
    deepest = store.settings.max_depth  # no event reaches below: nothing to look for there
    found: dict[Path, Totals] = {}
    unread, level = [query.path], [query.path]  # the dimension is read with its children
    for _ in range(query.depth):
        found_below = store.children_of(query.pk, [p for p in level if len(p) < deepest],
                                        since=query.since)
        level = [parent + (child,) for parent, names in found_below.items() for child in names]
        unread += level
        if not level:
            break
        found.update(_read(store, query, unread, kinds, period, ordinals, parts, budget))
        unread = []
    if unread:
        found.update(_read(store, query, unread, kinds, period, ordinals, parts, budget))
    return found


def _read(store: Store, query: Query, paths: list[Path], kinds: dict[str, str],
          period: Period, ordinals: range, parts: tuple[Formula, Formula] | None,
          budget: Budget | None) -> dict[Path, Totals]:
    _spend(store.settings, query, len(paths) * len(kinds), len(ordinals), "rank", budget)
    readings = store.read(query.pk, paths, kinds, period, ordinals, buckets=False)
    # A total that overflows (None) counts as 0, as /plotpoints ranks it.
    formulas = [parts[0], HITS, parts[1]] if parts else [query.metrics[0], HITS]
    found = {}
    for path in paths:
        top, events, *bottom = (_total(f, readings[path], kinds) or 0 for f in formulas)
        found[path] = Totals(top, events, bottom[0] if bottom else None)
    return found


def ranked(store: Store, query: Query, budget: Budget | None = None) -> dict[Path, dict]:
    """``rank_children`` of what ``query`` selects, keyed by each descendant's path."""
    return rank_children(read_totals(store, query, budget), query.path)


def path_key(path: Path) -> str:
    """A path as /rank's answer keys it: its JSON list, as ``JSON.stringify`` writes it."""
    return json.dumps(list(path), ensure_ascii=False, separators=(",", ":"))


def answer(store: Store, query: Query, budget: Budget | None = None) -> dict:
    """GET /rank's answer: the selection, the parent's own value and count, and ``ranked``
    keyed by each descendant's ``path_key``, the important first."""
    totals = read_totals(store, query, budget)
    rows = rank_children(totals, query.path)
    parent = totals[query.path]
    value = query.metrics[0]
    ratio = parent.denominator is not None
    return {
        **_header(query),
        "value": value.text,
        "rule": "ratio" if ratio else "sum",
        "depth": query.depth,
        "parent": {
            "value": _finite(parent.numerator if not ratio else
                             parent.numerator / parent.denominator if parent.denominator
                             else 0),
            "count": parent.denominator if ratio else parent.events,
        },
        "ranked": {path_key(path): {"dimension": list(path), **row}
                   for path, row in rows.items()},
    }
