"""Grafana's Graphite data source against Whale (issue 11, part 3): the exact requests it
sends, replayed through WSGI on real Redis and fakeredis, and once through real HTTP under
uWSGI; each answer checked against /plotpoints for the same data.

Where the requests come from (grafana/grafana, public/app/plugins/datasource/graphite/):
- datasource.ts ``query()`` and ``buildGraphiteParams()``: ``POST /render``, ``Content-Type:
  application/x-www-form-urlencoded``, body ``target=<encodeURIComponent(target)>`` for each
  target, then ``from``, ``until``, ``format=json``, ``maxDataPoints``; since Grafana 10 each
  target is wrapped as ``aliasSub(<target>, "(^.*$)", "\\1 <refId>")`` and the refId read
  back from the series name's last word (``convertResponseToDataFrames``); ``from``/``until``
  are ``translateTime()`` of the range: unix seconds, a second wider when the range's
  seconds are not zero. Older versions (datasource.ts at 01a1737) sent the raw range
  (``from=-1h&until=now``) and unwrapped targets.
- ``testDatasource()`` ("Save & test"): the same render of ``constantLine(100)``, range
  now-1h to now, ``maxDataPoints=300``; before, ``metricFindQuery('*')``. The backend's health
  check (pkg/tsdb/graphite/healthcheck.go, query.go) posts Go's ``url.Values.Encode()``:
  ``format=json&from=...&maxDataPoints=100&target=constantLine%28100%29&until=...``.
- ``requestMetricFind()``: ``POST /metrics/find`` with ``from``/``until`` in the query string
  and the body ``query=<the pattern, not encoded>``; the query editor asks ``*``, then
  ``<path>.*``, and ``*<typed>*`` while typing (state/providers.ts ``getAltSegments``).
- ``requestMetricExpand()``: ``GET /metrics/expand?query=...`` for ``expand(...)`` variables.
- ``getFuncDefs()``: ``GET /functions`` (read as text, then JSON); ``getVersion()``:
  ``GET /version``; the editor's first segment also asks ``/tags/autoComplete/tags``.
- The token: the data source's custom HTTP header ``Authorization: Bearer <read token>``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import pytest
import requests
import webtest

from hailwhale import auth, graphite
from hailwhale.config import load_settings
from hailwhale.store import Store, connect
from whale import create_app

SECRET = "graphite-tests-secret-graphite-tests-secret"
FORM = "application/x-www-form-urlencoded"
# What Grafana's proxy adds to every request (pkg/api/pluginproxy), beside the custom header.
GRAFANA_HEADERS = {"User-Agent": "Grafana/11.3.0", "X-Grafana-Org-Id": "1",
                   "Accept": "application/json, text/plain, */*"}


def encode_uri_component(text: str) -> str:
    """JavaScript's encodeURIComponent."""
    return quote(text, safe="-_.!~*'()")


def translate_time(moment: float, round_up: bool) -> int:
    """datasource.ts translateTime() of a DateTime: unix seconds, widened by a second when
    its seconds are not zero ("graphite's from filter is exclusive")."""
    seconds = int(moment)
    if datetime.fromtimestamp(seconds, timezone.utc).second:
        seconds += 1 if round_up else -1
    return seconds


def render_body(targets: dict[str, str], from_, until, max_points, wrap: bool = True) -> str:
    """buildGraphiteParams() of query(): the targets (wrapped in aliasSub to carry their
    refId, as Grafana 10+ does), then from, until, format and maxDataPoints."""
    parts = []
    for ref, target in targets.items():
        if wrap:
            target = f'aliasSub({target}, "(^.*$)", "\\1 {ref}")'
        parts.append("target=" + encode_uri_component(target))
    options = (("from", from_), ("until", until), ("format", "json"),
               ("maxDataPoints", max_points))
    parts += [f"{key}={encode_uri_component(str(value))}" for key, value in options if value]
    return "&".join(parts)


