"""HTTP plumbing shared by the Whale and Hail apps: JSON answers, errors, CORS, bodies."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from urllib.parse import unquote

import bottle

from hailwhale import auth
from hailwhale.config import Settings
from hailwhale.errors import (
    BadRequest,
    ConfigurationError,
    Forbidden,
    StoreUnavailable,
    Unauthorized,
)

from . import prometheus

log = logging.getLogger("hailwhale.http")

MAX_BODY = 16 * 1024 * 1024
# A body must keep coming: after a grace of BODY_GRACE seconds, at BODY_RATE bytes a second on
# average (a 16 MiB batch over a 1 Mbit/s line passes), or 408. Without this, a client
# dripping a byte a second into a large Content-Length holds its connection for days.
BODY_GRACE = 10.0
BODY_RATE = 64 * 1024
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class BodyTooLarge(Exception):
    """A request body past MAX_BODY: answered 413."""


class BodyTooSlow(Exception):
    """A request body arriving slower than BODY_RATE after BODY_GRACE: answered 408."""

    def __init__(self, received: int, seconds: float):
        super().__init__(f"body: {received} bytes in {seconds:.0f} s; send at least "
                         f"{BODY_RATE} bytes a second after the first {BODY_GRACE:.0f} s")


def _check_pace(started: float, received: int) -> None:
    elapsed = time.monotonic() - started
    if elapsed > BODY_GRACE + received / BODY_RATE:
        raise BodyTooSlow(received, elapsed)


def node_key() -> str:
    """What the workers of one node share: the uWSGI master's pid, or this process's."""
    try:
        import uwsgi  # type: ignore[import-not-found]

        master = uwsgi.masterpid()
    except ImportError:
        master = 0
    return f"uwsgi-{master}" if master else f"pid-{os.getpid()}"


def query_params() -> dict:
    """The query string as a plain dict of str (the last value of a repeated name)."""
    environ = bottle.request.environ
    uri = environ.get("REQUEST_URI", "")
    if "QUERY_STRING" not in environ and uri.partition("?")[2]:
        # uWSGI passes a request on without QUERY_STRING when it cannot fit it into its
        # buffer-size (logging "unable to add QUERY_STRING"): refuse it, rather than count
        # an event with no dimensions and no metrics.
        raise BadRequest("query", uri, "too long for the server's request buffer; "
                                       "POST the event instead")
    return parse_query_string(environ.get("QUERY_STRING", ""))


def parse_query_string(query: str) -> dict:
    """A WSGI query string as a dict of str, the last value of a repeated name winning:
    what Bottle's ``request.query.decode()`` gives, in half its time (this is most of what a
    ``GET /count`` costs Hail before the event is checked). Percent-escapes are UTF-8; any
    that are not are a BadRequest."""
    params = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[_unquote(name)] = _unquote(value)
    return params


def _unquote(text: str) -> str:
    # WSGI hands the query string over as latin-1 text: back to bytes, then UTF-8.
    raw = unquote(text.replace("+", " "), "latin-1").encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("query", text, "percent-escapes must be UTF-8") from None


def json_answer(payload: object, status: int = 200) -> str:
    """``payload`` as the JSON body of the response."""
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    # allow_nan=False: NaN and Infinity are not JSON; emitting one is a bug, never an answer.
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def gif_answer() -> bytes:
    """The 1x1 GIF of image beacons, never cached."""
    bottle.response.content_type = "image/gif"
    bottle.response.set_header("Cache-Control", "no-store, no-cache, must-revalidate")
    bottle.response.set_header("Pragma", "no-cache")
    return GIF


def handled(func: Callable) -> Callable:
    """Turns HailWhale's errors into JSON answers: 400 for bad input, 503 with Retry-After
    when Redis is down, 413 for a body too large; anything else is a logged 500."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BadRequest as exc:
            return json_answer({"error": str(exc), "param": exc.param}, 400)
        except Unauthorized as exc:
            bottle.response.set_header("WWW-Authenticate", 'Bearer realm="hailwhale"')
            return json_answer({"error": f"token: {exc}", "param": "token"}, 401)
        except Forbidden as exc:
            return json_answer({"error": f"token: {exc}", "param": "token"}, 403)
        except StoreUnavailable as exc:
            bottle.response.set_header("Retry-After", "1")
            return json_answer({"error": str(exc)}, 503)
        except BodyTooLarge:
            return json_answer({"error": f"body: at most {MAX_BODY} bytes in one POST"}, 413)
        except BodyTooSlow as exc:
            bottle.response.set_header("Connection", "close")
            return json_answer({"error": str(exc), "param": "body"}, 408)
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("unexpected error in %s", bottle.request.path)
            return json_answer({"error": "internal error; see the server log"}, 500)

    return wrapper


