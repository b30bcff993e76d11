"""Decisions (issue 12, part 1): outcomes counted under the decision's own key space, and
the choice of option for a visitor, with the original project's test cases
(leewardbound/hailwhale, hailwhale/test.py: testBasicDecision, testInformedDecision),
through the Python API and Whale's HTTP API, on real Redis and fakeredis."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import webtest

from hailwhale import HailWhale
from hailwhale.decisions import beats, contexts
from whale import create_app

OPTIONS = ["a", "b", "c", "d"]


@pytest.fixture
def api(store):
    return HailWhale(store)


def test_a_decision_from_no_information_is_any_option(api):
    assert api.decide("test", "random", [1, 2, 3])["option"] in [1, 2, 3]
    seen = Counter(api.decide("test", "random", ["x", "y"], rng=random.Random(n))["option"]
                   for n in range(40))
    assert set(seen) == {"x", "y"}  # not always the same one


def basic(api, pk="basic"):
    # Slogan A makes a huge profit, B and C make nothing, D looks promising on 10 visitors.
    api.count_decision(pk, "slogan", "a", metrics={"dollars": 5000, "visitors": 1000})
    api.count_decision(pk, "slogan", "b", metrics={"dollars": 0, "visitors": 2000})
    api.count_decision(pk, "slogan", "c", metrics={"dollars": 0, "visitors": 2000})
    api.count_decision(pk, "slogan", "d", metrics={"dollars": 50, "visitors": 10})


def test_the_originals_basic_decision(api):
    basic(api)
    answer = api.decide("basic", "slogan", OPTIONS, formula="dollars/visitors",
                        bad_idea_threshold=0, test_idea_threshold=0)
    assert (answer["good"], answer["bad"], answer["test"]) == (["a"], ["b", "c"], ["d"])
    assert answer["option"] == "a"
    a = answer["scores"]["a"]
    assert (a["value"], a["numerator"], a["denominator"], a["context"]) == (5, 5000, 1000, [])
    assert a["beats_others"] > 0.999 and answer["scores"]["b"]["beats_others"] < 0.001
    # The knobs: a test option with probability test_idea_threshold, a bad one likewise.
    assert api.decide("basic", "slogan", OPTIONS, formula="dollars/visitors",
                      test_idea_threshold=1, bad_idea_threshold=0)["option"] == "d"
    assert api.decide("basic", "slogan", OPTIONS, formula="dollars/visitors",
                      test_idea_threshold=0, bad_idea_threshold=1)["option"] in ("b", "c")
    rng = random.Random(5)
    chosen = Counter(api.decide("basic", "slogan", OPTIONS, formula="dollars/visitors",
                                rng=rng)["option"] for _ in range(400))
    assert chosen["a"] > 320 and chosen["d"] > 5 and chosen["b"] + chosen["c"] > 5


def informed(api, pk="informed"):
    # A is the clear winner, except for visitors from the UK, where B wins.
    api.count_decision(pk, "offer", "a", metrics={"dollars": 50000, "visitors": 10000})
    api.count_decision(pk, "offer", "b", metrics={"dollars": 0, "visitors": 4000})
    api.count_decision(pk, "offer", "b", {"country": "uk"},
                       metrics={"dollars": 5000, "visitors": 500})
    api.count_decision(pk, "offer", "c", metrics={"dollars": 0, "visitors": 7500})
    api.count_decision(pk, "offer", "d", metrics={"dollars": 5, "visitors": 1})


def test_the_originals_informed_decision(api):
    informed(api)
    anyone = api.decide("informed", "offer", OPTIONS, formula="dollars/visitors")
    assert (anyone["good"], anyone["bad"], anyone["test"]) == (["a"], ["b", "c"], ["d"])
    uk = api.decide("informed", "offer", OPTIONS, {"country": "uk"},
                    formula="dollars/visitors")
    assert (uk["good"], uk["bad"], uk["test"]) == (["a", "b"], ["c"], ["d"])
    assert uk["scores"]["b"]["context"] == ["country", "uk"]  # the most specific with data
    assert uk["scores"]["a"]["context"] == []  # a has no UK data: its overall result
    chosen = Counter(api.decide("informed", "offer", OPTIONS, {"country": "uk"},
                                formula="dollars/visitors", bad_idea_threshold=0,
                                test_idea_threshold=0)["option"] for _ in range(100))
    assert chosen["b"] >= 70, chosen


def test_the_best_earner_of_each_country_for_that_country(api):
    best = {"us": "en", "mx": "sp", "br": "pt"}
    for country, winner in best.items():
        for language in ("en", "sp", "pt"):
            per_visitor = 5 if language == winner else 1
            api.count_decision("lang", "language", language, {"country": country},
                               metrics={"dollars": 400 * per_visitor, "visitors": 400})
    for country, winner in best.items():
        answer = api.decide("lang", "language", ["en", "sp", "pt"], {"country": country},
                            formula="dollars/visitors", test_idea_threshold=0,
                            bad_idea_threshold=0)
        assert answer["option"] == winner and answer["good"] == [winner], answer
    # Overall each language earns the same: no option beats the others.
    overall = api.decide("lang", "language", ["en", "sp", "pt"], formula="dollars/visitors")
    assert overall["good"] == [] and overall["bad"] == []


def test_contexts_and_the_closed_form_comparison():
    assert contexts([("country", "uk"), ("device",)]) == [
        ("country", "uk"), ("country",), ("device",), ()]
    assert beats((5000, 1000), (50, 4010), 1.0) > 0.999
    assert beats((50, 10), (5000, 1000), 1.0) == pytest.approx(0.5, abs=0.1)
    assert beats((0, 2000), (5050, 3010), 1.0) < 0.001


# -- HTTP --------------------------------------------------------------------------------
def test_count_decision_and_decide_over_http(app):
    for option, dollars, visitors in (("a", 5000, 1000), ("b", 0, 2000), ("c", 0, 2000),
                                      ("d", 50, 10)):
        answer = app.get("/count_decision", {"pk": "shop", "decision": "slogan",
                                             "option": option, "metrics": json.dumps(
                                                 {"dollars": dollars, "visitors": visitors})})
        assert answer.json == {"ok": True, "counted": 1}
    answer = app.get("/decide", {"pk": "shop", "decision": "slogan",
                                 "options": json.dumps(OPTIONS), "metrics": "dollars/visitors",
                                 "test_idea_threshold": "0", "bad_idea_threshold": "0"}).json
    assert answer["option"] == "a" and answer["bad"] == ["b", "c"] and answer["test"] == ["d"]
    assert answer["scores"]["a"]["chosen_recently"] == 0
    again = app.get("/decide", {"pk": "shop", "decision": "slogan",
                                "options": "a,b,c,d", "metrics": "dollars/visitors"}).json
    assert again["scores"]["a"]["chosen_recently"] == 1  # the first answer was counted
    # A decision's key space is its own: not a pk, not a dimension of the pk.
    assert app.get("/pks").json["pks"] == []
    assert app.get("/dimensions", {"pk": "shop"}).json["children"] == []


@pytest.mark.parametrize("route, params, param", [
    ("/count_decision", {"decision": "x"}, "option"),
    ("/count_decision", {"option": "a"}, "decision"),
    ("/count_decision", {"decision": "x", "option": "a", "metrics": '{"v": "is_unique"}'},
     "metrics"),
    ("/count_decision", {"decision": "x", "option": "a", "color": "red"}, "color"),
    ("/decide", {"decision": "x"}, "options"),
    ("/decide", {"decision": "x", "options": "[]"}, "options"),
    ("/decide", {"decision": "x", "options": '["a"]', "metrics": "a+b"}, "metrics"),
    ("/decide", {"decision": "x", "options": '["a"]', "test_idea_threshold": "2"},
     "test_idea_threshold"),
    ("/decide", {"decision": "x", "options": '["a"]', "tzoffset": "60"}, "tzoffset"),
])
def test_bad_decision_requests_are_400s_naming_the_parameter(app, route, params, param):
    answer = app.get(route, params, expect_errors=True)
    assert answer.status_int == 400 and answer.json["param"] == param, answer.json


def test_a_decision_reads_at_most_max_query_cells(app):
    """100 options for a visitor of 16 deep branches would read millions of cells: a 400."""
    visitor = json.dumps({f"k{i}": ["a", "b", "c", "d", "e", "f", "g"] for i in range(16)})
    answer = app.get("/decide", {"decision": "x", "options": json.dumps(
        [f"o{i}" for i in range(100)]), "dimensions": visitor}, expect_errors=True)
    assert answer.status_int == 400 and answer.json["param"] == "options", answer.json
    assert "MAX_QUERY_CELLS" in answer.json["error"]


def test_tokens_cover_decisions_by_pk(store, clock):
    import dataclasses

    from hailwhale import auth

    settings = dataclasses.replace(store.settings, secret="s" * 32)
    app = webtest.TestApp(create_app(store, settings, clock=clock))
    write = auth.issue(settings.secret, "write", ["shop"])
    read = auth.issue(settings.secret, "read", ["shop"])
    other = auth.issue(settings.secret, "read", ["elsewhere"])
    outcome = {"pk": "shop", "decision": "slogan", "option": "a", "metrics": '{"dollars": 5}'}
    assert app.get("/count_decision", outcome, expect_errors=True).status_int == 401
    assert app.get("/count_decision", {**outcome, "token": read},
                   expect_errors=True).status_int == 403
    assert app.get("/count_decision", {**outcome, "token": write}).json["counted"] == 1
    ask = {"pk": "shop", "decision": "slogan", "options": '["a", "b"]'}
    assert app.get("/decide", {**ask, "token": other}, expect_errors=True).status_int == 403
    assert app.get("/decide", {**ask, "token": read}).json["option"] in ("a", "b")
