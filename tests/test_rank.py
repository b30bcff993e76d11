"""The children that matter (issue 12, part 2): the rule and its statistics as pure
functions, the reads through the store (real Redis and fakeredis), GET /rank through WSGI and
HailWhale.rank. The original suite's two ranking cases (leewardbound/hailwhale,
hailwhale/test.py: testRankSubdimensionsScalar and testRankSubdimensionsRatio) hold at
every level.

The original scalar case counts one event per dimension; the rule now asks for more than 10
events before a child can matter, so here each dimension's value is spread over 20 events
(each carrying a twentieth), the same totals. The ratio case counts one event each, as the
original did: its rule reads the denominator (visitors), not events."""

from __future__ import annotations

import math
import random
import statistics
import time

import pytest

from hailwhale.api import HailWhale
from hailwhale.dimensions import Path
from hailwhale.errors import BadRequest
from hailwhale.formulas import parse
from hailwhale.periods import find_period
from hailwhale.query import Query
from hailwhale.rank import Totals, parse_rank, path_key, rank_children, ranked

T = ("t",)
# testRankSubdimensionsScalar: value per dimension (here over 20 events each).
SCALAR = {("t", "a", "asub1"): 1, ("t", "a", "asub2"): 30, ("t", "b"): 80, ("t", "c"): 10}
SCALAR_EVENTS = 20
# testRankSubdimensionsRatio: (value, visitors), one event each. Overall 529,994 value over
# 50,000 visitors, 10.6 a visitor.
RATIO = {("t", "a", "asub1"): (54989, 4999),  # 11 a visitor: too close to 10.6
         ("t", "a", "asub2"): (375000, 25000),  # 15: important, high
         ("t", "b"): (100000, 20000),  # 5: important, low
         ("t", "c"): (5, 1)}  # 5, but one visitor: not enough
FIELDS = {"important", "score", "difference", "effect", "value", "count", "significance"}


def rolled_up(leaves: dict[Path, tuple], depth: int | None = None) -> dict[Path, tuple]:
    """Each leaf's numbers added into every prefix of its path, as counting does; with
    ``depth``, only the paths at most that many levels below T."""
    totals: dict[Path, list] = {}
    for path, numbers in leaves.items():
        for end in range(1, len(path) + 1):
            sums = totals.setdefault(path[:end], [0] * len(numbers))
            for i, number in enumerate(numbers):
                sums[i] += number
    return {path: tuple(sums) for path, sums in totals.items()
            if depth is None or len(path) - len(T) <= depth}


def scalar_totals(depth: int | None = None) -> dict[Path, Totals]:
    leaves = {path: (value, SCALAR_EVENTS) for path, value in SCALAR.items()}
    return {path: Totals(value, events)
            for path, (value, events) in rolled_up(leaves, depth).items()}


def ratio_totals(depth: int | None = None, events: int = 1) -> dict[Path, Totals]:
    leaves = {path: (value, visitors, events) for path, (value, visitors) in RATIO.items()}
    return {path: Totals(value, hits, visitors)
            for path, (value, visitors, hits) in rolled_up(leaves, depth).items()}


def importance(rows: dict) -> dict:
    return {path: row["important"] for path, row in rows.items()}


# -- the rule, pure ------------------------------------------------------------------------
def test_original_scalar_case():
    rows = rank_children(scalar_totals(), T)
    assert importance(rows) == {
        ("t", "a"): False,  # its child asub2 explains it: 1 of 121 left
        ("t", "a", "asub1"): False,
        ("t", "a", "asub2"): True,
        ("t", "b"): True,
        ("t", "c"): False,  # 10 of 121: under 10%
    }
    assert all(set(row) == FIELDS for row in rows.values())
    b = rows[("t", "b")]
    assert (b["value"], b["count"], b["effect"]) == (80, 20, 80)
    assert b["difference"] == b["score"] == pytest.approx(80 / 121)
    # The important first, then by score.
    assert list(rows) == [("t", "b"), ("t", "a", "asub2"), ("t", "a"), ("t", "c"),
                          ("t", "a", "asub1")]


def test_original_scalar_case_one_level_explains_nothing():
    rows = rank_children(scalar_totals(depth=1), T)
    assert importance(rows) == {("t", "a"): True, ("t", "b"): True, ("t", "c"): False}