def frames(answer: list) -> dict[tuple[str, str], list]:
    """convertResponseToDataFrames(): the refId is the name's last word; times to ms."""
    out = {}
    for series in answer:
        *words, ref = series["target"].split(" ")
        out[(" ".join(words), ref)] = [[value, time * 1000] for value, time in
                                       series["datapoints"]]
    return out


class Grafana:
    """Grafana's Graphite data source, pointed at one Whale app (WSGI)."""

    def __init__(self, app: webtest.TestApp, token: str | None = None):
        self.app = app
        self.headers = dict(GRAFANA_HEADERS)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def render(self, targets: dict[str, str], since: float, until: float, max_points=1000,
               status: int = 200):
        body = render_body(targets, translate_time(since, False), translate_time(until, True),
                           max_points)
        return self.app.post("/render", body, headers={**self.headers, "Content-Type": FORM},
                             status=status)

    def save_and_test(self, now: float):
        return self.render({"A": "constantLine(100)"}, now - 3600, now, 300)

    def find(self, query: str, since: float | None = None, until: float | None = None,
             status: int = 200):
        url = "/metrics/find"
        if since is not None:
            url += "?" + urlencode({"from": translate_time(since, False),
                                    "until": translate_time(until, True)})
        return self.app.post(url, f"query={query}", status=status,  # not encoded: as Grafana
                             headers={**self.headers, "Content-Type": FORM})

    def expand(self, query: str, status: int = 200):
        return self.app.get("/metrics/expand", {"query": query}, status=status,
                            headers={**self.headers, "Content-Type": FORM})


EVENTS = [  # (seconds before now, pk, dimensions, metrics)
    (30, "shop", ["web", "home"], {"dollars": 5}),
    (95, "shop", ["web", "home"], {"dollars": 7}),
    (95, "shop", ["web", "about"], {"dollars": 1}),
    (600, "shop", ["api"], {"dollars": 2}),
    (1900, "shop", ["web", "about"], {"dollars": 4}),
    (3000, "shop", ["api"], {"dollars": 0}),
    (5000, "shop", ["web", "home"], {"dollars": 3}),
    (40, "", ["site.com", "a b"], {"dollars": 9}),
    (45, "other", ["x"], {"dollars": 1}),
]


@pytest.fixture
def counted(app, clock):
    for back, pk, dims, metrics in EVENTS:
        answer = app.get("/count", {"pk": pk, "dimensions": json.dumps(dims),
                                    "metrics": json.dumps(metrics), "at": clock.now - back})
        assert answer.json["counted"] == 1
    return app


def plotpoints(app, pk: str, dims: list, metric: str, since: float, until: float, **extra):
    answer = app.get("/plotpoints", {"pk": pk, "dimensions": json.dumps(dims),
                                     "metrics": metric, "since": int(since),
                                     "until": int(until), **extra}).json
    return [[value, ms] for ms, value in answer["series"][0]["data"]]


# -- Save & test ------------------------------------------------------------------------------
def test_save_and_test_as_grafana_sends_it(counted, clock):
    answer = Grafana(counted).save_and_test(clock.now)
    assert answer.content_type == "application/json"
    (name, ref), = frames(answer.json)
    assert (name, ref) == ("100", "A")
    points = answer.json[0]["datapoints"]
    assert {value for value, _ in points} == {100}
    times = [time for _, time in points]
    assert {b - a for a, b in zip(times, times[1:], strict=False)} == {15}
    assert times[0] <= clock.now - 3600 < times[0] + 15 and abs(times[-1] - clock.now) < 16


def test_save_and_test_of_grafanas_backend_and_of_older_frontends(counted, clock):
    since, until = int(clock.now - 3600), int(clock.now)
    go_body = urlencode(sorted({"format": "json", "from": str(since), "maxDataPoints": "100",
                                "target": "constantLine(100)", "until": str(until)}.items()))
    assert "target=constantLine%28100%29" in go_body  # url.Values.Encode(), keys sorted
    answer = counted.post("/render", go_body, headers={"Content-Type": FORM})
    assert answer.json[0]["target"] == "100"
    assert len(answer.json[0]["datapoints"]) <= 100  # 241 buckets summed in threes...
    assert {value for value, _ in answer.json[0]["datapoints"]} <= {100, 200, 300}
    # Grafana 5-9: the raw range, no wrapping; before that, Save & test was find('*').
    old = render_body({"A": "constantLine(100)"}, "-1h", "now", 300, wrap=False)
    assert counted.post("/render", old, headers={"Content-Type": FORM}).json[0]["target"] \
        == "100"
    assert {n["text"] for n in counted.get("/metrics/find", {"query": "*"}).json} == \
        {"~", "shop", "other"}


