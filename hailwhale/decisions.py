"""Decisions: the outcomes of options shown to visitors, counted like events, and a choice
of option for the next visitor from what worked for visitors like them.

An outcome (``count_decision``) is an event of the decision's own key space: the pk
``DECISIONS + pk`` (a control character, which no pk a client sends can hold, so no user
pk reaches it), dimensions ``[decision, option, *what is known of the visitor]``, so it rolls
up over the visitor's dimensions like any event: ``[decision, option]`` holds every outcome
of the option, ``[decision, option, "country", "uk"]`` those of visitors from the UK.

``decide`` reads, for every option, the formula's numerator and denominator (``dollars/
visitors``; a single metric ``m`` is ``m/hits``) in each context the visitor's dimensions
name, from the most specific (``country: uk``) to its parents and the overall result, and
uses the most specific one holding MIN_EVIDENCE units of the denominator. Each option's
rate has a Gamma posterior (a Poisson model of the numerator counted in units of the
decision's mean rate: the numerator's scale is unknown from sums alone, and in those units
a rate's relative uncertainty is about ``1/sqrt(numerator units)``); an option is

* ``test`` while it has too little evidence (under MIN_EVIDENCE in every context),
* ``good`` when its rate beats the others' pooled rate in its context (theirs overall when
  they have too little evidence there) with probability at least 1 - CONFIDENCE, ``bad``
  when it loses with that probability, else ``test``.

The probability of beating the others is worked out in closed form (``beats``). The choice
is Thompson sampling (one draw from each candidate's posterior, the largest
wins) among the good options, or, when none is good, among every option with evidence;
with probability ``test_idea_threshold`` a test option instead, with probability
``bad_idea_threshold`` a bad one. With no data at all, any option. Each choice is counted
(the pk ``CHOICES + pk``), so a dashboard can show how often each option was chosen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .aggregate import SUM
from .batches import count_events
from .config import Settings
from .dimensions import Path
from .errors import BadRequest
from .event import Event, _name, _pk, parse_at, parse_dimensions, parse_metrics
from .formulas import parse
from .periods import Period, find_period
from .query import _number, refuse_unknown
from .store import Store
from .windows import resolve

DECISIONS = "\x1d"  # the pk prefix of outcomes
CHOICES = "\x1c"  # the pk prefix of choices made
MIN_EVIDENCE = 30  # units of the denominator (visitors, hits) that make a context count
CONFIDENCE = 0.05  # a class needs its comparison to hold with probability 1 - CONFIDENCE
MAX_OPTIONS = 100
GOOD, BAD, TEST = "good", "bad", "test"
# Thompson sampling needs draws, not secrets: one generator, seeded from the OS.
_RANDOM = random.Random()


def outcome(raw: Mapping, settings: Settings, now: float) -> Event:
    """The event an outcome's parameters (``pk``, ``decision``, ``option``, ``dimensions``,
    ``metrics``, ``at``) count: BadRequest naming the parameter when one is wrong."""
    refuse_unknown(raw, {"pk", "category", "decision", "option", "dimensions", "dimension",
                         "metrics", "metric", "at"})
    pk = _pk(raw.get("pk", raw.get("category")), settings)
    decision = _required_name(raw, "decision", settings)
    option = _required_name(raw, "option", settings)
    known_of_visitor = parse_dimensions(raw.get("dimensions", raw.get("dimension")), settings)
    metrics = parse_metrics(raw.get("metrics", raw.get("metric")), settings)
    if metrics.uniques or metrics.gauges or metrics.timings:
        raise BadRequest("metrics", raw.get("metrics", raw.get("metric")),
                         "an outcome's metrics are numbers (dollars, visitors): a decision "
                         "compares their sums")
    branches = tuple((decision, option, *branch) for branch in known_of_visitor) or \
        ((decision, option),)
    at = parse_at(raw.get("at"), settings, now)
    return Event(branches, metrics.sums, (), None, DECISIONS + pk, at, raw)


def _required_name(raw: Mapping, param: str, settings: Settings) -> str:
    value = raw.get(param)
    if value is None or value == "":
        raise BadRequest(param, value, f"{param} is required")
    return _name(value, param, settings)


@dataclass(frozen=True)
class Evidence:
    """One option's sums in one context (a visitor dimension path, () for overall)."""

    context: Path
    numerator: float
    denominator: float

    @property
    def rate(self) -> float:
        return self.numerator / self.denominator if self.denominator else 0.0


def ratio_of(text: str) -> tuple[str, str]:
    """The numerator and denominator a decision maximises: ``dollars/visitors``, or one
    metric ``m`` per event (``m/hits``)."""
    formula = parse(text or "value/hits", "metrics")
    if formula.is_metric and ":" not in formula.text:
        return formula.text, "hits"
    parts = formula.division()
    if parts and all(part.is_metric and ":" not in part.text for part in parts):
        return parts[0].text, parts[1].text
    raise BadRequest("metrics", text, "a decision maximises one metric per event (dollars) "
                     "or a ratio of two (dollars/visitors)")