def test_a_summed_child_needs_more_than_ten_events():
    # The original's one event each: every child holds 1 event, none can matter.
    leaves = {path: (value, 1) for path, value in SCALAR.items()}
    totals = {path: Totals(*numbers) for path, numbers in rolled_up(leaves).items()}
    assert not any(importance(rank_children(totals, T)).values())
    # Eleven events are enough; ten are not.
    for events, important in ((10, False), (11, True)):
        rows = rank_children({T: Totals(100, 100), ("t", "x"): Totals(50, events)}, T)
        assert rows[("t", "x")]["important"] is important


def test_original_ratio_case_recursive():
    rows = rank_children(ratio_totals(), T)
    assert importance(rows) == {
        ("t", "a"): False,  # 14.3 a visitor, but asub2 explains it: asub1 left is 11
        ("t", "a", "asub1"): False,
        ("t", "a", "asub2"): True,
        ("t", "b"): True,
        ("t", "c"): False,
    }
    rate = 529994 / 50000
    asub2, b, c = rows[("t", "a", "asub2")], rows[("t", "b")], rows[("t", "c")]
    assert (asub2["value"], asub2["count"]) == (15, 25000)
    assert asub2["difference"] == pytest.approx((15 - rate) / rate)
    assert b["difference"] == pytest.approx((5 - rate) / rate) and b["difference"] < -0.5
    assert asub2["effect"] == pytest.approx(375000 - rate * 25000)
    assert asub2["score"] == pytest.approx(abs(asub2["effect"]) / 529994)
    assert (c["value"], c["count"]) == (5, 1)


def test_original_ratio_case_one_level_leaves_out_the_grandchild():
    rows = rank_children(ratio_totals(depth=1), T)
    assert ("t", "a", "asub1") not in rows
    assert importance(rows) == {("t", "a"): True, ("t", "b"): True, ("t", "c"): False}


def test_a_ratio_child_needs_more_than_five_under_the_denominator():
    for visitors, important in ((5, False), (6, True)):
        rows = rank_children({T: Totals(1000, 10, 100),
                              ("t", "x"): Totals(visitors * 20, 1, visitors)}, T)
        assert rows[("t", "x")]["important"] is important


def test_effects_of_a_partition_add_up_to_nothing():
    """A child's ratio effect is what it brings of the parent's numerator beyond the parent's
    rate for its denominator: over children that partition the parent, they cancel out."""
    rows = rank_children(ratio_totals(depth=1), T)
    assert sum(row["effect"] for row in rows.values()) == pytest.approx(0, abs=1e-6)


def test_significance_is_a_z_score_that_grows_with_evidence():
    # Four events carry the original's totals: the model cannot call anything significant...
    few = rank_children(ratio_totals(), T)
    assert all(abs(row["significance"]) < 1 for row in few.values())
    # ...the same totals over a hundred times the events are ten times the z-score.
    many = rank_children(ratio_totals(events=100), T)
    for path, row in many.items():
        assert row["significance"] == pytest.approx(10 * few[path]["significance"])
    assert many[("t", "b")]["significance"] < -8 and many[("t", "a", "asub2")]["significance"] > 8
    # By hand for b: u = 529,994 / 400 events, rest = everything but b.
    unit, rate = 529994 / 400, 529994 / 50000
    rest = (529994 - 100000) / 30000
    expected = (5 - rest) / math.sqrt(unit * rate * (1 / 20000 + 1 / 30000))
    assert many[("t", "b")]["significance"] == pytest.approx(expected)


