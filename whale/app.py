"""The Whale Bottle app: counts events and answers queries over HTTP.

Every answer is JSON. Bad input is a 400 ``{"error": ..., "param": ...}``; a Redis that cannot
be reached is a 503 with ``Retry-After``; reads carry CORS headers so a dashboard on another
origin can draw from them.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections.abc import Callable

import bottle

from hailwhale import query as queries
from hailwhale.config import Settings
from hailwhale.errors import BadRequest, StoreUnavailable
from hailwhale.event import parse_event
from hailwhale.store import Store

log = logging.getLogger("hailwhale.whale")

MAX_BODY = 16 * 1024 * 1024
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _params() -> dict:
    """The query string as a plain dict of str (the last value of a repeated name)."""
    return dict(bottle.request.query.decode())


def _json(payload: object, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(payload, separators=(",", ":"))


def _handled(func: Callable) -> Callable:
    """Turns HailWhale's errors into JSON answers; anything else is a logged 500."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BadRequest as exc:
            return _json({"error": str(exc), "param": exc.param}, 400)
        except StoreUnavailable as exc:
            bottle.response.set_header("Retry-After", "1")
            return _json({"error": str(exc)}, 503)
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("unexpected error in %s", bottle.request.path)
            return _json({"error": "internal error; see the server log"}, 500)

    return wrapper


def read_events(raw_body: bytes, content_type: str) -> list:
    """The raw events of a POST body: one JSON object, a JSON list, NDJSON, or a form."""
    text = raw_body.decode("utf-8", "replace").strip()
    # `curl -d '{...}'` labels JSON as a form: the body's first character decides.
    if content_type.startswith("application/x-www-form-urlencoded") and text[:1] not in "[{":
        return [dict(bottle.request.forms.decode())]
    if not text:
        raise BadRequest("body", "", "POST a JSON event, a JSON list of events, or NDJSON")
    try:
        document = json.loads(text)
    except ValueError as whole_error:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise BadRequest("body", text, f"malformed JSON: {whole_error}") from None
        document = []
        for number, line in enumerate(lines, 1):
            try:
                document.append(json.loads(line))
            except ValueError as exc:
                raise BadRequest(f"line {number}", line, f"malformed JSON: {exc}") from None
    return document if isinstance(document, list) else [document]


def create_app(store: Store, settings: Settings | None = None,
               clock: Callable[[], float] = time.time) -> bottle.Bottle:
    """The Whale WSGI app, counting into and reading from ``store``."""
    settings = settings or store.settings
    app = bottle.Bottle()

    @app.hook("after_request")
    def cors() -> None:
        bottle.response.set_header("Access-Control-Allow-Origin", "*")
        bottle.response.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        bottle.response.set_header("Access-Control-Allow-Headers", "Content-Type")

    @app.hook("before_request")
    def preflight() -> None:
        # Answered here rather than by a catch-all OPTIONS route, which would turn every
        # unknown path into a 405 instead of a 404.
        if bottle.request.method == "OPTIONS":
            raise bottle.HTTPResponse(status=204)

    def count(raw_events: list) -> int:
        now = clock()
        events = []
        for index, raw in enumerate(raw_events):
            try:
                events.append(parse_event(raw, settings, now))
            except BadRequest as exc:
                raise exc.prefixed(f"event {index}") if len(raw_events) > 1 else exc from None
        return store.count(events, now)

    @app.get("/count")
    @_handled
    def count_get():
        counted = count([_params()])
        return _json({"ok": True, "counted": counted})

    @app.get("/count.gif")
    @_handled
    def count_gif():
        count([_params()])
        bottle.response.content_type = "image/gif"
        bottle.response.set_header("Cache-Control", "no-store, no-cache, must-revalidate")
        return GIF

    @app.post("/count")
    @_handled
    def count_post():
        length = bottle.request.content_length
        if length > MAX_BODY:
            return _json({"error": f"body: at most {MAX_BODY} bytes in one POST"}, 413)
        raw = bottle.request.body.read()
        events = read_events(raw, bottle.request.content_type or "")
        if not events:
            raise BadRequest("body", "[]", "the batch holds no events")
        return _json({"ok": True, "counted": count(events)})

    def read(answer: Callable) -> Callable:
        @_handled
        def route():
            query = queries.parse_query(_params(), settings, clock())
            bottle.response.set_header("Cache-Control", "no-cache")
            return _json(answer(store, query))

        return route

    app.get("/plotpoints", callback=read(queries.plotpoints))
    app.get("/totals", callback=read(queries.totals))

    @app.get("/dimensions")
    @_handled
    def dimensions():
        params = _params()
        path = queries.parse_path(params.get("dimensions", params.get("dimension")), settings)
        pk = params.get("pk", params.get("category")) or ""
        return _json(queries.dimensions(store, pk, path))

    @app.get("/metrics")
    @_handled
    def metrics():
        pk = _params().get("pk") or ""
        return _json({"pk": pk, "metrics": store.metric_kinds(pk)})

    @app.get("/pks")
    @_handled
    def pks():
        return _json({"pks": store.pks()})

    @app.get("/periods")
    @_handled
    def periods():
        return _json({"periods": [p.as_dict() for p in settings.periods],
                      "timezone": settings.timezone})

    @app.get("/health")
    @_handled
    def health():
        store.ping()
        return _json({"ok": True, "store": "up"})

    @app.get("/")
    @_handled
    def index():
        return _json({
            "service": "whale",
            "endpoints": ["/count", "/count.gif", "/plotpoints", "/totals", "/dimensions",
                          "/metrics", "/pks", "/periods", "/health"],
        })

    for status in (404, 405, 413):
        app.error(status)(_error_page)
    return app


def _error_page(error: bottle.HTTPError) -> str:
    bottle.response.content_type = "application/json"
    return json.dumps({"error": f"{error.status}: {error.body or ''}".strip(": ")})