def contexts(known: Sequence[Path]) -> list[Path]:
    """Every context the visitor's dimensions name, most specific first, overall last."""
    found: list[Path] = []
    for branch in sorted(known, key=len, reverse=True):
        for end in range(len(branch), 0, -1):
            if branch[:end] not in found:
                found.append(branch[:end])
    found.sort(key=len, reverse=True)  # stable: among equal lengths, the order given
    return [*found, ()]


def beats(mine: tuple[float, float], theirs: tuple[float, float], unit: float) -> float:
    """The probability that the rate ``mine`` (numerator, denominator) is above ``theirs``,
    under their Gamma posteriors: the log of a Gamma(a, b) rate is about normal, mean
    ``log(a / b) - 1 / (2a)``, variance ``1 / a`` (its digamma and trigamma, to first order),
    so the difference of two is a z-score. Closed form: no sampling, the same answer every
    time."""
    (a1, b1), (a2, b2) = (_shape_rate(*mine, unit), _shape_rate(*theirs, unit))
    z = ((math.log(a1 / b1) - 1 / (2 * a1)) - (math.log(a2 / b2) - 1 / (2 * a2))) / \
        math.sqrt(1 / a1 + 1 / a2)
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _shape_rate(numerator: float, denominator: float, unit: float) -> tuple[float, float]:
    """A rate's Gamma posterior: the numerator counted in ``unit``s (a Poisson count), a
    flat prior of one unit."""
    return max(numerator, 0.0) / unit + 1.0, max(denominator, 1e-9) / unit


def _posterior(numerator: float, denominator: float, unit: float, rng: random.Random):
    """A draw of the rate from its Gamma posterior (``_shape_rate``)."""
    shape, rate = _shape_rate(numerator, denominator, unit)
    return rng.gammavariate(shape, 1 / rate)


def _pooled(sums: Mapping[tuple[str, Path], tuple[float, float]], options: Sequence[str],
            context: Path) -> tuple[float, float]:
    """``(numerator, denominator)`` of ``options`` together in ``context``."""
    return (sum(sums.get((o, context), (0, 0))[0] for o in options),
            sum(sums.get((o, context), (0, 0))[1] for o in options))


def _unit(sums: Mapping[tuple[str, Path], tuple[float, float]],
          options: Sequence[str]) -> float:
    """The decision's mean rate overall, the unit numerators are counted in (1 without
    data)."""
    num, den = _pooled(sums, options, ())
    return num / den if den and num > 0 else 1.0


def classify(options: Sequence[str], sums: Mapping[tuple[str, Path], tuple[float, float]],
             places: Sequence[Path]) -> dict[str, dict]:
    """Each option's evidence, class and score from ``sums`` ((option, context) ->
    (numerator, denominator)) over ``places`` (``contexts``)."""
    unit = _unit(sums, options)
    scores: dict[str, dict] = {}
    for option in options:
        chosen = next((Evidence(c, *sums.get((option, c), (0, 0))) for c in places
                       if sums.get((option, c), (0, 0))[1] >= MIN_EVIDENCE), None)
        if chosen is None:
            found = next((c for c in places if sums.get((option, c), (0, 0))[1] > 0), ())
            evidence = Evidence(found, *sums.get((option, found), (0, 0)))
            scores[option] = _score(evidence, TEST, None)
            continue
        others = [o for o in options if o != option]
        num, den = _pooled(sums, others, chosen.context)
        if den < MIN_EVIDENCE:  # the others say nothing here: compare with them overall
            num, den = _pooled(sums, others, ())
        if den <= 0:
            scores[option] = _score(chosen, GOOD if chosen.numerator > 0 else TEST, None)
            continue
        chance = beats((chosen.numerator, chosen.denominator), (num, den), unit)
        kind = GOOD if chance >= 1 - CONFIDENCE else BAD if chance <= CONFIDENCE else TEST
        scores[option] = _score(chosen, kind, chance, others_rate=num / den)
    return scores


def _score(evidence: Evidence, kind: str, beats: float | None,
           others_rate: float | None = None) -> dict:
    return {"class": kind, "value": evidence.rate, "numerator": evidence.numerator,
            "denominator": evidence.denominator, "context": list(evidence.context),
            "beats_others": beats, "others_value": others_rate}


def choose(options: Sequence[str], scores: Mapping[str, dict], unit: float,
           test_idea_threshold: float, bad_idea_threshold: float,
           rng: random.Random) -> str:
    """The option to show: see the module's docstring."""
    by_class = {kind: [o for o in options if scores[o]["class"] == kind]
                for kind in (GOOD, BAD, TEST)}
    if not any(scores[o]["denominator"] > 0 for o in options):
        return rng.choice(list(options))
    draw = rng.random()
    if by_class[TEST] and draw < test_idea_threshold:
        return rng.choice(by_class[TEST])
    if by_class[BAD] and draw < test_idea_threshold + bad_idea_threshold:
        return rng.choice(by_class[BAD])
    candidates = by_class[GOOD] or [o for o in options if scores[o]["denominator"] > 0
                                    and scores[o]["class"] != BAD] or \
        [o for o in options if scores[o]["denominator"] > 0]
    return max(candidates, key=lambda o: _posterior(scores[o]["numerator"],
                                                    scores[o]["denominator"], unit, rng))


