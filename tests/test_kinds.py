"""Gauges and timings as metric kinds (issue 11, part 2): the sketch's percentiles against
exact ones, a gauge's last value per bucket with deltas, and both through Whale's HTTP API,
counted one by one (GET /count) and as a batch of wire lines (POST /batch), on real Redis
and fakeredis."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hailwhale import wire
from hailwhale.errors import BadRequest
from hailwhale.event import parse_event
from hailwhale.numbers import to_nanos
from hailwhale.sketch import RELATIVE_ERROR, Sketch, quantile_of


def exact(values, q):
    """The value at rank floor(q * (n - 1)) of the sorted values: what the sketch answers."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


# -- the sketch, pure ----------------------------------------------------------------------
@given(st.lists(st.one_of(st.floats(1e-6, 1e9), st.floats(-1e6, -1e-6), st.just(0.0)),
                min_size=1, max_size=300),
       st.sampled_from([0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0]))
def test_a_quantile_is_within_the_relative_error_of_the_exact_one(values, q):
    sketch = Sketch.of(values, sum(map(to_nanos, values)))
    answer, truth = sketch.quantile(q), exact(values, q)
    assert abs(answer - truth) <= RELATIVE_ERROR * abs(truth) + 1e-12, (answer, truth)


@given(st.lists(st.lists(st.floats(0.001, 1e6), min_size=1, max_size=50), min_size=1,
                max_size=8))
def test_merged_sketches_answer_as_one_sketch_of_every_value(parts):
    merged = Sketch()
    for part in parts:
        merged.merge(Sketch.of(part, sum(map(to_nanos, part))))
    every = [value for part in parts for value in part]
    whole = Sketch.of(every, sum(map(to_nanos, every)))
    assert merged.bins == whole.bins and merged.nanos == whole.nanos
    assert (merged.low, merged.high) == (min(every), max(every))
    for q in (0.5, 0.9, 0.99):
        assert merged.quantile(q) == whole.quantile(q)


def test_measured_error_on_latency_like_data():
    """The error the README quotes: a log-normal of 100,000 latencies (median 120 ms)."""
    rng = random.Random(7)
    values = [rng.lognormvariate(math.log(120), 0.8) for _ in range(100_000)]
    sketch = Sketch.of(values, 0)
    worst = max(abs(sketch.quantile(q) - exact(values, q)) / exact(values, q)
                for q in (0.5, 0.75, 0.9, 0.95, 0.99, 0.999))
    assert worst <= RELATIVE_ERROR
    assert len(sketch.bins) < 400  # a bucket's hash stays small


def test_statistics_and_percentile_names():
    sketch = Sketch.of([1.5, 2, 10], to_nanos(1.5) + to_nanos(2) + to_nanos(10))
    assert sketch.stat("count") == 3 and sketch.stat("sum") == 13.5
    assert sketch.stat("mean") == 4.5
    assert (sketch.stat("min"), sketch.stat("max")) == (1.5, 10)
    assert sketch.stat("p0") == 1.5 and sketch.stat("p100") == 10
    assert [quantile_of(n) for n in ("p50", "p9", "p99", "p999", "p9999", "x")] == \
        [0.5, 0.09, 0.99, 0.999, 0.9999, None]
    empty = Sketch()
    assert (empty.stat("count"), empty.stat("sum"), empty.stat("p99"), empty.stat("mean")) \
        == (0, 0, None, None)


# -- events --------------------------------------------------------------------------------
def test_the_http_spelling(settings):
    event = parse_event({"dimensions": "api", "metrics": json.dumps({
        "latency": {"timing": [12, 15.5]}, "cpu": {"gauge": 0.5}, "conns": {"delta": -1},
        "dollars": 3})}, settings, 1.79e9)
    assert event.timings == (("latency", (12.0, 15.5)),)
    assert event.gauges == (("cpu", "=", 0.5), ("conns", "+", -1.0))
    assert dict(event.metrics) == {"dollars": 3, "hits": 1}


