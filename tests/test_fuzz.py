"""Fuzz: seeded random hostile requests over every endpoint of Whale and Hail, in-process
through WSGI (webtest, and raw environs for what webtest will not send) on the harness's real
redis-server. No answer may be a 5xx; every answer but the GIF and the dashboard's pages is
strict JSON (no NaN, no Infinity), every error answer is JSON; and a refused request stores
nothing: the whole database is dumped before and after every refused write.

Run with -s to see the status histogram of each app."""

from __future__ import annotations

import io
import json
import os
import random
import time
from urllib.parse import quote

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families

from hail.app import create_app as hail_app
from hailwhale.buffer import Buffer
from hailwhale.store import Store, connect
from whale import create_app as whale_app

# Per app: 20,000 in all (FUZZ_REQUESTS=N in the environment for more, or fewer).
REQUESTS = int(os.environ.get("FUZZ_REQUESTS", 10_000))
SEED = "hailwhale-fuzz-1"

CONTROL = [chr(c) for c in range(32)] + ["\x7f"]
FORMULAS = ["1e308*1e308", "9" * 199, "*".join(["hits"] * 99), "*".join(["d"] * 90) + "-1",
            "(" * 120 + "hits" + ")" * 120, "hits/0", "0/0", "-" * 199 + "hits", "hits//2",
            "dollars/hits", "(hits+dollars)*2", "d*" * 99 + "d", "hits*" + "9" * 190, "nan",
            "inf", "hits**2", "1/(hits-hits)", "__import__", "9" * 300]
STRINGS = ["", " ", "a", "\ud800", "\udfff", "a\ud800b", "\x00", "a\nb", "\t", "\u2028",
           "<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>", "x" * 5000,
           "é", "日本", "\U0001f40b", "NaN", "Infinity", "-Infinity", "null", "true", "[]",
           "{}", "__other__", "pks", "hail", "{%pks}", "../../etc/passwd", "%ff", "%00",
           "1e400", str(10**400), "-" + "9" * 400, "0x10", "1_000", *FORMULAS]
GOOD = {
    "dimensions": ['["pageviews","site.com"]', '{"sales":{"eu":"p1"}}', "services", "a"],
    "metrics": ['{"dollars": 5}', '{"hits": 1, "d": 1000000000000}', "dollars/hits",
                "hits,dollars", '["d", "d*d"]', '{"lat": {"timing": [1, 2.5]}}',
                '{"cpu": {"gauge": 0.5}, "q": {"delta": -1}}', "lat:p99,cpu:last"],
    "pk": ["", "shop", "site"], "at": ["", "now"], "uid": ["u1", "u2"],
    "depth": ["0", "1", "2"], "threshold": ["0", "0.5", "1"], "limit": ["1", "10"],
    "sort": ["hits", "-dollars"], "since": ["10m", "1h", "today"], "until": ["now", ""],
    "period": ["15s:3h", "1h", "1d"],
    # Graphite's render and find (whale/graphite.py), as Grafana writes them.
    "target": ["shop.*.hits", "~.a.hits", 'aliasSub(constantLine(100), "(^.*$)", "\\1 A")',
               "sumSeries(*.*.hits)", "divideSeries(~.d,~.hits)", "summarize(~.hits,'1h','max')",
               "aliasByNode(shop.{a,b}.*, 1)", 'aliasSub(~.*, "(a+)+", "x")'],
    "query": ["*", "shop.*", "~.*", "{shop,site}.*.*"], "from": ["-1h", "1700000000", "midnight"],
    "maxDataPoints": ["1", "300"],
    # Decisions (hailwhale/decisions.py).
    "decision": ["slogan", "lang"], "option": ["a", "b"], "options": ['["a","b"]', "a,b"],
    "test_idea_threshold": ["0", "0.5"], "bad_idea_threshold": ["0", "1"], "record": ["0"],
    # Rank (hailwhale/rank.py).
    "value": ["value", "dollars/hits", "d/visitors"], "recursive": ["true", "false", "0"],
}
NAMES = [*GOOD, "dimension", "metric", "category", "token", "id", "events", "count", "_",
         "\ud800", "", "x" * 300]