def decide(store: Store, params: Mapping, now: float, rng: random.Random | None = None,
           record: bool = True) -> dict:
    """``/decide``: which of ``options`` to show a visitor with ``dimensions``; see the
    module's docstring. Answers ``{"option", "good", "bad", "test", "scores"}``."""
    rng = rng or _RANDOM
    settings = store.settings
    refuse_unknown(params, {"pk", "category", "decision", "options", "dimensions",
                            "dimension", "metrics", "metric", "period", "since", "until",
                            "test_idea_threshold", "bad_idea_threshold", "record"})
    pk = _pk(params.get("pk", params.get("category")), settings)
    decision = _required_name(params, "decision", settings)
    options = _options(params.get("options"), settings)
    visitor = parse_dimensions(params.get("dimensions", params.get("dimension")), settings)
    numerator, denominator = ratio_of(params.get("metrics", params.get("metric")))
    period = find_period(settings.periods, params.get("period") or settings.periods[-1].name)
    since, until = resolve(period, params.get("since"), params.get("until"), now, settings.tz,
                           settings.max_buckets)
    thresholds = [_number(params, name, 0.05, 0.0, 1.0) for name in ("test_idea_threshold",
                                                                      "bad_idea_threshold")]
    places = contexts(visitor)
    sums = _read(store, DECISIONS + pk, decision, options, places, numerator, denominator,
                 period, since, until)
    scores = classify(options, sums, places)
    chosen = choose(options, scores, _unit(sums, options), *thresholds, rng)
    recent = _chosen(store, pk, decision, options, now)
    for option in options:
        scores[option]["chosen_recently"] = recent.get(option, 0)
    if record and str(params.get("record", "1")).lower() not in ("0", "false", "no"):
        count_choice(store, pk, decision, chosen, now)
    return {"pk": pk, "decision": decision, "option": chosen,
            "good": [o for o in options if scores[o]["class"] == GOOD],
            "bad": [o for o in options if scores[o]["class"] == BAD],
            "test": [o for o in options if scores[o]["class"] == TEST],
            "metrics": f"{numerator}/{denominator}", "period": period.name,
            "scores": scores}


def listed(store: Store, pk: str) -> dict:
    """``/decisions``: the decisions of ``pk`` and the options each has outcomes for."""
    return {"pk": pk, "decisions": {
        decision: store.children(DECISIONS + pk, (decision,))
        for decision in store.children(DECISIONS + pk, ())}}


def _options(value, settings: Settings) -> list[str]:
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value:
        raise BadRequest("options", value, 'options is a JSON list such as ["a", "b"]')
    if len(value) > MAX_OPTIONS:
        raise BadRequest("options", value, f"at most {MAX_OPTIONS} options")
    names = [_name(option, "options", settings) for option in value]
    return list(dict.fromkeys(names))


def _read(store: Store, pk: str, decision: str, options: Sequence[str], places: Sequence[Path],
          numerator: str, denominator: str, period: Period, since: float, until: float
          ) -> dict[tuple[str, Path], tuple[float, float]]:
    ordinals = period.ordinals(since, until, store.settings.tz)
    paths = {(option, place): (decision, option, *place) for option in options
             for place in places}
    kinds = {numerator: SUM, denominator: SUM}
    cells = len(paths) * len(ordinals)
    if cells > store.settings.max_query_cells:  # options x contexts x buckets, bounded
        raise BadRequest("options", list(options), f"deciding would read {len(paths):,} "
                         f"series over {len(ordinals):,} buckets, more than MAX_QUERY_CELLS "
                         f"({store.settings.max_query_cells:,}): fewer options, fewer "
                         "visitor dimensions, or a shorter window (since)")
    readings = store.read(pk, list(paths.values()), kinds, period, ordinals, buckets=False)
    return {key: (float(readings[path][numerator].total or 0),
                  float(readings[path][denominator].total or 0))
            for key, path in paths.items()}


def count_choice(store: Store, pk: str, decision: str, option: str, now: float) -> None:
    """Count that ``option`` was chosen (the pk ``CHOICES + pk``)."""
    event = Event(((decision, option),), {"hits": 1}, (), None, CHOICES + pk, now)
    count_events(store, [event], now)


def _chosen(store: Store, pk: str, decision: str, options: Sequence[str],
            now: float) -> dict[str, int]:
    """How often each option was chosen over the first period's retention."""
    period = store.settings.periods[0]
    since, until = now - period.retention, now
    ordinals = period.ordinals(since, until, store.settings.tz)
    paths = [(decision, option) for option in options]
    readings = store.read(CHOICES + pk, paths, {"hits": SUM}, period, ordinals, buckets=False)
    return {path[1]: int(readings[path]["hits"].total or 0) for path in paths}


def record(store: Store, events: Sequence[Event], now: float) -> int:
    """Count outcomes (``outcome`` events): how many were counted."""
    return count_events(store, events, now)