# -- panels ----------------------------------------------------------------------------------
def test_a_panel_matches_plotpoints_for_the_same_data(counted, clock):
    since, until = clock.now - 3600, clock.now
    answer = Grafana(counted).render({
        "A": "shop.web.*.hits",
        "B": "sumSeries(shop.*.dollars)",
        "C": "divideSeries(shop.dollars, shop.hits)",
        "D": "~.site~2Ecom.a~20b.dollars",
    }, since, until)
    got = frames(answer.json)
    f, u = translate_time(since, False), translate_time(until, True)
    assert set(got) == {("shop.web.about.hits", "A"), ("shop.web.home.hits", "A"),
                        ("sumSeries(shop.*.dollars)", "B"),
                        ("divideSeries(shop.dollars,shop.hits)", "C"),
                        ("~.site~2Ecom.a~20b.dollars", "D")}
    for child in ("about", "home"):
        assert got[(f"shop.web.{child}.hits", "A")] == \
            plotpoints(counted, "shop", ["web", child], "hits", f, u)
    api = plotpoints(counted, "shop", ["api"], "dollars", f, u)
    web = plotpoints(counted, "shop", ["web"], "dollars", f, u)
    assert got[("sumSeries(shop.*.dollars)", "B")] == \
        [[a[0] + w[0], a[1]] for a, w in zip(api, web, strict=True)]
    assert got[("divideSeries(shop.dollars,shop.hits)", "C")] == \
        plotpoints(counted, "shop", [], "dollars/hits", f, u)
    assert got[("~.site~2Ecom.a~20b.dollars", "D")] == \
        plotpoints(counted, "", ["site.com", "a b"], "dollars", f, u)
    assert sum(v for v, _ in got[("sumSeries(shop.*.dollars)", "B")]) == 19


def test_max_data_points_sums_adjacent_buckets(counted, clock):
    since, until = clock.now - 3600, clock.now
    answer = Grafana(counted).render({"A": "shop.hits"}, since, until, max_points=50)
    points = answer.json[0]["datapoints"]
    assert len(points) <= 50
    buckets = plotpoints(counted, "shop", [], "hits", translate_time(since, False),
                         translate_time(until, True))
    step = points[1][1] - points[0][1]
    assert step % 15 == 0 and step > 15
    for value, time in points:
        assert value == sum(v for v, ms in buckets if time <= ms / 1000 < time + step)
    assert sum(v for v, _ in points) == sum(v for v, _ in buckets) == 6


def test_summarize_by_the_hour_is_what_the_hourly_period_counts(counted, clock):
    since, until = clock.now - 2 * 3600, clock.now  # the 15 s period keeps it
    answer = Grafana(counted).render({"A": "summarize(shop.dollars, '1h', 'sum')"},
                                     since, until, max_points=2000)
    (name, _), = frames(answer.json)
    assert name == 'summarize(shop.dollars, "1h", "sum")'
    hourly = {ms // 1000: value for value, ms in plotpoints(
        counted, "shop", [], "dollars", since, until, period="1h:7d")}
    points = answer.json[0]["datapoints"]
    assert all(time % 3600 == 0 for _, time in points)
    for value, time in points[1:]:  # the first hour began before the window
        assert value == hourly[time]
    peak = Grafana(counted).render({"A": "summarize(shop.dollars, '1h', 'max')"}, since,
                                   until, max_points=2000)
    assert max(v for v, _ in peak.json[0]["datapoints"]) == 8  # 7 + 1 in one bucket


