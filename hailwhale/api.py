"""The Python API of the original README: ``HailWhale.log``, ``HailWhale.dataset`` and
``HailWhale.rank``.

Call them on the class, as the README does (they use a default instance built from the
settings), or on an instance of your own with its own store::

    HailWhale.log(['pageviews', 'site.com', 'site.com/main', visitor_id],
                  {'hits': 1, 'time_on_page': 25, 'visitors': 'is_unique'})
    HailWhale.dataset(['pageviews'], value='hits', period=settings.PERIODS[-1],
                      start_at=datetime.now() - timedelta(days=30))
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import decisions
from .batches import count_events
from .config import Settings, load_settings
from .dimensions import Path
from .event import parse_event
from .formulas import parse
from .periods import find_period
from .query import Query, parse_path, read_selection, values_of, window_of
from .rank import ranked, recursive_flag
from .store import Store

Points = list[tuple[datetime, Any]]


class _default_on_class:
    """Makes a method callable on the class too, where it runs on the default instance."""

    def __init__(self, func):
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, instance, owner):
        target = instance if instance is not None else owner.default()
        return self.func.__get__(target, owner)


class HailWhale:
    """Counts events into a store and reads datasets back from it."""

    _default: HailWhale | None = None

    def __init__(self, store: Store | None = None, settings: Settings | None = None):
        self.settings = settings or (store.settings if store else load_settings())
        self.store = store or Store.from_settings(self.settings)

    @classmethod
    def default(cls) -> HailWhale:
        """The instance the class-level calls use, made from the settings on first use."""
        if cls._default is None:
            cls._default = cls()
        return cls._default

    @classmethod
    def configure(cls, store: Store | None = None, settings: Settings | None = None) -> HailWhale:
        """Replace the default instance (for example with another store)."""
        cls._default = cls(store, settings)
        return cls._default

    @_default_on_class
    def log(self, params, values: dict | None = None, pk: str | None = None,
            at: float | datetime | None = None, uid: str | None = None) -> None:
        """Count one event: ``params`` are its dimensions (a list is a hierarchy, a dict
        nests, a string is one level), ``values`` its metrics (``'is_unique'`` counts ``uid``,
        by default the deepest dimension value). Raises BadRequest on bad input."""
        now = time.time()
        raw = {"dimensions": params, "metrics": values or {}, "pk": pk, "uid": uid,
               "at": at.timestamp() if isinstance(at, datetime) else at}
        event = parse_event({k: v for k, v in raw.items() if v is not None}, self.settings, now)
        count_events(self.store, [event], now)

    @_default_on_class
    def dataset(self, params, value: str = "hits", period=None,
                start_at: datetime | None = None, end_at: datetime | None = None,
                depth: int = 0, pk: str = "", threshold: float = 0.0,
                limit: int | None = None, tz: str | None = None) -> Points | dict[Any, Points]:
        """``[(datetime, value), ...]`` of one dimension, every bucket of the window present;
        with ``depth`` a dict of its children's series instead, keyed by the child's name
        (depth 1) or its path below ``params`` (deeper). ``value`` may be a formula such
        as ``'dollars/hits'``; ``period`` an ``(interval, retention)`` tuple or a name;
        ``tz`` a zone for day buckets (as ``tz=`` on queries; the datetimes are in it)."""
        settings = self.settings
        chosen, since, until, source, zone = self._window(period, start_at, end_at, tz)
        formula = parse(value, "value")
        path = parse_path(params, settings)
        query = Query(pk, path, (formula,), chosen, since, until, depth, threshold, limit,
                      source=source, zone=zone)
        paths, starts, readings, kinds = read_selection(self.store, query)
        shown = ZoneInfo(zone) if zone else settings.tz
        stamps = [datetime.fromtimestamp(ms / 1000, shown) for ms in starts]

        def points(p: Path) -> Points:
            return list(zip(stamps, values_of(formula, readings[p], kinds, len(stamps)),
                            strict=True))

        if not depth:
            return points(path)
        children = paths[1:]
        return {(child[-1] if depth == 1 else child[len(path):]): points(child)
                for child in children}

    @_default_on_class
    def rank(self, params, value: str = "hits", pk: str = "", period=None,
             start_at: datetime | None = None, end_at: datetime | None = None,
             recursive: bool = True, tz: str | None = None) -> dict[Path, dict]:
        """The descendants of one dimension (``recursive=False``: its children only), each
        ``{"important", "score", "difference", "effect", "value", "count",
        "significance"}``, keyed by its whole path (a tuple), the important first
        (hailwhale.rank; ``GET /rank`` answers the same). ``value`` is a metric, a formula,
        or a ratio such as ``'dollars/visitors'``; ``tz`` as for ``dataset``."""
        chosen, since, until, source, zone = self._window(period, start_at, end_at, tz)
        depth = self.settings.max_depth if recursive_flag(recursive) else 1
        query = Query(pk, parse_path(params, self.settings), (parse(value, "value"),),
                      chosen, since, until, depth, source=source, zone=zone)
        return ranked(self.store, query)

    def _window(self, period, start_at: datetime | None, end_at: datetime | None,
                tz: str | None = None):
        """``(the period, since, until, source, zone)`` a dataset or rank reads, as a query
        with these parameters would (hailwhale.query.window_of)."""
        return window_of({"period": tuple(period) if isinstance(period, list) else period,
                          "since": start_at.timestamp() if start_at else None,
                          "until": end_at.timestamp() if end_at else None, "tz": tz},
                         self.settings, time.time())

    @_default_on_class
    def count_decision(self, pk: str, decision: str, option: str, dimensions=None,
                       metrics: dict | None = None, at: float | datetime | None = None) -> None:
        """Count the outcome of having shown ``option`` of ``decision`` to a visitor of
        whom ``dimensions`` is known (``{'country': 'uk'}``): ``metrics`` such as
        ``{'dollars': 5000, 'visitors': 1000}`` (hailwhale.decisions)."""
        now = time.time()
        raw = {"pk": pk, "decision": decision, "option": option, "dimensions": dimensions,
               "metrics": metrics or {},
               "at": at.timestamp() if isinstance(at, datetime) else at}
        event = decisions.outcome({k: v for k, v in raw.items() if v is not None},
                                  self.settings, now)
        decisions.record(self.store, [event], now)

    @_default_on_class
    def decide(self, pk: str, decision: str, options: list, dimensions=None,
               formula: str = "value/hits", period=None, test_idea_threshold: float = 0.05,
               bad_idea_threshold: float = 0.05, rng=None) -> dict:
        """Which of ``options`` to show a visitor of whom ``dimensions`` is known, to
        maximise ``formula`` (``'dollars/visitors'``): ``{"option", "good", "bad", "test",
        "scores"}``, as ``GET /decide`` answers (hailwhale.decisions)."""
        params = {"pk": pk, "decision": decision, "options": list(options),
                  "dimensions": dimensions, "metrics": formula,
                  "period": find_period(self.settings.periods, tuple(period)
                                        if isinstance(period, list) else period).name
                  if period is not None else None,
                  "test_idea_threshold": test_idea_threshold,
                  "bad_idea_threshold": bad_idea_threshold}
        answer = decisions.decide(self.store, {k: v for k, v in params.items()
                                               if v is not None}, time.time(), rng)
        # Options are names (strings or whole numbers): the one given is answered.
        given = {str(option): option for option in options}
        return {**answer, "option": given.get(answer["option"], answer["option"])}
