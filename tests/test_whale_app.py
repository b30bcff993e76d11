"""The Whale app through WSGI, on real Redis and on fakeredis."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hailwhale.store import Store, connect

# The three examples of the original README, exactly as written there.
SEED_EVENTS = [
    'dimension=services&metric={"dollars": 200}',
    'dimension=advertising&metric={"dollars": -2000}',
    'dimensions={"sales": "p123"}&metric={"dollars": 500}',
]
# The same, with the plural spellings.
PLURAL_EVENTS = [
    'dimensions=services&metrics={"dollars": 200}',
    'dimensions=advertising&metrics={"dollars": -2000}',
    'dimensions={"sales": "p123"}&metrics={"dollars": 500}',
]


def fire(app, events):
    for query in events:
        answer = app.get("/count?" + query)
        assert answer.status_int == 200
        assert answer.json == {"ok": True, "counted": 1}


def plot(app, **params):
    params = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in params.items()}
    return app.get("/plotpoints", params).json


def by_label(answer):
    return {series["label"]: series for series in answer["series"]}


@pytest.mark.parametrize("events", [SEED_EVENTS, PLURAL_EVENTS], ids=["singular", "plural"])
def test_seed_revenue_example(app, events):
    fire(app, events)
    answer = plot(app, metrics=["dollars", "hits", "dollars/hits"], depth=1)
    series = by_label(answer)
    assert series["Overall: dollars"]["total"] == -1300
    assert series["Overall: hits"]["total"] == 3
    assert series["Overall: dollars/hits"]["total"] == pytest.approx(-1300 / 3)
    # Every top-level dimension is above 10% of the overall |dollars|, so all are shown.
    assert series["services: dollars"]["total"] == 200
    assert series["advertising: dollars"]["total"] == -2000
    assert series["sales: dollars"]["total"] == 500
    for name in ("services", "advertising", "sales"):
        assert series[f"{name}: hits"]["total"] == 1
    # The selected dimension first, then children by dollars, largest first.
    assert [s["dimension"] for s in answer["series"][::3]] == [
        [], ["sales"], ["services"], ["advertising"]]
    # Per bucket: all three landed in the current bucket; the ratio is per bucket too.
    ratio = series["Overall: dollars/hits"]["data"]
    nonzero = [value for _, value in ratio if value]
    assert nonzero == [pytest.approx(-1300 / 3)]

    nested = by_label(plot(app, dimensions="sales", metrics=["dollars"], depth=1))
    assert nested["sales"]["total"] == 500
    assert nested["sales / p123"]["total"] == 500
    assert nested["sales / p123"]["dimension"] == ["sales", "p123"]

    totals = app.get("/totals", {"metrics": "dollars,hits,dollars/hits"}).json
    assert totals["totals"][0]["dimension"] == []
    assert totals["totals"][0]["totals"] == {
        "dollars": -1300, "hits": 3, "dollars/hits": pytest.approx(-1300 / 3)}


def test_plotpoints_has_every_bucket_in_flot_form(app, clock, settings):
    fire(app, SEED_EVENTS)
    answer = plot(app, metrics=["dollars"], since="1h")
    assert answer["period"] == "15s:3h"
    data = answer["series"][0]["data"]
    assert len(data) in (240, 241)  # an hour of 15s buckets, the current one included
    stamps = [ms for ms, _ in data]
    assert all(b - a == 15_000 for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(isinstance(ms, int) and ms % 15_000 == 0 for ms in stamps)
    assert stamps[-1] <= clock.now * 1000 < stamps[-1] + 15_000
    assert sum(value for _, value in data) == -1300
    assert answer["series"][0]["label"] == "Overall"


def test_other_periods_and_their_names(app):
    fire(app, SEED_EVENTS)
    for period in ("1h:7d", "1d:1y", "1h", "86400:31536000"):
        answer = plot(app, metrics=["dollars"], period=period, since="today")
        assert answer["series"][0]["total"] == -1300, period
    periods = app.get("/periods").json["periods"]
    assert [p["name"] for p in periods] == ["15s:3h", "1h:7d", "1d:1y"]


def test_threshold_limit_and_sort(app):
    shares = {"big": 70, "middle": 25, "small": 5}
    for name, dollars in shares.items():
        app.get("/count", {"dimensions": json.dumps({"sales": name}),
                           "metrics": json.dumps({"dollars": dollars})})
    shown = lambda **kw: [s["dimension"] for s in plot(app, dimensions="sales",  # noqa: E731
                                                        metrics=["dollars"], depth=1,
                                                        **kw)["series"]]
    assert shown() == [["sales"], ["sales", "big"], ["sales", "middle"]]
    assert shown(threshold=0.01) == [["sales"], ["sales", "big"], ["sales", "middle"],
                                     ["sales", "small"]]
    assert shown(threshold=0, limit=1) == [["sales"], ["sales", "big"]]
    # Ranked by hits every child is equal (1 each): all three pass 10% of 3, by name.
    assert shown(sort="hits") == [["sales"], ["sales", "big"], ["sales", "middle"],
                                  ["sales", "small"]]
    assert shown(sort="-dollars", threshold=0) == [["sales"], ["sales", "small"],
                                                   ["sales", "middle"], ["sales", "big"]]


def test_depth_two_thresholds_each_level_against_its_parent(app):
    for branch, dollars in (({"eu": "p1"}, 90), ({"eu": "p2"}, 9), ({"us": "p3"}, 1)):
        app.get("/count", {"dimensions": json.dumps({"sales": branch}),
                           "metrics": json.dumps({"dollars": dollars})})
    shown = [s["dimension"] for s in
             plot(app, dimensions="sales", metrics=["dollars"], depth=2)["series"]]
    # us (1 of 100) is under 10%; p2 (9 of eu's 99) is 9.1%: hidden.
    assert shown == [["sales"], ["sales", "eu"], ["sales", "eu", "p1"]]


def test_dimensions_lists_children_for_drill_down(app):
    fire(app, SEED_EVENTS)
    root = app.get("/dimensions").json
    assert [c["name"] for c in root["children"]] == ["advertising", "sales", "services"]
    sales = app.get("/dimensions", {"dimensions": "sales"}).json
    assert sales["children"] == [{"name": "p123", "dimension": ["sales", "p123"]}]
    assert app.get("/dimensions", {"dimensions": '["sales","p123"]'}).json["children"] == []


def test_pk_keeps_namespaces_apart(app):
    app.get("/count", {"pk": "shop", "dimensions": "sales", "metrics": '{"dollars": 5}'})
    app.get("/count", {"category": "blog", "dimensions": "sales", "metrics": '{"dollars": 7}'})
    assert plot(app, pk="shop", metrics=["dollars"])["series"][0]["total"] == 5
    assert plot(app, pk="blog", metrics=["dollars"])["series"][0]["total"] == 7
    assert plot(app, metrics=["dollars"])["series"][0]["total"] == 0
    assert app.get("/pks").json["pks"] == ["blog", "shop"]


def test_unique_visitors_are_distinct_across_buckets(app, clock):
    for visitor in ("a", "b", "a", "c", "a"):
        app.get("/count", {"dimensions": json.dumps(["pageviews", "site.com", visitor]),
                           "metrics": '{"visitors": "is_unique"}'})
    clock.now += 60  # a later bucket: "a" comes back
    app.get("/count", {"dimensions": '["pageviews", "site.com", "a"]',
                       "metrics": '{"visitors": "is_unique"}'})
    answer = plot(app, dimensions="pageviews", metrics=["visitors", "hits"], since="10m")
    series = by_label(answer)
    per_bucket = [v for _, v in series["pageviews: visitors"]["data"] if v]
    assert per_bucket == [3, 1]
    assert series["pageviews: visitors"]["total"] == 3  # not 4: merged, not summed
    assert series["pageviews: hits"]["total"] == 6
    assert app.get("/metrics").json["metrics"] == {"visitors": "unique", "hits": "sum"}


def test_backfill_with_at(app, clock):
    hour_ago = clock.now - 3600
    app.get("/count", {"dimensions": "services", "metrics": '{"dollars": 9}',
                       "at": str(int(hour_ago))})
    answer = plot(app, metrics=["dollars"], period="1h:7d", since="2h")
    points = [(ms, v) for ms, v in answer["series"][0]["data"] if v]
    assert len(points) == 1 and points[0][1] == 9
    assert points[0][0] <= hour_ago * 1000 < points[0][0] + 3_600_000


def test_post_one_a_list_and_ndjson(app):
    assert app.post_json("/count", {"dimensions": "a", "metrics": {"n": 1}}).json["counted"] == 1
    assert app.post_json("/count", [{"dimensions": "a"}, {"dimension": "b",
                                                          "metric": {"n": 2.5}}]).json[
        "counted"] == 2
    body = '{"dimensions": "a"}\n{"dimensions": ["b", "c"], "metrics": {"n": 0.5}}\n'
    assert app.post("/count", body, content_type="application/x-ndjson").json["counted"] == 2
    series = by_label(plot(app, metrics=["hits", "n"], depth=1, threshold=0))
    assert series["Overall: hits"]["total"] == 5
    assert series["Overall: n"]["total"] == 4
    assert series["b: n"]["total"] == 3


def test_count_gif_for_image_beacons(app):
    answer = app.get("/count.gif", {"dimensions": "beacon"})
    assert answer.content_type == "image/gif"
    assert answer.body.startswith(b"GIF89a")
    assert "no-store" in answer.headers["Cache-Control"]
    assert plot(app, dimensions="beacon")["series"][0]["total"] == 1


def test_reads_carry_cors_headers(app):
    assert app.get("/plotpoints").headers["Access-Control-Allow-Origin"] == "*"
    preflight = app.options("/count", headers={"Origin": "http://admin.example"})
    assert preflight.status_int == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"


def test_health_and_unknown_paths(app):
    health = app.get("/health").json
    assert (health["ok"], health["store"], health["auth"]) == (True, "up", "open")
    assert "no SECRET" in health["warning"]
    missing = app.get("/nope", status=404)
    assert "error" in missing.json


BAD_COUNTS = [
    ({"metrics": "{bad"}, "metrics", "malformed JSON"),
    ({"metrics": '{"dollars": "lots"}'}, "metrics.dollars", "is_unique"),
    ({"metrics": '{"dollars": NaN}'}, "metrics.dollars", "finite"),
    ({"metrics": '{"dollars": Infinity}'}, "metrics.dollars", "finite"),
    ({"dimensions": '["a", ""]'}, "dimensions", "empty"),
    ({"dimensions": json.dumps(["l"] * 9)}, "dimensions", "deeper than 8"),
    ({"dimensions": json.dumps({f"b{i}": "x" for i in range(17)})}, "dimensions", "branches"),
    ({"at": "1990-01-01T00:00:00Z"}, "at", "retention"),
    ({"at": "2999-01-01T00:00:00Z"}, "at", "future"),
    ({"dimensions": "a", "dimension": "b"}, "dimensions", "not both"),
    ({"dimenssions": "a"}, "dimenssions", "unknown parameter"),
]


@pytest.mark.parametrize("params, param, words", BAD_COUNTS,
                         ids=[case[2] for case in BAD_COUNTS])
def test_bad_count_is_400_and_stores_nothing(app, store, params, param, words):
    answer = app.get("/count", {"metrics": '{"dollars": 1}', **params}, status=400)
    assert answer.json["param"] == param
    assert words in answer.json["error"]
    assert store.redis.dbsize() == 0


BAD_QUERIES = [
    ({"period": "5s:1h"}, "period", "unknown period"),
    ({"metrics": "dollars/"}, "metrics", "does not parse"),
    ({"metrics": "(a+b"}, "metrics", "does not parse"),
    ({"sort": "a**b"}, "sort", "does not parse"),
    ({"depth": "x"}, "depth", "whole number"),
    ({"threshold": "2"}, "threshold", "between"),
    ({"since": "yesterday-ish"}, "since", "ISO 8601"),
    ({"since": "0", "period": "15s:3h"}, "since", "buckets"),
    ({"dimensions": '{"a": 1, "b": 2}'}, "dimensions", "one dimension path"),
]


@pytest.mark.parametrize("params, param, words", BAD_QUERIES,
                         ids=[case[2] for case in BAD_QUERIES])
def test_bad_query_is_400_naming_the_parameter(app, params, param, words):
    answer = app.get("/plotpoints", params, status=400)
    assert answer.json["param"] == param
    assert words in answer.json["error"]
    assert app.get("/totals", params, status=400).json["param"] == param


def test_a_bad_event_in_a_batch_stores_none_of_it(app, store):
    answer = app.post_json("/count", [{"dimensions": "ok"}, {"metrics": {"x": "y"}}],
                           status=400)
    assert answer.json["error"].startswith("event 1: metrics.x")
    assert store.redis.dbsize() == 0
    assert app.post("/count", "", status=400).json["param"] == "body"
    assert app.post("/count", "{nope", status=400).json["param"] == "body"
    # A form post is one event, like a GET.
    assert app.post("/count", {"dimensions": "form"}).json["counted"] == 1


def test_error_messages_quote_what_was_sent(app):
    answer = app.get("/count", {"metrics": '{"dollars": "lots"}'}, status=400)
    assert '"lots"' in answer.json["error"]


def test_unreachable_redis_is_503_with_retry_after(settings):
    import webtest

    from whale import create_app

    dead = Store(connect("redis://127.0.0.1:1/0"), settings)
    app = webtest.TestApp(create_app(dead))
    answer = app.get("/count", {"dimensions": "a"}, status=503)
    assert answer.headers["Retry-After"] == "1"
    assert "unavailable" in answer.json["error"]
    assert app.get("/health", status=503).json["error"]


def test_a_query_string_that_is_not_utf8_is_400_and_stores_nothing(app, store):
    answer = app.get("/count?dimensions=caf%E9", status=400)
    assert answer.json["param"] == "query"
    assert "UTF-8" in answer.json["error"]
    assert store.redis.dbsize() == 0
    assert app.get("/count?dimensions=caf%C3%A9").json["ok"]


@given(st.lists(st.tuples(st.text(), st.text()), max_size=5), st.booleans())
def test_query_strings_parse_as_bottle_parses_them(pairs, plus):
    import bottle

    from hailwhale_web.plumbing import parse_query_string

    # As a WSGI server hands it over: percent-encoded UTF-8, as latin-1 text; "+" or "%20".
    query = "&".join(f"{quote_plus(k) if plus else quote(k)}={quote_plus(v) if plus else quote(v)}"
                     for k, v in pairs)
    expected = dict(bottle.BaseRequest({"QUERY_STRING": query}).query.decode())
    assert parse_query_string(query) == expected


@pytest.mark.parametrize("route, params", [
    ("/plotpoints", {"metrics": "hits", "tzoffset": "60"}),
    ("/totals", {"dimensions": "a", "live": "1"}),
    ("/dimensions", {"dimensions": "a", "depth": "1"}),
    ("/metrics", {"pk": "", "dimensions": "a"}),
])
def test_queries_refuse_unknown_parameters(app, route, params):
    """As /count does: an unknown parameter is a 400 naming it (it used to be ignored
    silently, so tzoffset=60 drew UTC days); names starting with _ stay cache busters."""
    unknown = next(name for name in params if name not in ("metrics", "dimensions", "pk")
                   or (route == "/metrics" and name == "dimensions"))
    answer = app.get(route, params, expect_errors=True)
    assert answer.status_int == 400 and answer.json["param"] == unknown, answer.json
    assert app.get(route, {k: v for k, v in params.items() if k != unknown} |
                   {"_": "1732270000"}).status_int == 200