ENDPOINTS = [  # (weight, method, path)
    (14, "GET", "/count"), (6, "GET", "/count.gif"), (18, "POST", "/count"),
    (8, "POST", "/batch"), (10, "GET", "/plotpoints"), (8, "GET", "/totals"),
    (6, "GET", "/dimensions"), (3, "GET", "/metrics"), (3, "GET", "/pks"),
    (2, "GET", "/periods"), (2, "GET", "/health"), (1, "GET", "/"), (1, "GET", "/api"),
    (2, "GET", "/nope"), (1, "GET", "/static/nope.js"), (1, "GET", "/count/extra"),
    (2, "OPTIONS", "/count"), (2, "HEAD", "/health"), (2, "PUT", "/count"),
    (1, "DELETE", "/batch"), (1, "PATCH", "/plotpoints"), (1, "BREW", "/count"),
    (1, "POST", "/plotpoints"), (1, "GET", "/batch"), (2, "GET", "/prometheus"),
    (5, "POST", "/render"), (3, "GET", "/render"), (3, "POST", "/metrics/find"),
    (2, "GET", "/metrics/find"), (2, "GET", "/metrics/expand"), (1, "GET", "/functions"),
    (1, "GET", "/version"), (1, "GET", "/embed.js"),
    (3, "GET", "/count_decision"), (3, "GET", "/decide"), (1, "GET", "/decisions"),
    (5, "GET", "/rank"),
]
WRITES = {"/count", "/count.gif", "/batch", "/count_decision"}
WHALE_ONLY = {"/batch", "/plotpoints", "/totals", "/dimensions", "/metrics", "/pks", "/periods",
              "/api", "/render", "/metrics/find", "/metrics/expand", "/functions", "/version",
              "/embed.js", "/count_decision", "/decide", "/decisions", "/rank"}
PAGES = {"/", "/embed.js"}  # Whale's dashboard (HTML) and embed.js: not JSON by design
TEXT = {"/prometheus"}  # Prometheus' text format by design