def test_a_longer_range_reads_a_coarser_period(counted, clock):
    since, until = clock.now - 2 * 86400, clock.now
    answer = Grafana(counted).render({"A": "shop.web.hits"}, since, until)
    times = [time for _, time in answer.json[0]["datapoints"]]
    assert {b - a for a, b in zip(times, times[1:], strict=False)} == {3600}
    assert sum(v for v, _ in answer.json[0]["datapoints"]) == 5


def test_aliases_by_node_and_metric(counted, clock):
    answer = Grafana(counted).render({"A": "aliasByNode(shop.web.*.dollars, 2)",
                                      "B": "alias(scale(shop.hits, 10), 'ten times')"},
                                     clock.now - 600, clock.now)
    assert set(frames(answer.json)) == {("about", "A"), ("home", "A"), ("ten times", "B")}


# -- find and expand -------------------------------------------------------------------------
def test_the_query_editor_walks_the_tree(counted, clock):
    grafana = Grafana(counted)
    since, until = clock.now - 6 * 3600, clock.now

    def texts(query):
        return [(n["text"], n["expandable"]) for n in grafana.find(query, since, until).json]

    assert texts("*") == [("other", 1), ("shop", 1), ("~", 1)]
    assert texts("shop.*") == [("api", 1), ("web", 1), ("dollars", 0), ("hits", 0)]
    assert texts("shop.web.*") == [("about", 1), ("home", 1), ("dollars", 0), ("hits", 0)]
    assert texts("shop.web.*ho*") == [("home", 1)]  # typing "ho" in the segment
    assert texts("~.*") == [("site~2Ecom", 1), ("dollars", 0), ("hits", 0)]
    assert texts("~.site~2Ecom.*") == [("a~20b", 1), ("dollars", 0), ("hits", 0)]
    assert texts("shop.{web,api}.*") == texts("shop.web.*")  # api has no children
    assert texts("shop.nowhere.*") == []
    node = grafana.find("shop.web.*", since, until).json[0]
    assert node == {"text": "about", "id": "shop.web.about", "leaf": 0, "expandable": 1,
                    "allowChildren": 1}


def test_find_lists_what_was_seen_since_from(counted, clock):
    clock.now += 1000
    counted.get("/count", {"pk": "shop", "dimensions": '["web", "home"]'})
    grafana = Grafana(counted)
    assert [n["text"] for n in grafana.find("shop.*", clock.now - 300, clock.now).json
            if n["expandable"]] == ["web"]  # api was last counted 1000 s ago
    assert [n["text"] for n in grafana.find("shop.web.*", clock.now - 300, clock.now).json
            ] == ["home", "dollars", "hits"]
    assert [n["text"] for n in grafana.find("shop.*").json if n["expandable"]] == \
        ["api", "web"]


def test_template_variables_and_expand(counted):
    grafana = Grafana(counted)
    # metricFindQuery('shop.*') with no range: no parameters, the body alone.
    assert [n["text"] for n in grafana.find("shop.*").json] == ["api", "web", "dollars", "hits"]
    assert grafana.expand("shop.*.*").json == {"results": [
        "shop.api.dollars", "shop.api.hits", "shop.web.about", "shop.web.dollars",
        "shop.web.hits", "shop.web.home"]}
    leaves = counted.get("/metrics/expand", [("query", "shop.web.*"), ("query", "~.*"),
                                             ("leavesOnly", "1"), ("groupByExpr", "1")]).json
    assert leaves == {"results": {"shop.web.*": ["shop.web.dollars", "shop.web.hits"],
                                  "~.*": ["~.dollars", "~.hits"]}}


def test_functions_version_and_tags_as_grafana_asks(counted):
    functions = counted.get("/functions", headers=GRAFANA_HEADERS)
    # getFuncDefs() reads the answer as text and parses it (Graphite 1.1.7 sent Infinity).
    parsed = json.loads(functions.text)
    assert {"sumSeries", "divideSeries", "scale", "alias", "aliasByNode", "summarize",
            "constantLine", "aliasSub"} <= set(parsed)
    for name, definition in parsed.items():
        assert definition["name"] == name and definition["group"]
        assert all({"name", "type"} <= set(p) for p in definition["params"])
    assert counted.get("/version").json == graphite.VERSION
    assert counted.get("/tags/autoComplete/tags", {"expr": "", "limit": "5000"}).json == []
    assert counted.get("/tags/autoComplete/values", {"tag": "x"}).json == []