@pytest.mark.parametrize("metrics, reason", [
    ({"x": {"gauge": "a"}}, 'a metric is a number or "is_unique"'),
    ({"x": {"timing": []}}, "at least one sample"),
    ({"x": {"timing": [1] * 1001}}, "more than 1000 timing samples"),
    ({"x": {"timing": float("inf")}}, "finite"),
    ({"x": {"gauge": 1, "timing": 2}}, "a metric is a number"),
    ({"x": {"median": 1}}, '{"gauge": n}'),
    ({"hits": {"gauge": 1}}, "hits counts every event"),
    ({"x": {"timing": 1e13}}, "at most"),
])
def test_bad_gauges_and_timings_are_refused(settings, metrics, reason):
    with pytest.raises(BadRequest) as refused:
        parse_event({"metrics": metrics}, settings, 1.79e9)
    assert reason in str(refused.value) and refused.value.param.startswith("metrics")


# -- through Whale -------------------------------------------------------------------------
def count(app, dimensions, metrics, **more):
    params = {"dimensions": json.dumps(dimensions), "metrics": json.dumps(metrics), **more}
    app.get("/count", {k: str(v) for k, v in params.items()})


def totals(app, metrics, dimensions=(), **more):
    answer = app.get("/totals", {"metrics": metrics, "dimensions": json.dumps(list(dimensions)),
                                 **more})
    return answer.json["totals"]


@pytest.fixture(params=["count", "batch"])
def send(request, app, settings, clock):
    """Counts raw events one GET /count each, or as one POST /batch of wire lines."""
    def sender(events):
        if request.param == "count":
            for raw in events:
                app.get("/count", {k: json.dumps(v) if not isinstance(v, str) else v
                                   for k, v in raw.items()})
            return
        lines = [wire.encode(parse_event(raw, settings, clock.now), clock.now)
                 for raw in events]
        answer = app.post(f"/batch?id=b{random.random()}&count={len(lines)}",
                          "\n".join(lines), content_type=wire.CONTENT_TYPE)
        assert answer.json["counted"] == len(events), answer.json
    return sender