def body() -> bytes:
    """The request body, refused past MAX_BODY. Read here rather than by Bottle, which
    fails with a 500 on a non-numeric Content-Length and on a body shorter than it."""
    environ = bottle.request.environ
    cached = environ.get("hailwhale.body")
    if cached is not None:
        return cached
    declared = environ.get("CONTENT_LENGTH") or ""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not declared:
        data = _read_chunked(environ)
    else:
        if declared and not declared.strip().isdigit():
            raise BadRequest("Content-Length", declared, "must be a whole number of bytes")
        length = int(declared or 0)
        if length > MAX_BODY:
            raise BodyTooLarge()
        data = _read(environ["wsgi.input"], length, declared)
    environ["hailwhale.body"] = data
    return data


def _read(stream, length: int, declared: str) -> bytes:
    parts, left, started = [], length, time.monotonic()
    while left > 0:
        _check_pace(started, length - left)
        try:
            part = stream.read(min(left, 65536))
        except OSError:  # uWSGI: a timeout waiting for the rest of the body
            part = b""
        if not part:
            raise BadRequest("body", f"{length - left} bytes", "the body is shorter than "
                             f"its Content-Length ({declared})")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_chunked(environ: dict) -> bytes:
    """A chunked body with no Content-Length, refused as soon as it passes MAX_BODY."""
    parts, size, started = [], 0, time.monotonic()
    if "uwsgi.version" in environ:  # uWSGI does not de-chunk into wsgi.input
        import uwsgi  # type: ignore[import-not-found]

        read = uwsgi.chunked_read
    else:
        chunks = bottle.BaseRequest._iter_chunked(environ["wsgi.input"].read, 65536)
        read = functools.partial(next, chunks, b"")
    while True:
        _check_pace(started, size)
        try:
            part = read()
        except (OSError, ValueError):
            raise BadRequest("body", f"{size} bytes", "malformed chunked body") from None
        if not part:
            return b"".join(parts)
        size += len(part)
        if size > MAX_BODY:
            raise BodyTooLarge()
        parts.append(part)


def posted_events() -> list:
    """The raw events of a POST body: one JSON object, a JSON list, NDJSON, or a form."""
    raw = body()
    content_type = bottle.request.content_type or ""
    # `curl -d '{...}'` labels JSON as a form: the body's first character decides.
    if content_type.startswith("application/x-www-form-urlencoded") and \
            raw.lstrip()[:1] not in (b"[", b"{"):
        # The same parser as GET's query string: escapes that are not UTF-8 are a 400.
        try:
            form = parse_query_string(raw.decode("latin-1").strip())
        except BadRequest as exc:
            raise BadRequest("body", exc.value, "a form's percent-escapes and bytes must be "
                             "UTF-8") from None
        # A form's token is a credential, not a parameter of the event.
        bottle.request.environ[_FORM_TOKEN] = form.pop("token", None)
        return [form]
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise BadRequest("body", raw[max(0, exc.start - 20): exc.start + 20],
                         f"not UTF-8 at byte {exc.start}") from None
    if not text:
        raise BadRequest("body", "", "POST a JSON event, a JSON list of events, or NDJSON")
    try:
        document = _loads(text, "body")
    except ValueError as whole_error:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise BadRequest("body", text, f"malformed JSON: {whole_error}") from None
        document = []
        for number, line in enumerate(lines, 1):
            try:
                document.append(_loads(line, f"line {number}"))
            except ValueError as exc:
                raise BadRequest(f"line {number}", line, f"malformed JSON: {exc}") from None
    events = document if isinstance(document, list) else [document]
    if not events:
        raise BadRequest("body", "[]", "the batch holds no events")
    return events


_FORM_TOKEN = "hailwhale.form_token"