def test_a_summed_significance_is_how_far_the_share_lies_above_ten_percent():
    rows = rank_children(scalar_totals(), T)
    # 121 over 80 events: 1.51 an event, so 80 units; binomial standard error at 10%.
    se = math.sqrt(0.1 * 0.9 / 80)
    assert rows[("t", "b")]["significance"] == pytest.approx((80 / 121 - 0.1) / se)
    assert rows[("t", "c")]["significance"] < 0 < rows[("t", "a", "asub2")]["significance"]
    # Counting hits, the units are the events themselves.
    hits = rank_children({T: Totals(1000, 1000), ("t", "x"): Totals(150, 150)}, T)
    assert hits[("t", "x")]["significance"] == pytest.approx(0.05 / math.sqrt(0.09 / 1000))


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method, in chunks so that exp() stays representable)."""
    count = 0
    while mean > 0:
        step = min(mean, 50.0)
        mean -= step
        limit, product = math.exp(-step), rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count


def test_under_the_null_the_ratio_z_score_is_standard_normal():
    """Two children with one true rate, numerators Poisson as the model says: the z-scores
    have mean about 0 and deviation about 1 (seeded; 2,000 draws: the bounds are about four
    standard errors wide)."""
    rng = random.Random("rank-null")
    scores = []
    for _ in range(2000):
        clicks = (_poisson(rng, 0.2 * 800), _poisson(rng, 0.2 * 1200))
        views = (800, 1200)  # one event a view: the unit is 1 click
        totals = {T: Totals(sum(clicks), sum(views), sum(views)),
                  ("t", "x"): Totals(clicks[0], views[0], views[0]),
                  ("t", "y"): Totals(clicks[1], views[1], views[1])}
        scores.append(rank_children(totals, T)[("t", "x")]["significance"])
    assert abs(statistics.fmean(scores)) < 0.1
    assert 0.93 < statistics.stdev(scores) < 1.07


def test_under_the_null_the_share_z_score_is_standard_normal():
    rng = random.Random("share-null")
    scores = []
    for _ in range(2000):
        events = sum(rng.random() < 0.1 for _ in range(500))  # a share of exactly 10%
        rows = rank_children({T: Totals(500, 500), ("t", "x"): Totals(events, events)}, T)
        scores.append(rows[("t", "x")]["significance"])
    assert abs(statistics.fmean(scores)) < 0.1
    assert 0.93 < statistics.stdev(scores) < 1.07


def test_a_parent_explained_by_a_grandchild_through_an_explained_child():
    # a is all x, x is all y: y is important, and explains both.
    totals = {T: Totals(100, 100), ("t", "a"): Totals(60, 60), ("t", "a", "x"): Totals(58, 58),
              ("t", "a", "x", "y"): Totals(57, 57), ("t", "b"): Totals(40, 40)}
    assert importance(rank_children(totals, T)) == {
        ("t", "a"): False, ("t", "a", "x"): False, ("t", "a", "x", "y"): True,
        ("t", "b"): True}


def test_many_small_children_do_not_explain_their_parent():
    # Ten children of 5% each: none matters alone, so a still does.
    totals = {T: Totals(100, 100), ("t", "a"): Totals(50, 50), ("t", "b"): Totals(50, 50)}
    totals.update({("t", "a", f"k{i}"): Totals(5, 5) for i in range(10)})
    rows = rank_children(totals, T)
    assert rows[("t", "a")]["important"] and rows[("t", "b")]["important"]
    assert not any(rows[("t", "a", f"k{i}")]["important"] for i in range(10))


def test_negative_values_zero_parents_and_empty_denominators():
    # Refunds: a child's share is of the parent's total in absolute value.
    rows = rank_children({T: Totals(-1300, 30), ("t", "ads"): Totals(-2000, 15),
                          ("t", "sales"): Totals(700, 15)}, T)
    assert rows[("t", "ads")]["important"] and rows[("t", "sales")]["important"]
    assert rows[("t", "ads")]["difference"] == pytest.approx(2000 / 1300)
    # A parent that nets to zero: every moving child with the events matters; no share.
    rows = rank_children({T: Totals(0, 30), ("t", "x"): Totals(50, 15),
                          ("t", "y"): Totals(-50, 15)}, T)
    assert all(row["important"] and row["difference"] is None and row["score"] is None
               and row["significance"] is None for row in rows.values())
    # No visitors at all: every ratio is 0, nothing differs, nothing to compare.
    rows = rank_children({T: Totals(0, 4, 0), ("t", "x"): Totals(0, 4, 0)}, T)
    assert rows[("t", "x")] == {"important": False, "score": None, "difference": None,
                                "effect": 0, "value": 0, "count": 0, "significance": None}


def test_answers_never_hold_infinity():
    rows = rank_children({T: Totals(1e-300, 20, 1e-300),
                          ("t", "x"): Totals(1e300, 20, 1e-300)}, T)
    assert all(not isinstance(v, float) or math.isfinite(v)
               for row in rows.values() for v in row.values())


def test_formulas_split_at_their_last_division():
    assert [f.text for f in parse("dollars/visitors").division()] == ["dollars", "visitors"]
    top, bottom = parse("(clicks+shares)/(views*2)").division()
    assert (top.text, bottom.text, bottom.names) == ("clicks+shares", "views*2",
                                                     frozenset({"views"}))
    assert parse("latency:sum/latency:count").division()[1].names == {"latency:count"}
    for summed in ("dollars", "dollars/100", "dollars/hits*100", "-dollars"):
        assert parse(summed).division() is None


def test_paths_are_keyed_as_javascript_writes_them():
    assert path_key(("t", "a")) == '["t","a"]'
    assert path_key(()) == "[]"
    assert path_key(("é", 'say "hi"')) == '["é","say \\"hi\\""]'


# -- parameters ----------------------------------------------------------------------------
def test_parameters(settings):
    query = parse_rank({"dimensions": '["t"]', "value": "value/visitors"}, settings, 1.7e9)
    assert (query.path, query.metrics[0].text, query.depth) == (T, "value/visitors", 8)
    assert parse_rank({"recursive": "false"}, settings, 1.7e9).depth == 1
    assert parse_rank({"depth": "2", "metrics": "dollars"}, settings, 1.7e9).depth == 2
    assert parse_rank({"_": "123"}, settings, 1.7e9).metrics[0].text == "hits"


BAD = [
    ({"dimenssions": "t"}, "dimenssions", "unknown parameter"),
    ({"metrics": "hits,dollars"}, "metrics", "one metric or formula"),
    ({"metrics": '["hits"]'}, "metrics", "one metric or formula"),
    ({"value": "a", "metrics": "b"}, "metrics", "give one"),
    ({"value": "dollars/("}, "value", "does not parse"),
    ({"recursive": "maybe"}, "recursive", "true or false"),
    ({"recursive": "true", "depth": "2"}, "recursive", "not both"),
    ({"depth": "0"}, "depth", "between 1 and 8"),
    ({"depth": "x"}, "depth", "whole number"),
    ({"period": "5s:1h"}, "period", "unknown period"),
    ({"since": "soon"}, "since", "ISO 8601"),
    ({"dimensions": '{"a": 1, "b": 2}'}, "dimensions", "one dimension path"),
]


@pytest.mark.parametrize("params, param, words", BAD, ids=[case[2] for case in BAD])
def test_bad_parameters_name_themselves(settings, params, param, words):
    with pytest.raises(BadRequest) as refused:
        parse_rank(params, settings, 1.7e9)
    assert refused.value.param == param and words in str(refused.value)


# -- through the store -----------------------------------------------------------------------
def count_scalar(whale: HailWhale, pk: str = "") -> None:
    for path, value in SCALAR.items():
        for _ in range(SCALAR_EVENTS):
            whale.log(list(path), {"value": value / SCALAR_EVENTS}, pk=pk)


def count_ratio(whale: HailWhale, pk: str = "") -> None:
    for path, (value, visitors) in RATIO.items():
        whale.log(list(path), {"value": value, "visitors": visitors}, pk=pk)


def query_of(store, value: str, depth: int = 8, path: Path = T, pk: str = "") -> Query:
    period = find_period(store.settings.periods, None)
    now = time.time()
    return Query(pk, path, (parse(value),), period, now - 3600, now, depth)


def test_both_cases_read_through_the_store(store):
    whale = HailWhale(store)
    count_scalar(whale, "scalar")
    count_ratio(whale, "ratio")
    rows = ranked(store, query_of(store, "value", pk="scalar"))
    assert importance(rows) == importance(rank_children(scalar_totals(), T))
    assert rows[("t", "b")]["value"] == pytest.approx(80)
    assert rows[("t", "b")]["count"] == 20
    rows = ranked(store, query_of(store, "value/visitors", pk="ratio"))
    expected = rank_children(ratio_totals(), T)
    assert list(rows) == list(expected)
    for path, row in rows.items():
        assert row == {name: pytest.approx(value) for name, value in expected[path].items()}
    one = ranked(store, query_of(store, "value/visitors", depth=1, pk="ratio"))
    assert set(one) == {("t", "a"), ("t", "b"), ("t", "c")}


def test_the_python_api(store):
    whale = HailWhale(store)
    count_scalar(whale)
    count_ratio(whale, "shop")
    rows = whale.rank(["t"], value="value")
    assert importance(rows) == importance(rank_children(scalar_totals(), T))
    assert all(set(row) == FIELDS for row in rows.values())
    rows = whale.rank(["t"], value="value/visitors", pk="shop", period="15s:3h")
    assert rows[("t", "a", "asub2")]["important"] and rows[("t", "b")]["important"]
    assert not rows[("t", "a", "asub1")]["important"] and not rows[("t", "c")]["important"]
    one = whale.rank("t", value="value/visitors", pk="shop", recursive=False)
    assert ("t", "a", "asub1") not in one and ("t", "a") in one
    with pytest.raises(BadRequest) as refused:
        whale.rank("t", value="value/(")
    assert refused.value.param == "value"


# -- GET /rank through WSGI ------------------------------------------------------------------
def post_scalar(app, pk: str = "") -> None:
    events = [{"pk": pk, "dimensions": list(path), "metrics": {"value": value / SCALAR_EVENTS}}
              for path, value in SCALAR.items() for _ in range(SCALAR_EVENTS)]
    assert app.post_json("/count", events).json["counted"] == len(events)


def post_ratio(app, pk: str = "") -> None:
    events = [{"pk": pk, "dimensions": list(path),
               "metrics": {"value": value, "visitors": visitors}}
              for path, (value, visitors) in RATIO.items()]
    assert app.post_json("/count", events).json["counted"] == len(events)


def by_path(answer: dict) -> dict:
    """The answer's rows by path tuple, checking each key is its row's dimension."""
    rows = {}
    for key, row in answer["ranked"].items():
        assert key == path_key(tuple(row["dimension"]))
        rows[tuple(row["dimension"])] = row
    return rows


def test_rank_answers_the_original_scalar_case(app):
    post_scalar(app)
    answer = app.get("/rank", {"dimensions": '["t"]', "value": "value"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    body = answer.json
    assert (body["pk"], body["dimension"], body["value"], body["rule"]) == ("", ["t"], "value",
                                                                           "sum")
    assert body["period"] == "15s:3h" and body["depth"] == 8
    assert body["parent"] == {"value": pytest.approx(121), "count": 80}
    rows = by_path(body)
    assert {path: row["important"] for path, row in rows.items()} == {
        ("t", "a"): False, ("t", "a", "asub1"): False, ("t", "a", "asub2"): True,
        ("t", "b"): True, ("t", "c"): False}
    assert '["t","a","asub2"]' in body["ranked"]
    assert list(body["ranked"])[:2] == ['["t","b"]', '["t","a","asub2"]']
    assert set(rows[("t", "b")]) == FIELDS | {"dimension"}
    # One level: a is important, nothing below it is asked to explain it.
    one = by_path(app.get("/rank", {"dimensions": "t", "metrics": "value",
                                    "recursive": "false"}).json)
    assert {path: row["important"] for path, row in one.items()} == {
        ("t", "a"): True, ("t", "b"): True, ("t", "c"): False}


def test_rank_answers_the_original_ratio_case(app):
    post_ratio(app, "shop")
    params = {"pk": "shop", "dimensions": "t", "value": "value/visitors"}
    body = app.get("/rank", params).json
    assert body["rule"] == "ratio"
    assert body["parent"] == {"value": pytest.approx(529994 / 50000), "count": 50000}
    rows = by_path(body)
    assert not rows[("t", "a", "asub1")]["important"]
    assert rows[("t", "a", "asub2")]["important"] and rows[("t", "b")]["important"]
    assert not rows[("t", "c")]["important"]
    expected = rank_children(ratio_totals(), T)
    for path, row in rows.items():
        assert {k: v for k, v in row.items() if k != "dimension"} == \
            {name: pytest.approx(value) for name, value in expected[path].items()}
    one = app.get("/rank", {**params, "recursive": "false"}).json["ranked"]
    assert '["t","a","asub1"]' not in one and '["t","a"]' in one
    assert set(app.get("/rank", {**params, "depth": "2"}).json["ranked"]) == \
        set(body["ranked"])


def test_rank_of_the_root_an_empty_window_and_nothing_counted(app, clock):
    assert app.get("/rank").json["ranked"] == {}
    post_scalar(app)
    top = by_path(app.get("/rank", {"value": "value", "recursive": "0"}).json)
    assert list(top) == [("t",)] and top[("t",)]["important"]
    # The same children an hour later, in a window that starts after them: nothing seen.
    clock.now += 7200
    later = app.get("/rank", {"value": "value", "since": "10m"}).json
    assert later["ranked"] == {} and later["parent"] == {"value": 0, "count": 0}


@pytest.mark.parametrize("params, param, words", BAD, ids=[case[2] for case in BAD])
def test_bad_rank_requests_are_400s_naming_the_parameter(app, params, param, words):
    answer = app.get("/rank", params, status=400)
    assert answer.json["param"] == param
    assert words in answer.json["error"]


def test_a_statistic_the_metric_lacks_is_refused(app):
    app.get("/count", {"dimensions": "t", "metrics": '{"dollars": 5}'})
    answer = app.get("/rank", {"value": "dollars:p99"}, status=400)
    assert answer.json["param"] == "value" and "it has no :p99" in answer.json["error"]


def test_rank_reads_are_bounded_by_max_query_cells(client, settings, clock):
    import dataclasses

    import webtest

    from hailwhale.store import Store
    from whale import create_app

    small = dataclasses.replace(settings, max_query_cells=2000)
    app = webtest.TestApp(create_app(Store(client, small), clock=clock))
    app.post_json("/count", [{"dimensions": ["t", f"c{i}"]} for i in range(10)])
    # The dimension and its 10 children over 721 buckets of 15s:3h: past 2,000 cells.
    answer = app.get("/rank", {"dimensions": "t"}, status=400)
    assert answer.json["param"] == "depth" and "MAX_QUERY_CELLS" in answer.json["error"]
    assert app.get("/rank", {"dimensions": "t", "since": "5m"}).status_int == 200


def test_rank_needs_a_read_token_covering_the_dimension(client, clock):
    import webtest

    from hailwhale import auth
    from hailwhale.config import load_settings
    from hailwhale.store import Store
    from whale import create_app

    secret = "rank-secret-0123456789-abcdefghijklmnop"
    app = webtest.TestApp(create_app(Store(client, load_settings(
        environ={"HAILWHALE_SECRET": secret})), clock=clock))
    params = {"pk": "shop", "dimensions": "t"}
    assert app.get("/rank", params, status=401).json["param"] == "token"
    write = auth.issue(secret, "write", ["shop"])
    assert app.get("/rank", {**params, "token": write}, status=403)
    other = auth.issue(secret, "read", ["other"])
    assert app.get("/rank", {**params, "token": other}, status=403)
    below = auth.issue(secret, "read", ["shop"], ("t",))
    assert app.get("/rank", {**params, "token": below}).status_int == 200
    assert app.get("/rank", {"pk": "shop", "token": below}, status=403)
    read = auth.issue(secret, "read", ["shop"])
    answer = app.get("/rank", params, headers={"Authorization": f"Bearer {read}"})
    assert answer.json["ranked"] == {}


def test_the_openapi_document_names_the_parameters_rank_reads():
    from hailwhale.rank import KNOWN
    from hailwhale_web.openapi import document

    documented = {p["name"] for p in document("whale")["paths"]["/rank"]["get"]["parameters"]}
    assert documented == KNOWN | {"token"}


def test_children_of_many_paths_in_one_read(store):
    whale = HailWhale(store)
    count_ratio(whale)
    paths = [T, ("t", "a"), ("t", "b"), ("nothing",)]
    assert store.children_of("", paths) == {path: store.children("", path) for path in paths}
    assert store.children_of("", paths)[T] == ["a", "b", "c"]
    assert store.children_of("", paths, since=time.time() + 60)[T] == []
    assert store.children_of("", []) == {}