def _deep(rng: random.Random, body: bool = False) -> str:
    # 100,000 levels in bodies only: a URL that long is refused by any server in front.
    depth = rng.choice([900, 1000, 3000, 100_000] if body else [900, 1000, 3000])
    return rng.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                       "[" * depth, '{"a":[' * (depth // 2)])


def _leaf(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(STRINGS)
    if roll < 0.6:
        return "".join(rng.choice(CONTROL + ["a", "\ud800", "é"]) for _ in range(rng.randrange(8)))
    if roll < 0.75:  # wrong JSON types and numbers past every limit
        return rng.choice([10**400, -(10**400), 1e308, -1e308, 10**19, 2**63, 0.1, -0, True,
                           False, None, [], {}, [1, 2], {"a": None}, 1e-320, 12345678901234])
    if roll < 0.85:
        return "x" * rng.choice([65, 200, 201, 1000, 5000])
    return rng.choice(GOOD[rng.choice(list(GOOD))])


def _structured(rng: random.Random, name: str) -> object:
    """A JSON value shaped like what ``name`` takes, with hostile leaves."""
    roll = rng.random()
    if roll < 0.3:
        return _leaf(rng)
    if name.startswith("metric"):
        return {rng.choice(["hits", "dollars", "d", "is_unique"]) if rng.random() < 0.7
                else str(_leaf(rng)): _leaf(rng) for _ in range(rng.randrange(1, 4))}
    if roll < 0.65:
        return [_leaf(rng) for _ in range(rng.randrange(1, 10))]
    return {str(_leaf(rng)): _leaf(rng) if rng.random() < 0.5 else {"x": _leaf(rng)}
            for _ in range(rng.randrange(1, 5))}


def _value(rng: random.Random, name: str) -> str:
    """A query-string value: a good one, a hostile string, deep JSON, or hostile JSON."""
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(GOOD.get(name) or GOOD["dimensions"])
    if roll < 0.33:
        return _deep(rng)
    if roll < 0.65:
        leaf = _leaf(rng)
        return leaf if isinstance(leaf, str) else json.dumps(leaf)
    return json.dumps(_structured(rng, name))  # \ud800 travels as a JSON escape


def _event(rng: random.Random) -> dict:
    event = {}
    for _ in range(rng.randrange(5)):
        name = rng.choice(NAMES)
        event[name] = _structured(rng, name) if rng.random() < 0.6 else _value(rng, name)
    if rng.random() < 0.3:
        event.setdefault("dimensions", rng.choice(["a", ["b", "c"]]))
    return event


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _body(rng: random.Random, path: str) -> tuple[bytes, str]:
    kind = rng.randrange(10)
    if kind == 0:
        if rng.random() < 0.1:
            return b"x" * (16 * 1024 * 1024 + 1), "application/json"  # past MAX_BODY: 413
        return _encode(_deep(rng, body=True)), "application/json"
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(60))), \
            rng.choice(["application/json", "application/x-www-form-urlencoded", ""])
    if kind == 2:  # a form, with escapes that may not be UTF-8
        pairs = [f"{quote(rng.choice(NAMES), errors='surrogatepass')}="
                 f"{quote(_value(rng, 'dimensions'), errors='surrogatepass')}"
                 for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.5:
            pairs.append(rng.choice(["x=%ff", "dimensions=%c3%28", "a=\xff", "%ed%a0%80=1"]))
        return "&".join(pairs).encode("latin-1", "replace"), "application/x-www-form-urlencoded"
    if kind == 3:  # NDJSON
        lines = [json.dumps(_event(rng)) for _ in range(rng.randrange(2, 5))]
        if rng.random() < 0.5:
            lines.insert(rng.randrange(len(lines)), rng.choice(["{", _deep(rng), "NaN", "[1,"]))
        return _encode("\n".join(lines)), "application/x-ndjson"
    if kind == 4:  # NaN, Infinity and numbers past float in an otherwise good document
        return _encode(rng.choice(['{"metrics": {"hits": NaN}}', '{"at": Infinity}',
                                   '{"at": 1e400}', '{"metrics": {"d": -Infinity}}',
                                   '{"at": ' + str(10**400) + "}",
                                   '{"id": "n", "events": [{"at": NaN}]}'])), "application/json"
    if path == "/batch" or kind == 5:
        events = [_event(rng) for _ in range(rng.randrange(4))]
        document = {"id": _leaf(rng) if rng.random() < 0.4 else f"b{rng.randrange(10**9)}",
                    "events": events if rng.random() < 0.85 else _leaf(rng)}
        if rng.random() < 0.3:
            document["count"] = rng.choice([len(events), len(events) + 1, "3", None])
        return _encode(json.dumps(document)), "application/json"
    document = [_event(rng) for _ in range(rng.randrange(1, 4))] if kind == 6 else _event(rng)
    return _encode(json.dumps(document)), rng.choice(["application/json", "text/plain",
                                                      "application/x-www-form-urlencoded"])


def _query(rng: random.Random) -> str:
    pairs = []
    for _ in range(rng.randrange(5)):
        name = rng.choice(NAMES)
        pairs.append(f"{quote(name, errors='surrogatepass')}="
                     f"{quote(_value(rng, name), errors='surrogatepass')}")
    if rng.random() < 0.08:  # escapes that are not UTF-8
        pairs.append(rng.choice(["dimensions=%ff", "pk=%c3%28", "%fe=1", "metrics=%ed%a0%80"]))
    return "&".join(pairs)


def _raw_environ(rng: random.Random, method: str, path: str, query: str, body: bytes,
                 content_type: str) -> dict:
    """What webtest refuses to send: a non-numeric Content-Length, a body shorter than it,
    no PATH_INFO (uWSGI's request line with no HTTP version)."""
    length = rng.choice(["abc", "-5", "1" * 30, "", "1e3", str(len(body) + 10), " 7"])
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "fuzz", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": length,
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if rng.random() < 0.1:
        del environ["PATH_INFO"]
    if rng.random() < 0.1:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["CONTENT_LENGTH"] = ""
    return environ


def _call_raw(app, environ: dict) -> tuple[int, str, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"].get("Content-Type", ""), body


def _strict_json(body: bytes) -> object:
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(body, parse_constant=refuse)


def _dump(client) -> dict:
    """Every key's serialized value and whether it expires, in one round trip."""
    keys = sorted(client.keys("*"))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.ttl(key)
    replies = pipe.execute()
    return {key: (replies[2 * n], replies[2 * n + 1] > 0) for n, key in enumerate(keys)}


@pytest.mark.parametrize("which", ["whale", "hail"])
def test_fuzz_no_5xx_strict_json_nothing_stored_when_refused(which, redis_server, settings):
    client = connect(redis_server.url)
    client.flushdb()
    start = time.time()
    clock = lambda: start  # noqa: E731 - the same "now" for every request: deterministic
    if which == "whale":
        wsgi = whale_app(Store(client, settings), settings, clock=clock)
    else:
        buffer = Buffer(client)
        wsgi = hail_app(buffer.push, settings, lambda: buffer.stats().as_dict(), clock)
    app = webtest.TestApp(wsgi, lint=False)
    rng = random.Random(f"{SEED}-{which}")
    # Hail has no read endpoints: asked of it now and then (404), not half the time.
    weights, endpoints = zip(*[(1 if which == "hail" and p in WHALE_ONLY else w, (m, p))
                               for w, m, p in ENDPOINTS], strict=True)
    statuses: dict[int, int] = {}
    refused_writes = 0
    snapshot = _dump(client)
    for number in range(REQUESTS):
        if number % 250 == 249:  # keeps the dumps small: a fresh database now and then
            client.flushdb()
            snapshot = {}
        method, path = rng.choices(endpoints, weights)[0]
        query = _query(rng)
        body, content_type = _body(rng, path) if method in ("POST", "PUT", "PATCH") else (b"", "")
        size = client.dbsize()
        if rng.random() < 0.06:
            environ = _raw_environ(rng, method, path, query, body, content_type)
            status, kind, answer = _call_raw(wsgi, environ)
        else:
            headers = {"Content-Type": content_type} if content_type else {}
            response = app.request(f"{path}?{query}" if query else path, method=method,
                                   body=body, headers=headers, expect_errors=True)
            status, kind, answer = response.status_int, response.content_type or "", \
                response.body
        statuses[status] = statuses.get(status, 0) + 1
        where = f"request {number}: {method} {path}?{query[:200]!r} body {body[:200]!r}"
        assert status < 500, f"{where} -> {status} {answer[:300]!r}"
        if status >= 400:
            assert kind.startswith("application/json"), f"{where} -> {status} {kind}"
        if answer and not kind.startswith("image/gif") and \
                not (path in PAGES and status == 200 and which == "whale") and \
                not (path in TEXT and status == 200):
            try:
                _strict_json(answer)
            except ValueError as exc:
                raise AssertionError(f"{where} -> {status}: not JSON ({exc}): "
                                     f"{answer[:300]!r}") from None
        elif path in TEXT and status == 200 and method == "GET":
            assert list(text_string_to_metric_families(answer.decode())), where
        if method != "GET" and method != "POST" or path not in WRITES:
            assert client.dbsize() == size, f"{where} -> {status} changed the store"
        elif status >= 400:
            refused_writes += 1
            assert _dump(client) == snapshot, f"{where} -> {status} stored something"
        else:
            snapshot = _dump(client)
    print(f"\n{which}: {REQUESTS} requests, {refused_writes} refused writes, statuses "
          f"{dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) == REQUESTS
    assert refused_writes > REQUESTS // 10
    assert any(200 <= status < 300 for status in statuses)
