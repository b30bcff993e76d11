"""Fuzz: seeded random hostile requests over every endpoint of Whale and Hail, in-process
through WSGI on the harness's real redis-server. No answer may be a 5xx, every answer but
the GIF and the static assets is valid JSON, and a refused request stores nothing."""

from __future__ import annotations

import io
import json
import random

import pytest

from hail.app import create_app as hail_app
from hailwhale.buffer import Buffer
from hailwhale.store import Store, connect
from whale import create_app as whale_app

REQUESTS = 10_000
DEEP = ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "[" * 5000]
HOSTILE = [
    "", "a", "\ud800", '["\\ud800"]', '{"\\udfff": 1}', "\x00", "a\nb", "<img src=x onerror=1>",
    "x" * 5000, "1e400", str(10**400), "NaN", "Infinity", "-Infinity", "null", "true", "[]",
    "{}", '{"dollars": 1e308}', '{"dollars": "lots"}', "9" * 400, "(" * 150 + "hits" + ")" * 150,
    "9" * 190 + "*hits*hits", "hits/0", "-" * 199 + "hits", "%ff", '"\\u0000"', *DEEP,
]
GOOD = ['["pageviews","site.com"]', '{"sales":{"eu":"p1"}}', "services", '{"dollars": 5}',
        "dollars/hits", "15s:3h", "1h", "0", "1"]
NAMES = ["dimensions", "dimension", "metrics", "metric", "pk", "category", "at", "uid", "depth",
         "threshold", "limit", "sort", "since", "until", "period", "_x", "token", "\ud800"]
PATHS = ["/count", "/count.gif", "/batch", "/plotpoints", "/totals", "/dimensions", "/metrics",
         "/pks", "/periods", "/health", "/api", "/nope", "/static/nope.js", "/%ff"]
METHODS = ["GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "BREW"]


def _value(rng: random.Random) -> str:
    return rng.choice(HOSTILE if rng.random() < 0.7 else GOOD)


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(DEEP).encode()
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if kind == 2:
        return ("dimensions=" + _value(rng)).encode("utf-8", "surrogatepass")
    event = {rng.choice(NAMES): _value(rng) for _ in range(rng.randrange(4))}
    text = json.dumps(event if kind != 4 else {"id": _value(rng), "events": [event]})
    return text.encode("utf-8", "surrogatepass")


def _environ(rng: random.Random) -> dict:
    method = rng.choice(METHODS)
    query = "&".join(f"{rng.choice(NAMES)}={_value(rng)}" for _ in range(rng.randrange(4)))
    body = _body(rng) if method in ("POST", "PUT") else b""
    length = str(len(body))
    roll = rng.random()
    if roll < 0.05:
        length = rng.choice(["abc", "-5", "1" * 30, "", str(len(body) + 10)])
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": rng.choice(PATHS),
        "QUERY_STRING": query.encode("utf-8", "surrogatepass").decode("latin-1"),
        "SERVER_NAME": "fuzz", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": rng.choice(["application/json", "application/x-www-form-urlencoded",
                                    "text/plain", ""]),
        "CONTENT_LENGTH": length, "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if roll > 0.97:
        del environ["PATH_INFO"]  # what uWSGI passes for a request line with no version
    return environ


def _call(app, environ: dict) -> tuple[int, dict, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def _dump(client) -> dict:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


@pytest.mark.parametrize("which", ["whale", "hail"])
def test_fuzz_no_5xx_json_answers_nothing_stored_when_refused(which, redis_server, settings):
    client = connect(redis_server.url)
    client.flushdb()
    if which == "whale":
        app = whale_app(Store(client, settings), settings)
    else:
        buffer = Buffer(client)
        app = hail_app(buffer.push, settings, lambda: buffer.stats().as_dict())
    rng = random.Random(f"hailwhale-fuzz-{which}")
    statuses: dict[int, int] = {}
    before = _dump(client)
    for number in range(REQUESTS // 2):
        environ = _environ(rng)
        status, headers, body = _call(app, environ)
        statuses[status] = statuses.get(status, 0) + 1
        where = f"request {number}: {environ['REQUEST_METHOD']} {environ.get('PATH_INFO')}?" \
                f"{environ['QUERY_STRING'][:200]!r}"
        assert status < 500, f"{where} -> {status} {body[:300]!r}"
        kind = headers.get("Content-Type", "")
        if environ["REQUEST_METHOD"] != "HEAD" and status != 204 and \
                not kind.startswith(("image/gif", "text/html", "application/javascript",
                                     "text/css")):
            json.loads(body)  # valid JSON, NaN and Infinity refused
        after = _dump(client)
        if status >= 400:
            assert after == before, f"{where} -> {status} stored something"
        before = after
    print(which, dict(sorted(statuses.items())))
    assert sum(statuses.values()) == REQUESTS // 2