def request_token(params: dict) -> str | None:
    """The token a request carries, removed from ``params`` (it is a credential, not a
    parameter of the event or query): ``Authorization: Bearer <token>``, else the ``token``
    parameter of the query string or of a posted form (all an ``<img>`` beacon can send)."""
    from_params = params.pop("token", None)
    scheme, _, value = bottle.request.get_header("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return from_params or bottle.request.environ.get(_FORM_TOKEN)


class Guard:
    """Who may do what, as the settings say: signed tokens with a SECRET, else open."""

    def __init__(self, settings: Settings):
        self.verifier = (auth.Verifier(settings.secret, settings.revoked_tokens)
                         if settings.secret else None)

    @property
    def open(self) -> bool:
        """Whether the service takes requests with no token (no SECRET configured)."""
        return self.verifier is None

    def grant(self, params: dict) -> auth.Grant:
        """What the request's token allows (everything when open). Call it before the
        request's parameters are checked: ``token`` is taken out of ``params``."""
        token = request_token(params)
        return auth.OPEN if self.verifier is None else self.verifier.verify(token)

    def health(self) -> dict:
        """The authentication mode, for ``/health``."""
        if self.open:
            return {"auth": "open", "warning": OPEN_WARNING}
        return {"auth": "tokens"}


OPEN_WARNING = ("no SECRET is set: anyone who can reach this service can count and read "
                "every pk (see README, Security)")


def require_write(grant: auth.Grant, events) -> None:
    """Forbidden unless ``grant`` may count every one of ``events`` (checked events): its
    pk, and every branch at or below the token's dimension prefix."""
    for event in events:
        auth.require(grant, "write", event.pk, event.branches or [()])


def posted_json() -> object:
    """The request body as one JSON document."""
    try:
        return _loads(body() or b"null", "body")
    except ValueError as exc:
        raise BadRequest("body", "", f"malformed JSON: {exc}") from None


def _loads(text: str | bytes, param: str) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        # json's decoder recurses per level: ~1,000 levels exhaust the stack.
        if isinstance(text, bytes):
            text = text[:120].decode("utf-8", "replace")
        raise BadRequest(param, text[:120], "JSON nested too deeply") from None


class App(bottle.Bottle):
    """A Bottle app that answers a request it cannot route (no path: a request line with
    no HTTP version under uWSGI) with a JSON 400, and never with Bottle's HTML page; every
    other request is counted and timed as one of ``service`` ("whale" or "hail")."""

    def __init__(self, service: str = "", **kwargs):
        super().__init__(**kwargs)
        self.service = service

    def __call__(self, environ, start_response):
        if not isinstance(environ.get("PATH_INFO"), str) or \
                not environ.get("REQUEST_METHOD"):
            body = json.dumps({"error": "request line: a method, a path and an HTTP "
                                        "version are required"}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body)))])
            return [body]
        return prometheus.timed(self.service, super().__call__, environ, start_response)


def install_common(app: bottle.Bottle) -> None:
    """CORS on every answer (so pages on other origins can send and read), preflights,
    and JSON error pages."""

    @app.hook("before_request")
    def preflight() -> None:
        # Answered here rather than by a catch-all OPTIONS route, which would turn every
        # unknown path into a 405 instead of a 404.
        if bottle.request.method == "OPTIONS":
            raise bottle.HTTPResponse(status=204, headers=CORS)

    @app.hook("after_request")
    def cors() -> None:
        for name, value in CORS.items():
            bottle.response.set_header(name, value)
        # Every answer is what it says it is: a JSON error is never sniffed into a script.
        bottle.response.set_header("X-Content-Type-Options", "nosniff")

    # Every error status Bottle may answer by itself (a 500 included) is JSON, never its
    # HTML page.
    for status in bottle.HTTP_CODES:
        if status >= 400:
            app.error(status)(_error_page)


CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
}


# The dashboard and the plugin's assets: no inline script, nothing from elsewhere. Inline
# style stays allowed: the plugin sets element styles and adds one <style> for the legend,
# and flot 4 builds its legend from markup with style attributes.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'")


def asset(answer: bottle.HTTPResponse) -> bottle.HTTPResponse:
    """A static answer (the dashboard, a script) with the page headers: static_file's
    answer replaces the response the after_request hook sets headers on."""
    answer.set_header("Content-Security-Policy", CSP)
    answer.set_header("X-Content-Type-Options", "nosniff")
    for name, value in CORS.items():
        answer.set_header(name, value)
    return answer


def _error_page(error: bottle.HTTPError) -> str:
    bottle.response.content_type = "application/json"
    if error.status_code >= 500:
        log.error("%s %s: %s", bottle.request.method, bottle.request.path,
                  error.traceback or error.body)
        return json.dumps({"error": f"{error.status}: internal error; see the server log"})
    return json.dumps({"error": f"{error.status}: {error.body or ''}".strip(": ")})


def check_uwsgi_exposure(settings: Settings, what: str) -> None:
    """Under uWSGI: refuse to load with no SECRET when the worker's http-socket listens on an
    address other machines can reach, unless ALLOW_OPEN is set (need-app then stops uWSGI
    at start with this message)."""
    try:
        import uwsgi  # only importable inside uWSGI
    except ImportError:
        return
    sockets = [s.decode() if isinstance(s, bytes) else str(s)
               for s in _as_list(uwsgi.opt.get("http-socket"))]
    for socket in sockets:
        host = socket.rpartition(":")[0]
        if not settings.secret and not settings.allow_open and not auth.is_loopback(host):
            raise ConfigurationError(
                f"refusing to serve {what} with no SECRET on {host or 'every interface'}: "
                "anyone who can reach it could count and read every pk. Set "
                "HAILWHALE_SECRET (see README, Security), HAILWHALE_HOST=127.0.0.1, or "
                "HAILWHALE_ALLOW_OPEN=1")


def _as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]