def test_timings_over_a_window_and_every_prefix(app, send, clock):
    rng = random.Random(3)
    by_country = {"de": [rng.uniform(5, 500) for _ in range(300)],
                  "fr": [rng.expovariate(1 / 40) for _ in range(200)]}
    events = []
    for country, values in by_country.items():
        for i in range(0, len(values), 7):  # several samples an event, several buckets
            events.append({"dimensions": ["eu", country],
                           "metrics": {"latency": {"timing": values[i:i + 7]}},
                           "at": clock.now - 15 * (i % 5)})
    send(events)
    every = by_country["de"] + by_country["fr"]
    for path, values in (([], every), (["eu"], every), (["eu", "de"], by_country["de"]),
                         (["eu", "fr"], by_country["fr"])):
        found = totals(app, "latency:count,latency:min,latency:max,latency:mean,latency:p50,"
                            "latency:p90,latency:p99,latency:sum,latency:sum/hits",
                       path, since="10m")[0]["totals"]
        assert found["latency:count"] == len(values)
        assert (found["latency:min"], found["latency:max"]) == (min(values), max(values))
        assert found["latency:sum"] == pytest.approx(sum(values), rel=1e-12)
        assert found["latency:mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
        for q in (0.5, 0.9, 0.99):
            truth = exact(values, q)
            assert abs(found[f"latency:p{round(q * 100)}"] - truth) <= RELATIVE_ERROR * truth
        hits = math.ceil(len(by_country["de"]) / 7) * ("de" in str(path) or not path[1:]) + \
            math.ceil(len(by_country["fr"]) / 7) * ("fr" in str(path) or not path[1:])
        assert found["latency:sum/hits"] == pytest.approx(sum(values) / hits, rel=1e-12)


def test_a_timings_buckets_on_the_plot(app, send, clock):
    start = clock.now - clock.now % 15
    send([{"dimensions": "api", "metrics": {"latency": {"timing": [10, 20, 30]}},
           "at": start - 30},
          {"dimensions": "api", "metrics": {"latency": {"timing": [100]}}, "at": start}])
    answer = app.get("/plotpoints", {"metrics": "latency:max,latency:count,latency",
                                     "dimensions": "api", "since": "1m"}).json
    by_metric = {s["metric"]: [value for _, value in s["data"]] for s in answer["series"]}
    assert by_metric["latency:max"][-3:] == [30, None, 100]  # an empty bucket is a gap
    assert by_metric["latency:count"][-3:] == [3, 0, 1]
    assert by_metric["latency"][-3:] == [20, None, 100]  # a timing alone is its mean
    assert {s["metric"]: s["total"] for s in answer["series"]}["latency"] == 40


def test_a_gauge_is_its_last_value_per_bucket_and_deltas_move_it(app, send, clock):
    start = clock.now - clock.now % 15
    send([{"dimensions": ["hosts", "h1"], "metrics": {"cpu": {"gauge": 0.5}},
           "at": start - 45},
          {"dimensions": ["hosts", "h1"], "metrics": {"cpu": {"gauge": 0.75}},
           "at": start - 40},
          {"dimensions": ["hosts", "h1"], "metrics": {"conns": {"delta": 5}},
           "at": start - 45},
          {"dimensions": ["hosts", "h1"], "metrics": {"conns": {"delta": -2}},
           "at": start - 15},
          {"dimensions": ["hosts", "h1"], "metrics": {"cpu": {"gauge": 0.25}},
           "at": start}])
    answer = app.get("/plotpoints", {"metrics": "cpu:last,conns", "since": "2m",
                                     "dimensions": '["hosts", "h1"]'}).json
    data = {s["metric"]: [value for _, value in s["data"]][-4:] for s in answer["series"]}
    # Buckets: start-45, -30, -15, start. An unchanged bucket keeps the value before it.
    assert data["cpu:last"] == [0.75, 0.75, 0.75, 0.25]
    assert data["conns"] == [5, 5, 3, 3]
    found = totals(app, "cpu:last,conns,cpu*100", ["hosts", "h1"], since="2m")[0]["totals"]
    assert found == {"cpu:last": 0.25, "conns": 3, "cpu*100": 25}
    # A window that starts after the last change still shows the value it holds.
    later = totals(app, "cpu,conns", ["hosts", "h1"], since=str(start + 15),
                   until=str(start + 60))
    assert later[0]["totals"] == {"cpu": 0.25, "conns": 3}
    # Never set under another dimension: no value, a gap, null.
    assert totals(app, "cpu", ["other"])[0]["totals"] == {"cpu": None}


def test_a_later_batch_moves_the_gauge_from_where_it_is(app, send, clock):
    send([{"dimensions": "q", "metrics": {"depth": {"gauge": 10}}}])
    send([{"dimensions": "q", "metrics": {"depth": {"delta": 4}}},
          {"dimensions": "q", "metrics": {"depth": {"delta": -1}}}])
    assert totals(app, "depth", ["q"])[0]["totals"] == {"depth": 13}
    send([{"dimensions": "q", "metrics": {"depth": {"gauge": 2}}}])
    assert totals(app, "depth", ["q"])[0]["totals"] == {"depth": 2}


def test_children_ranked_by_a_timing(app, send, clock):
    send([{"dimensions": ["pages", name], "metrics": {"latency": {"timing": [ms] * 20}}}
          for name, ms in (("slow", 900), ("fast", 10), ("mid", 100))])
    answer = app.get("/plotpoints", {"metrics": "latency:p99", "dimensions": "pages",
                                     "depth": "1", "threshold": "0"}).json
    assert [s["dimension"] for s in answer["series"]] == [
        ["pages"], ["pages", "slow"], ["pages", "mid"], ["pages", "fast"]]


@pytest.mark.parametrize("metrics, reason", [
    ("hits:p99", "hits is a sum"),
    ("cpu:p99", "cpu is a gauge"),
    ("latency:last", "a timing's statistics"),
    ("latency:median", "a timing's statistics"),
    ("latency:p99 + latency:bogus", "latency:bogus"),
])
def test_a_statistic_its_kind_has_not_is_a_400(app, metrics, reason):
    count(app, "x", {"latency": {"timing": 5}, "cpu": {"gauge": 1}})
    answer = app.get("/plotpoints", {"metrics": metrics}, expect_errors=True)
    assert answer.status_int == 400 and answer.json["param"] == "metrics"
    assert reason in answer.json["error"], answer.json


def test_the_metric_registry_names_the_kinds(app):
    count(app, "x", {"latency": {"timing": 5}, "cpu": {"gauge": 1}, "visitors": "is_unique"},
          uid="u1")
    assert app.get("/metrics").json["metrics"] == {
        "hits": "sum", "latency": "timing", "cpu": "gauge", "visitors": "unique"}


def test_timings_and_gauges_under_a_full_parent_fold_into_other(store, settings, clock):
    """The cardinality guard: past MAX_CHILDREN, a new child's timing joins __other__'s."""
    import dataclasses

    from hailwhale.batches import count_events

    small = Store_with(store, dataclasses.replace(settings, max_children=2))
    events = [parse_event({"dimensions": ["p", name], "metrics": {
        "latency": {"timing": ms}, "cpu": {"gauge": ms}}}, settings, clock.now)
        for name, ms in (("a", 1), ("b", 2), ("c", 30), ("d", 40))]
    count_events(small, events, clock.now)
    period = settings.periods[0]
    ordinals = period.ordinals(clock.now - 60, clock.now, settings.tz)
    read = small.read("", [("p", "__other__"), ("p",)], {"latency": "timing", "cpu": "gauge"},
                      period, ordinals)
    other = read[("p", "__other__")]
    assert other["latency"].total.count == 2 and other["latency"].total.high == 40
    assert other["cpu"].total == 40  # the last set under a folded child
    assert read[("p",)]["latency"].total.count == 4


def Store_with(store, settings):
    from hailwhale.store import Store

    return Store(store.redis, settings)


@hypothesis_settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["=", "+"]), st.integers(-50, 50),
                          st.integers(0, 5)), min_size=1, max_size=20))