# -- metric kinds -----------------------------------------------------------------------------
def test_gauges_and_timings_read_as_plotpoints_names_them(app, clock):
    for latency in (120, 95, 310, 50):
        app.get("/count", {"dimensions": "api", "at": clock.now - 20, "metrics": json.dumps(
            {"latency": {"timing": latency}, "queue": {"gauge": latency // 10}})})
    leaves = [n["text"] for n in app.post("/metrics/find", "query=~.api.*").json]
    assert {"latency:p99", "latency:mean", "latency:count", "queue", "hits"} <= set(leaves)
    since, until = clock.now - 600, clock.now
    answer = Grafana(app).render({"A": "~.api.latency:p99", "B": "~.api.queue",
                                  "C": "~.api.latency:*"}, since, until)
    got = frames(answer.json)
    f, u = translate_time(since, False), translate_time(until, True)
    assert got[("~.api.latency:p99", "A")] == plotpoints(app, "", ["api"], "latency:p99", f, u)
    assert got[("~.api.queue", "B")] == plotpoints(app, "", ["api"], "queue", f, u)
    assert ("~.api.latency:max", "C") in got
    refused = Grafana(app).render({"A": "~.api.queue:p99"}, since, until, status=400)
    assert refused.json["param"] == "target"


# -- tokens ----------------------------------------------------------------------------------
@pytest.fixture
def guarded(store, clock, counted):
    """The same store behind a Whale with a SECRET (the open `counted` app wrote it)."""
    settings = load_settings(environ={"HAILWHALE_SECRET": SECRET})
    return webtest.TestApp(create_app(Store(store.redis, settings), settings, clock=clock))


def test_a_read_token_sees_only_its_pk(guarded, clock):
    grafana = Grafana(guarded, auth.issue(SECRET, "read", ["shop"]))
    assert grafana.save_and_test(clock.now).json[0]["target"] == "100 A"
    assert [n["text"] for n in grafana.find("*").json] == ["shop"]
    assert grafana.expand("*.*.*").json["results"][0].startswith("shop.")
    since, until = clock.now - 600, clock.now
    assert set(frames(grafana.render({"A": "*.*.hits"}, since, until).json)) == {
        ("shop.api.hits", "A"), ("shop.web.hits", "A")}
    for target in ("other.x.hits", "~.hits", "sumSeries(shop.hits, other.hits)"):
        refused = grafana.render({"A": target}, since, until, status=403)
        assert refused.json["param"] == "token" and "does not cover pk" in refused.json["error"]
    assert grafana.find("other.*", status=403).json["param"] == "token"


def test_a_read_token_below_a_prefix(guarded, clock):
    grafana = Grafana(guarded, auth.issue(SECRET, "read", ["shop"], ("web", "home")))
    assert [(n["text"], n["leaf"]) for n in grafana.find("shop.*").json] == [("web", 0)]
    assert [(n["text"], n["leaf"]) for n in grafana.find("shop.web.*").json] == [("home", 0)]
    assert [n["text"] for n in grafana.find("shop.web.home.*").json] == ["dollars", "hits"]
    since, until = clock.now - 600, clock.now
    assert set(frames(grafana.render({"A": "shop.*.*.hits", "B": "shop.*.hits"}, since,
                                     until).json)) == {("shop.web.home.hits", "A")}
    for target in ("shop.hits", "shop.web.hits", "shop.web.about.hits", "shop.api.hits"):
        assert grafana.render({"A": target}, since, until, status=403).json["param"] == "token"
    grafana.find("shop.api.*", status=403)


def test_without_a_token_401_and_with_a_write_token_403(guarded, clock):
    nobody = Grafana(guarded)
    refused = nobody.render({"A": "constantLine(100)"}, clock.now - 60, clock.now, status=401)
    assert refused.json["param"] == "token"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    nobody.find("*", status=401)
    nobody.expand("*", status=401)
    writer = Grafana(guarded, auth.issue(SECRET, "write", ["shop"]))
    writer.find("*", status=403)
    # A form's token parameter works too; what holds no data needs none.
    token = auth.issue(SECRET, "read", ["*"])
    assert guarded.post("/metrics/find", f"query=*&token={token}").json
    assert guarded.get("/functions").json and guarded.get("/version").json


# -- hostile input ---------------------------------------------------------------------------
@pytest.mark.parametrize("body, param", [
    ("target=sumSeries(", "target"), ("target=nosuch(shop.hits)", "target"),
    ("target=shop", "target"), ("target=shop.a%2Bb", "target"),
    ("target=shop.~zz.hits", "target"), ("target=shop.hits&format=png", "format"),
    ("target=shop.hits&maxDataPoints=lots", "maxDataPoints"),
    ("target=shop.hits&maxDataPoints=0", "maxDataPoints"),
    ("target=shop.hits&from=soon", "from"), ("target=shop.hits&until=-1parsec", "until"),
    ("target=shop.hits&from=now&until=now", "from"), ("target=shop.hits&tz=Mars/Olympus", "tz"),
    ("target=" + "a." * 12 + "hits", "target"), ("target=shop.%ff.hits", "body"),
    ("target=" + quote('aliasSub(shop.*.hits, "(a+)+$", "x")'), "target"),
])
def test_bad_renders_are_json_400s_naming_the_parameter(counted, body, param):
    answer = counted.post("/render", body, headers={"Content-Type": FORM}, status=400)
    assert answer.json["param"] == param
    assert "(got " in answer.json["error"]


def test_renders_are_bounded(counted, monkeypatch, store, clock):
    monkeypatch.setattr(graphite, "MAX_NODES", 5)
    refused = counted.post("/render", "target=*.*.*.hits", status=400).json
    assert "more than 5 names" in refused["error"]
    monkeypatch.undo()
    tight = load_settings(environ={"HAILWHALE_MAX_QUERY_CELLS": "500"})
    small = webtest.TestApp(create_app(Store(store.redis, tight), tight, clock=clock))
    refused = small.post("/render", "target=shop.*.*&from=-1h", status=400).json
    assert refused["param"] == "target" and "MAX_QUERY_CELLS" in refused["error"]
    many = "&".join(["target=shop.hits"] * (graphite.MAX_TARGETS + 1))
    assert counted.post("/render", many, status=400).json["param"] == "target"
    assert counted.post("/render", "target=shop.hits", headers={
        "Content-Type": "application/json"}, status=400).json["param"] == "body"
    assert counted.get("/metrics/find", status=400).json["param"] == "query"
    assert counted.get("/metrics/find", {"query": "*", "format": "pickle"},
                       status=400).json["param"] == "format"


def test_what_graphite_does_with_little_or_odd_input(counted, clock):
    assert counted.post("/render", "").json == []  # no target: no series, as graphite-web
    assert counted.get("/render", {"target": "shop.nowhere.*"}).json == []
    zeros = counted.get("/render", {"target": "shop.nowhere.hits", "from": "-5min"}).json
    assert {v for v, _ in zeros[0]["datapoints"]} == {0}  # explicit paths read as /plotpoints
    swapped = counted.get("/render", {"target": "shop.hits", "from": "now", "until": "-5min"})
    assert len(swapped.json[0]["datapoints"]) == 21  # graphite-web takes either order
    sparse = counted.get("/render", [("target", "shop.hits"), ("from", "-10min"),
                                     ("noNullPoints", "")]).json
    assert len(sparse[0]["datapoints"]) == 41
    # GET and POST parameters together, repeated targets (and target[]) in order.
    both = counted.post("/render?target=shop.hits&from=-5min", "target%5B%5D=~.hits")
    assert [s["target"] for s in both.json] == ["shop.hits", "~.hits"]


def test_every_answer_is_strict_json(counted):
    for body in ("target=" + quote('scale(shop.hits, 1e308)'), "target=" + quote(
            "scale(scale(shop.hits, 1e308), 1e308)"), "target=divideSeries(shop.hits,~.hits)"):
        text = counted.post("/render", body + "&from=-5min").text
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    scaled = counted.post("/render", "target=" + quote("scale(shop.hits, 1e308)") +
                          "&from=-5min").json
    assert all(v is None or math.isfinite(v) for v, _ in scaled[0]["datapoints"])


# -- real HTTP under uWSGI --------------------------------------------------------------------
@pytest.mark.e2e
def test_grafanas_requests_through_uwsgi_with_a_secret(redis_server, tmp_path):
    from test_uwsgi import start_uwsgi

    url = f"redis://127.0.0.1:{redis_server.port}/12"
    connect(url).flushdb()
    whale = start_uwsgi("whale", tmp_path, (url, url), HAILWHALE_SECRET=SECRET)
    try:
        whale.wait_ready(f"{whale.url}/health")
        now = datetime.now(timezone.utc).timestamp()
        write = auth.issue(SECRET, "write", ["shop"])
        for dims, dollars in ((["web", "home"], 5), (["web", "about"], 2), (["api"], 1)):
            answer = requests.get(f"{whale.url}/count", timeout=10, params={
                "pk": "shop", "dimensions": json.dumps(dims),
                "metrics": json.dumps({"dollars": dollars}), "token": write})
            assert answer.status_code == 200, answer.text
        headers = {**GRAFANA_HEADERS, "Content-Type": FORM,
                   "Authorization": f"Bearer {auth.issue(SECRET, 'read', ['shop'])}"}
        test = requests.post(f"{whale.url}/render", timeout=10, headers=headers, data=render_body(
            {"A": "constantLine(100)"}, translate_time(now - 3600, False),
            translate_time(now, True), 300))
        assert test.status_code == 200, test.text
        assert test.json()[0]["target"] == "100 A"
        found = requests.post(f"{whale.url}/metrics/find", data="query=shop.*", timeout=10,
                              headers=headers)
        assert [n["text"] for n in found.json()] == ["api", "web", "dollars", "hits"]
        since, until = translate_time(now - 600, False), translate_time(now + 1, True)
        panel = requests.post(f"{whale.url}/render", timeout=10, headers=headers,
                              data=render_body({"A": "shop.web.*.dollars"}, since, until, 1000))
        got = frames(panel.json())
        plot = requests.get(f"{whale.url}/plotpoints", timeout=10, headers=headers, params={
            "pk": "shop", "dimensions": '["web", "home"]', "metrics": "dollars",
            "since": since, "until": until}).json()
        assert got[("shop.web.home.dollars", "A")] == [
            [value, ms] for ms, value in plot["series"][0]["data"]]
        assert sum(v for v, _ in got[("shop.web.about.dollars", "A")]) == 2
        assert requests.post(f"{whale.url}/render", data="target=shop.hits", timeout=10,
                             headers={"Content-Type": FORM}).status_code == 401
    finally:
        assert not whale.stop(), "uWSGI processes left running"


def test_the_openapi_document_names_the_parameters_the_graphite_routes_read():
    """As tests/test_openapi.py does for /count and /plotpoints."""
    import inspect
    import re

    from hailwhale_web.openapi import document
    from whale import graphite as routes

    source = inspect.getsource(routes)
    read = set(re.findall(r'params\.(?:get|all)\("([\w\[\]]+)"', source))
    read |= set(re.findall(r'_flag\(params, "(\w+)"\)', source))
    read |= {"noNullPoints", "token"}  # its presence alone; the token by Params.token()
    spec = document("whale")["paths"]
    documented = {name for path in ("/render", "/metrics/find", "/metrics/expand")
                  for method in ("get", "post")
                  for name in (p["name"] for p in spec[path][method]["parameters"])}
    assert documented == read
