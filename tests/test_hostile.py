"""Hostile input through WSGI, on both apps: every answer a 4xx JSON naming the parameter and
quoting what was sent, never a 5xx nor an HTML page, and nothing stored (issue 9, part 5)."""

from __future__ import annotations

import io
import json
import logging
import socket
from urllib.parse import quote

import bottle
import pytest
import webtest

from hail.app import create_app as hail_app
from hailwhale.batches import check_batch_id
from hailwhale.buffer import Buffer
from hailwhale.config import load_settings
from hailwhale.errors import BadRequest
from hailwhale.event import parse_event
from hailwhale.formulas import parse
from hailwhale.store import Store
from hailwhale_web.plumbing import handled, json_answer
from hailwhale_web.server import serve_in_thread
from whale import create_app as whale_app

SURROGATE = "\ud800"
DEEP_LIST = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


def _strict(body: bytes) -> object:
    """``body`` as JSON, refusing NaN and Infinity as strict readers do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(body, parse_constant=refuse)


@pytest.fixture(params=["whale", "hail"])
def which(request):
    return request.param


@pytest.fixture
def wsgi(which, client, clock):
    """Both apps, bare WSGI callables, on the same clean Redis."""
    settings = load_settings(environ={})
    if which == "whale":
        return whale_app(Store(client, settings), settings, clock=clock)
    buffer = Buffer(client)
    return hail_app(buffer.push, settings, lambda: buffer.stats().as_dict(), clock)


@pytest.fixture
def web(wsgi):
    return webtest.TestApp(wsgi)


def refused(answer, param: str, sent: str | None = None) -> dict:
    """``answer`` is a 400 JSON error naming ``param`` and quoting ``sent``."""
    assert answer.status_int == 400, answer.body[:300]
    assert answer.content_type == "application/json"
    error = _strict(answer.body)
    assert error["param"] == param, error
    if sent is not None:
        assert sent in error["error"], error
    return error


def post_json(web, text: str, path: str = "/count"):
    return web.post(path, text.encode("utf-8", "surrogatepass"),
                    content_type="application/json", expect_errors=True)


# -- 1. lone surrogates ------------------------------------------------------------------
@pytest.mark.parametrize("event, param", [
    ('{"dimensions": ["\\ud800"]}', "dimensions"),
    ('{"dimensions": {"sales": "\\udfff"}}', "dimensions"),
    ('{"pk": "\\ud800"}', "pk"),
    ('{"uid": "\\ud800", "metrics": {"is_unique": 1}}', "uid"),
    ('{"metrics": {"\\ud800": 1}}', "metrics"),
])
def test_a_lone_surrogate_is_refused_alike_by_both_apps(web, client, event, param):
    error = refused(post_json(web, event), param)
    assert SURROGATE in error["error"] or "\udfff" in error["error"]
    if param in ("dimensions", "metrics"):
        # The same event as GET parameters: JSON values carry the escape through the query
        # (pk and uid are plain strings there, which UTF-8 percent-escapes cannot make lone).
        query = {name: json.dumps(value) for name, value in json.loads(event).items()}
        refused(web.get("/count?" + "&".join(f"{name}={quote(value, safe='')}"
                                              for name, value in query.items()),
                        expect_errors=True), param)
    assert client.dbsize() == 0


def test_the_shared_check_refuses_surrogates(settings):
    for raw in ({"dimensions": [SURROGATE]}, {"pk": SURROGATE}, {"uid": "a" + SURROGATE},
                {"metrics": {SURROGATE: 1}}):
        with pytest.raises(BadRequest):
            parse_event(raw, settings, 1_800_000_000)
    with pytest.raises(BadRequest) as error:
        check_batch_id("batch" + SURROGATE)
    assert error.value.param == "id"


def test_whale_refuses_surrogates_in_batch_ids_and_queries(client, clock):
    web = webtest.TestApp(whale_app(Store(client, load_settings(environ={})), clock=clock))
    refused(post_json(web, '{"id": "\\ud800", "events": [{}]}', "/batch"), "id", SURROGATE)
    for path in ("/plotpoints", "/totals", "/dimensions"):
        refused(web.get(path, {"dimensions": '["\\ud800"]'}, expect_errors=True), "dimensions",
                SURROGATE)
    refused(web.get("/plotpoints", {"metrics": '["\\ud800"]'}, expect_errors=True), "metrics")
    assert client.dbsize() == 0


# -- 2. nesting --------------------------------------------------------------------------
@pytest.mark.parametrize("deep", [DEEP_LIST, DEEP_OBJECT, "[" * 100_000])
def test_deep_nesting_is_a_400_not_a_recursion_error(web, client, deep):
    refused(post_json(web, deep), "body")
    refused(post_json(web, deep + "\n" + deep), "body")  # the whole body is tried first
    refused(web.get("/count", {"dimensions": deep}, expect_errors=True), "dimensions")
    refused(web.get("/count", {"metrics": deep}, expect_errors=True), "metrics")
    assert client.dbsize() == 0


def test_deep_nesting_in_queries_and_batches(client, clock):
    web = webtest.TestApp(whale_app(Store(client, load_settings(environ={})), clock=clock))
    for path in ("/plotpoints", "/totals"):
        refused(web.get(path, {"dimensions": DEEP_LIST}, expect_errors=True), "dimensions",
                "nested too deeply")
        refused(web.get(path, {"metrics": DEEP_LIST}, expect_errors=True), "metrics",
                "nested too deeply")
    refused(post_json(web, '{"id": "b1", "events": [' + DEEP_LIST + "]}", "/batch"), "body",
            "nested too deeply")
    assert client.dbsize() == 0


# -- 3. formulas that overflow -----------------------------------------------------------
@pytest.mark.parametrize("text", [
    "*".join(["d"] * 90), "*".join(["d"] * 40) + "-1", "*".join(["d"] * 30) + "/0.001",
    "*".join(["d"] * 60) + "/0.5", "9" * 100 + "*" + "*".join(["d"] * 20), "9" * 150 + "*d" * 24,
    "(" + "*".join(["d"] * 30) + ")/(d-d+0.5)",
])
def test_a_formula_a_float_cannot_hold_is_none(text):
    assert parse(text).evaluate({"d": 1e12}) is None
    assert parse(text).evaluate({"d": 10**12}) is None


def test_an_overflowing_formula_answers_null_never_infinity(client, clock):
    web = webtest.TestApp(whale_app(Store(client, load_settings(environ={})), clock=clock))
    for _ in range(3):
        web.get("/count", {"dimensions": '["a"]', "metrics": '{"d": 1000000000000}'})
    huge = "*".join(["d"] * 90)
    for path in ("/plotpoints", "/totals"):
        for params in ({"metrics": huge}, {"metrics": f"d,{huge}", "depth": "1", "sort": huge},
                       {"metrics": huge + "-1"}):
            answer = web.get(path, params)
            assert answer.status_int == 200
            assert b"null" in answer.body
            _strict(answer.body)
    plot = _strict(web.get("/plotpoints", {"metrics": f"d,{huge}"}).body)
    assert [s["total"] for s in plot["series"]] == [3e12, None]


def test_a_non_finite_answer_is_a_logged_500_never_invalid_json(caplog):
    app = bottle.Bottle()
    app.route("/nan", callback=handled(lambda: json_answer({"value": float("nan")})))
    with caplog.at_level(logging.ERROR):
        answer = webtest.TestApp(app).get("/nan", expect_errors=True)
    assert answer.status_int == 500
    assert "error" in _strict(answer.body)
    assert "Out of range float values are not JSON compliant" in caplog.text


# -- 4. bodies that are not UTF-8 --------------------------------------------------------
@pytest.mark.parametrize("form", [b"dimensions=%ff", b"dimensions=\xff", b"%fe%ff=1",
                                  b"dimensions=%ed%a0%80"])
def test_a_form_body_that_is_not_utf8_is_a_400_naming_body(web, client, form):
    answer = web.post("/count", form, content_type="application/x-www-form-urlencoded",
                      expect_errors=True)
    refused(answer, "body")
    assert client.dbsize() == 0


def test_a_json_body_that_is_not_utf8_is_a_400(web, client):
    answer = web.post("/count", b'{"dimensions": "caf\xe9"}', content_type="application/json",
                      expect_errors=True)
    refused(answer, "body")
    assert client.dbsize() == 0


# -- 5. Content-Length, short bodies, huge times -----------------------------------------
def _environ(body: bytes, length: str, method: str = "POST", path: str = "/count") -> dict:
    return {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "test", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": length,
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def _call(app, environ: dict) -> tuple[int, dict]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = int(status.split()[0])

    body = b"".join(app(environ, start_response))
    return seen["status"], _strict(body)


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "0x10", " 12 3"])
def test_a_non_numeric_content_length_is_a_400(wsgi, client, length):
    status, error = _call(wsgi, _environ(b'{"dimensions": "a"}', length))
    assert (status, error["param"]) == (400, "Content-Length")
    assert length.strip() in error["error"] or length in error["error"]
    assert client.dbsize() == 0


def test_a_body_shorter_than_its_content_length_is_a_400(wsgi, client):
    body = b'{"dimensions": "a"}'
    status, error = _call(wsgi, _environ(body, str(len(body) + 10)))
    assert (status, error["param"]) == (400, "body")
    assert "shorter than its Content-Length" in error["error"]
    assert client.dbsize() == 0


class _Dripping(io.RawIOBase):
    """A body that gives ``size`` bytes per read and lets ``seconds`` pass on ``clock``
    (time.monotonic, patched) at each: a client sending slowly."""

    def __init__(self, body: bytes, size: int, seconds: float, clock: list[float]):
        self.body, self.size, self.seconds, self.clock = body, size, seconds, clock

    def read(self, n: int = -1) -> bytes:
        self.clock[0] += self.seconds
        part, self.body = self.body[:min(n, self.size)], self.body[min(n, self.size):]
        return part


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_sent_too_slowly_is_a_408_and_nothing_stored(wsgi, client, monkeypatch,
                                                             chunked):
    """Past the grace, a body must keep coming at BODY_RATE: a byte a second into a large
    Content-Length is cut (408), instead of holding its connection for days."""
    from hailwhale_web import plumbing

    now = [1000.0]
    monkeypatch.setattr(plumbing.time, "monotonic", lambda: now[0])
    event = json.dumps({"dimensions": ["a" * 100, "b" * 100]}).encode()
    body = event if not chunked else b"".join(
        b"%x\r\n%s\r\n" % (len(event[i:i + 10]), event[i:i + 10])
        for i in range(0, len(event), 10)) + b"0\r\n\r\n"
    environ = _environ(b"", "" if chunked else str(len(event)))
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = _Dripping(body, 1, 1.0, now)  # one byte a second
    status, error = _call(wsgi, environ)
    assert (status, error["param"]) == (408, "body")
    assert "bytes a second" in error["error"]
    assert client.dbsize() == 0
    # The same body at a good pace is counted.
    environ = _environ(b"", "" if chunked else str(len(event)))
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = _Dripping(body, 64, 0.001, now)
    status, answer = _call(wsgi, environ)
    assert status == 200, answer


@pytest.mark.parametrize("at", [str(10**400), "1e400", "-1e400", str(-(10**400)), "1e308"])
def test_a_huge_at_is_a_400_naming_at(web, client, at):
    refused(post_json(web, '{"at": ' + at + "}"), "at")
    refused(web.get("/count", {"at": at}, expect_errors=True), "at")
    assert client.dbsize() == 0


def test_a_huge_time_in_a_query_is_a_400(client, clock):
    web = webtest.TestApp(whale_app(Store(client, load_settings(environ={})), clock=clock))
    for value in (str(10**400), "1e400", "NaN", "-Infinity"):
        refused(web.get("/plotpoints", {"since": value}, expect_errors=True), "since")
        refused(web.get("/totals", {"until": value}, expect_errors=True), "until")


# -- 6. every error answer is JSON -------------------------------------------------------
@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 411, 413, 414, 416, 431, 500,
                                    501, 503])
def test_every_status_bottle_answers_by_itself_is_json(wsgi, status):
    def fail():
        if status == 500:
            raise RuntimeError("<b>boom</b> at 10.0.0.1:6379")
        bottle.abort(status, "<script>alert(1)</script>")

    wsgi.route("/fail", callback=fail)
    answer = webtest.TestApp(wsgi).get("/fail", expect_errors=True)
    assert answer.status_int == status
    assert answer.content_type == "application/json"
    error = _strict(answer.body)
    assert str(status) in error["error"]
    assert "boom" not in error["error"] and "6379" not in error["error"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nope", 404), ("GET", "/static/nope.js", 404), ("PUT", "/count", 405),
    ("DELETE", "/count", 405), ("BREW", "/count", 405), ("PATCH", "/health", 405),
])
def test_unknown_paths_and_methods_answer_json(web, method, path, status):
    answer = web.request(path, method=method, expect_errors=True)
    assert answer.status_int == status
    assert answer.content_type == "application/json"
    assert str(status) in _strict(answer.body)["error"]


def test_a_path_that_is_not_utf8_is_never_a_5xx(wsgi):
    # Bottle drops the bytes that are not UTF-8 (/\xff\xfe routes as /): no error at all.
    seen = {}
    body = b"".join(wsgi(_environ(b"", "", "GET", "/\xff\xfe"),
                         lambda status, headers, exc_info=None: seen.update(status=status)))
    assert seen["status"].startswith("200") and body


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(raw)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("line, status", [
    (b"GET /count\r\n", 400), (b"GET /count?dimensions=a\r\n", 400), (b"POST /count\r\n", 400),
    (b"GET\r\n", 400), (b"GET /count HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET /count XTTP/1.1\r\n\r\n", 400), (b"GET /count HTTP/9.9\r\n\r\n", 505),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
])
def test_the_dev_server_answers_what_it_cannot_parse_with_json(wsgi, client, line, status):
    server = serve_in_thread(wsgi)
    try:
        answer = _exchange(server.server_port, line)
    finally:
        server.shutdown()
        server.server_close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == str(status).encode(), answer[:300]
    assert b"Content-Type: application/json" in head
    assert b"html" not in body.lower()
    assert str(status) in _strict(body)["error"]
    assert client.dbsize() == 0