def test_both_folds_apply_gauges_as_a_replay_in_time_order(changes):
    """The columnar fold (POST /batch) and the per-event fold (GET /count) give every
    bucket the value a replay of the changes in time order leaves there."""
    from hailwhale import columns
    from hailwhale.aggregate import aggregate
    from hailwhale.config import load_settings

    settings = load_settings(environ={})
    now = 1_790_000_000.0
    events = [parse_event({"dimensions": "g", "at": now - 15 * back, "metrics": {
        "x": {"gauge" if how == "=" else "delta": value}}}, settings, now)
        for how, value, back in changes]
    by_events = aggregate(events, settings.periods, settings.tz, now).gauges
    table, rejected = columns.check([wire.encode(e, now) for e in events], settings, now)
    assert not rejected
    by_columns = columns.fold(table, settings.periods, settings.tz, now).gauges
    assert by_events == by_columns
    replay, level, absolute = {}, 0, False
    order = sorted(range(len(changes)), key=lambda i: (events[i].at, i))
    for i in order:
        how, value, _ = changes[i]
        level, absolute = (value, True) if how == "=" else (level + value, absolute)
        replay[settings.periods[0].ordinal(events[i].at, settings.tz)] = (absolute, level)
    gauge = by_events[("", ("g",), "x")]
    assert {o: (a, v) for (p, o), (_, a, v) in gauge.buckets.items() if p == 0} == replay


def test_a_name_keeps_its_kind(app, settings, clock):
    """A sum cannot become a timing (their counters differ): refused, by /count with a 400
    naming the metric, in a batch for that event alone; and gauges' and timings' names
    count toward MAX_PK_METRICS like any."""
    count(app, "x", {"dollars": 5})
    refused = app.get("/count", {"metrics": '{"dollars": {"timing": 5}}'}, expect_errors=True)
    assert refused.status_int == 400 and refused.json["param"] == "metrics.dollars"
    assert "is a sum metric" in refused.json["error"]
    lines = [wire.encode(parse_event({"metrics": m}, settings, clock.now), clock.now)
             for m in ({"dollars": {"gauge": 1}}, {"dollars": 2})]
    answer = app.post("/batch?id=kinds&count=2", "\n".join(lines),
                      content_type=wire.CONTENT_TYPE).json
    assert answer["counted"] == 1 and [r["index"] for r in answer["rejected"]] == [0]
    assert app.get("/metrics").json["metrics"]["dollars"] == "sum"
    assert totals(app, "dollars")[0]["totals"] == {"dollars": 7}
