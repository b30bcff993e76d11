"""Whale's Graphite API, for Grafana's built-in Graphite data source (README: "Grafana").

Grafana (public/app/plugins/datasource/graphite/datasource.ts) posts ``/render`` and
``/metrics/find`` as forms (``application/x-www-form-urlencoded``), repeats ``target``, and
asks ``/functions``, ``/version`` and ``/tags/autoComplete/*``; graphite-web reads GET and POST
parameters together, and so does this. Every answer is JSON; reads need a read token when a
SECRET is set (Grafana sends it as the data source's ``Authorization: Bearer`` header).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import bottle

from hailwhale import graphite
from hailwhale.admission import Budget, Slots
from hailwhale.config import Settings
from hailwhale.errors import BadRequest
from hailwhale.graphite_series import describe
from hailwhale.graphite_targets import parse_time
from hailwhale.store import Store
from hailwhale_web.plumbing import Guard, body, handled, json_answer, query_params

FORM = "application/x-www-form-urlencoded"
DEFAULT_FROM = "-1d"  # graphite-web's default window


class Params:
    """A request's parameters, GET and POST together, repeated names kept in order."""

    def __init__(self) -> None:
        query_params()  # its checks: escapes that are not UTF-8, a query string uWSGI cut
        self.pairs = _pairs(bottle.request.environ.get("QUERY_STRING", ""), "query")
        if bottle.request.method == "POST":
            raw = body()
            content_type = (bottle.request.content_type or "").split(";")[0].strip().lower()
            if raw.strip() and content_type not in (FORM, ""):
                raise BadRequest("body", content_type, f"post the parameters as a form ({FORM}),"
                                 " as Grafana does")
            self.pairs += _pairs(raw.decode("latin-1").strip(), "body")

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.all(name)
        return values[-1] if values else default

    def token(self) -> dict:
        """What Guard.grant reads the token from (the Authorization header wins)."""
        token = self.get("token")
        return {"token": token} if token else {}


def _pairs(text: str, param: str) -> list[tuple[str, str]]:
    """``name=value&...`` as decoded pairs; as the apps' own query parser, escapes must be
    UTF-8 (WSGI hands text over as latin-1)."""
    pairs = []
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            pairs.append((_unquote(name, param), _unquote(value, param)))
    return pairs


def _unquote(text: str, param: str) -> str:
    raw = unquote(text.replace("+", " "), "latin-1").encode("latin-1", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(param, text, "percent-escapes and bytes must be UTF-8") from None


def _zone(params: Params, settings: Settings):
    name = params.get("tz")
    if not name:
        return settings.tz
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest("tz", name, "unknown time zone") from None


def _flag(params: Params, name: str) -> bool:
    value = params.get(name)
    if value in (None, "", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise BadRequest(name, value, "is 1 or 0")


def _max_points(params: Params) -> int | None:
    value = params.get("maxDataPoints")
    if value in (None, ""):
        return None
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise BadRequest("maxDataPoints", value, "a whole number of points, 1 or more")
    return int(value)


def install(app: bottle.Bottle, store: Store, settings: Settings, guard: Guard, slots: Slots,
            clock: Callable[[], float] = time.time) -> None:
    """Add the Graphite routes to Whale's app."""

    def window(params: Params, now: float) -> tuple[float, float]:
        tz = _zone(params, settings)
        until = parse_time(params.get("until") or "now", now, tz, "until")
        since = parse_time(params.get("from") or DEFAULT_FROM, now, tz, "from")
        if since == until:
            raise BadRequest("from", params.get("from"), "from and until are the same time")
        return min(since, until), max(since, until)  # as graphite-web: either order

    def since_of(params: Params, now: float) -> float | None:
        # /metrics/find lists what was seen since `from` (Grafana sends its range).
        value = params.get("from")
        return None if value in (None, "", "-1") else \
            parse_time(value, now, _zone(params, settings), "from")

    def no_cache(payload) -> str:
        bottle.response.set_header("Cache-Control", "no-cache")
        return json_answer(payload)

    @handled
    def render():
        params = Params()
        grant = guard.grant(params.token())
        if params.get("format", "json") != "json":
            raise BadRequest("format", params.get("format"), "HailWhale answers format=json")
        targets = params.all("target") + params.all("target[]")
        now = clock()
        since, until = window(params, now)
        max_points = _max_points(params)
        with Budget(slots) as budget:
            found = graphite.render(store, grant, settings, targets, since, until, now,
                                    max_points, budget)
        no_nulls = any(name == "noNullPoints" for name, _ in params.pairs)  # as graphite-web
        answer = []
        for series in found:
            points = series.datapoints()
            if no_nulls:
                points = [point for point in points if point[0] is not None]
                if not points:
                    continue
            answer.append({"target": series.name, "datapoints": points})
        return no_cache(answer)

    @handled
    def find():
        params = Params()
        grant = guard.grant(params.token())
        if params.get("format", "treejson") != "treejson":
            raise BadRequest("format", params.get("format"), "HailWhale answers treejson")
        pattern = params.get("query")
        if not pattern:
            raise BadRequest("query", pattern, "a pattern such as * or shop.*")
        leaves_only = _flag(params, "leavesOnly")
        found = graphite.nodes(store, grant, settings, pattern, since_of(params, clock()))
        return no_cache([n.as_dict() for n in found if n.leaf or not leaves_only])

    @handled
    def expand():
        params = Params()
        grant = guard.grant(params.token())
        patterns = params.all("query")
        if not patterns or not all(patterns):
            raise BadRequest("query", params.get("query"), "a pattern such as shop.*")
        return no_cache(graphite.expand(store, grant, settings, patterns,
                                        since_of(params, clock()), _flag(params, "leavesOnly"),
                                        _flag(params, "groupByExpr")))

    for path, callback in (("/render", render), ("/metrics/find", find),
                           ("/metrics/expand", expand)):
        app.route(path, ["GET", "POST"], callback)

    # No counted data in these: no token needed, as for /periods.
    @app.get("/functions")
    @handled
    def functions():
        return json_answer(describe())

    @app.get("/version")
    @handled
    def version():
        return json_answer(graphite.VERSION)

    @app.get("/tags/autoComplete/tags")
    @handled
    def tags():
        # Grafana's query editor asks for tags beside the first segment's names; HailWhale's
        # series have none (DogStatsD tags are dimension branches), so: none.
        return json_answer([])

    app.get("/tags/autoComplete/values", callback=handled(lambda: json_answer([])))
