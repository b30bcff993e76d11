"""The OpenAPI 3.1 document of the HTTP API, served by each app at ``/openapi.json`` (its own
routes only). tests/test_openapi.py keeps it true: every route of both apps is here with its
method, nothing here is not a route, and the document validates as OpenAPI."""

from __future__ import annotations

VERSION = "0.1.0"

_TOKEN = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
          "description": "a token, for clients that cannot send an Authorization header "
                         "(image beacons); needed only when the service has a SECRET"}


def _param(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False,
            "schema": schema or {"type": "string"}, "description": description}


_EVENT = [
    _param("dimensions", 'where the event is counted: a name ("services"), a JSON list '
           '(a hierarchy), or a JSON object (nesting; several keys are several branches)'),
    _param("dimension", "alias of dimensions"),
    _param("metrics", 'a JSON object of metric name -> number, "is_unique", {"gauge": n}, '
           '{"delta": n} or {"timing": n or [n, ...]}; every event also counts hits: 1'),
    _param("metric", "alias of metrics"),
    _param("pk", "a namespace (default: the default pk)"),
    _param("category", "alias of pk"),
    _param("at", "the event's time: unix seconds (or ms) or ISO 8601 (default: now)"),
    _param("uid", "the visitor a unique metric counts (default: the deepest dimension)"),
    _TOKEN,
]
_QUERY = [
    _param("pk", "the namespace read (default: the default pk)"),
    _param("category", "alias of pk"),
    _param("dimensions", "the dimension path shown (a name or a JSON list; default: the "
           "overall root)"),
    _param("dimension", "alias of dimensions"),
    _param("metrics", "metrics or formulas, comma separated or a JSON list "
           "(dollars,dollars/hits,latency:p99,cpu:last; default: hits)"),
    _param("metric", "alias of metrics"),
    _param("period", "a configured period's name or interval:retention (default: the "
           "first period)"),
    _param("since", "the window's start: unix seconds, ISO 8601 or a duration before now "
           "(10m, 3h)"),
    _param("until", "the window's end (default: now)"),
    _param("depth", "levels of children shown (default 0)", {"type": "integer"}),
    _param("threshold", "share of the parent's total a child needs to be shown "
           "(default 0.1)", {"type": "number"}),
    _param("limit", "the top N children", {"type": "integer"}),
    _param("sort", "the metric or formula children are ranked by (default: the first)"),
    _param("tz", "an IANA zone for day buckets and named windows (default: TIMEZONE)"),
    _TOKEN,
]
# GET /rank (hailwhale.rank): the same selection, one value, every level by default.
_RANK = [p for p in _QUERY if p["name"] in ("pk", "category", "dimensions", "dimension",
                                            "period", "since", "until", "tz")] + [
    _param("value", "the metric or formula ranked: dollars, or a ratio such as "
           "dollars/visitors (default: hits)"),
    _param("metrics", "alias of value"),
    _param("recursive", "true (the default): every level below the dimension; false: its "
           "children only", {"type": "boolean"}),
    _param("depth", "instead of recursive: how many levels below the dimension (1 to "
           "MAX_DEPTH)", {"type": "integer"}),
    _TOKEN,
]
_JSON = {"description": "a JSON answer", "content": {"application/json": {
    "schema": {"type": "object"}}}}
_ERRORS = {
    "400": {"description": 'bad input: {"error": ..., "param": ...} naming the parameter '
                           "and quoting what was sent", "content": {"application/json": {
                               "schema": {"$ref": "#/components/schemas/Error"}}}},
    "401": {"description": "a token is needed (the service has a SECRET)"},
    "403": {"description": "the token does not allow this"},
    "503": {"description": "the store or the buffer is unavailable; Retry-After says when "
                           "to try again"},
}


def _operation(summary: str, parameters: list[dict] | None = None, *, body: str | None = None,
               answer: dict | None = None, errors: bool = True) -> dict:
    operation: dict = {"summary": summary, "parameters": parameters or [],
                       "responses": {"200": answer or _JSON, **(_ERRORS if errors else {})}}
    if body:
        operation["requestBody"] = {"required": True, "description": body, "content": {
            "application/json": {"schema": {}}, "application/x-ndjson": {"schema": {}},
            "application/x-hailwhale-wire": {"schema": {"type": "string"}}}}
    return operation


_GIF = {"description": "a 1x1 GIF", "content": {"image/gif": {"schema": {
    "type": "string", "format": "binary"}}}}
_FILE = {"description": "the file", "content": {"*/*": {"schema": {"type": "string"}}}}
_COUNT = {
    "get": _operation("Count one event", _EVENT),
    "post": _operation("Count one event, a JSON list of events, or NDJSON", [_TOKEN],
                       body="one event object, a JSON list of them, or NDJSON lines"),
}
_COUNT_GIF = {"get": _operation("Count one event, answered with a 1x1 GIF (image beacons)",
                                _EVENT, answer=_GIF)}
_HEALTH = {"get": _operation("Whether the service and its store or buffer answer",
                             errors=False)}
_PROMETHEUS = {"get": {
    "summary": "Metrics about this node (requests, events, batches, buffer, Redis errors, "
               "StatsD) in Prometheus' text format; with a SECRET, an admin token or a read "
               "token for every pk",
    "parameters": [_TOKEN],
    "responses": {
        "200": {"description": "Prometheus' text exposition format, version 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}}},
        "401": _ERRORS["401"], "403": _ERRORS["403"]}}}
_DOCUMENT = {"get": _operation("This document", answer={
    "description": "the OpenAPI document", "content": {"application/json": {
        "schema": {"type": "object"}}}}, errors=False)}

# Graphite's render and find API, for Grafana (README: "Grafana (Graphite data source)"):
# GET, or POST with the same parameters as a form, as Grafana sends them.
_TIMES = [_param("from", "the window's start: unix seconds, -1h, now-7d, HH:MM_YYYYMMDD... "
                 "(default -1d)"),
          _param("until", "the window's end (default now)"),
          _param("tz", "the time zone of from and until (default TIMEZONE)")]
_RENDER = [_param("target", "a Graphite target, repeated: a path such as shop.web.*.hits or "
                  "functions of paths (sumSeries, divideSeries, scale, alias, aliasByNode, "
                  "summarize, constantLine...)"),
           _param("target[]", "alias of target"), *_TIMES,
           _param("format", "json (the only one)"),
           _param("maxDataPoints", "at most this many points a series: adjacent buckets "
                  "merged", {"type": "integer"}),
           _param("noNullPoints", "leave out null points"), _TOKEN]
_FIND = [_param("query", "a pattern of dotted paths, pk first: *, shop.*, shop.{web,api}.*"),
         *_TIMES, _param("format", "treejson (the only one)"),
         _param("leavesOnly", "1: metrics only"), _TOKEN]
_EXPAND = [_param("query", "a pattern (repeated)"), *_TIMES,
           _param("leavesOnly", "1: metrics only"),
           _param("groupByExpr", "1: the results by pattern"), _TOKEN]


def _graphite(summary: str, parameters: list[dict]) -> dict:
    form = {"required": False, "description": "the same parameters as a form",
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    return {"get": _operation(summary, parameters),
            "post": {**_operation(summary, parameters), "requestBody": form}}


_GRAPHITE = {
    "/render": _graphite("Graphite's render: [{target, datapoints: [[value, time], ...]}]",
                         _RENDER),
    "/metrics/find": _graphite("Graphite's find: the nodes a pattern matches, "
                               "[{text, id, leaf, expandable, allowChildren}]", _FIND),
    "/metrics/expand": _graphite('Graphite\'s expand: {"results": [paths]}', _EXPAND),
    "/functions": {"get": _operation("The Graphite functions /render knows, as Graphite "
                                     "lists them", errors=False)},
    "/version": {"get": _operation("The Graphite API version answered", errors=False)},
    "/tags/autoComplete/tags": {"get": _operation("Graphite tags: none (Grafana asks)",
                                                  errors=False)},
    "/tags/autoComplete/values": {"get": _operation("Graphite tag values: none",
                                                    errors=False)},
}

# Decisions (README: "Decisions").
_DECISION = [_param("pk", "the namespace"), _param("category", "alias of pk"),
             _param("decision", "the decision's name")]
_COUNT_DECISION = [*_DECISION, _param("option", "the option that was shown"),
                   _param("dimensions", "what is known about the visitor (as /count's)"),
                   _param("dimension", "alias of dimensions"),
                   _param("metrics", 'the outcome, as /count\'s numbers: {"dollars": 50}'),
                   _param("metric", "alias of metrics"),
                   _param("at", "the outcome's time (default: now)"), _TOKEN]
_DECIDE = [*_DECISION, _param("options", 'the options, a JSON list: ["a", "b"]'),
           _param("dimensions", "what is known about the visitor"),
           _param("dimension", "alias of dimensions"),
           _param("metrics", "what to maximise: m/n or one metric per event (default "
                  "value/hits)"), _param("metric", "alias of metrics"),
           _param("period", "the period read (default: the last configured)"),
           _param("since", "the window's start (default: the period's retention)"),
           _param("until", "the window's end (default: now)"),
           _param("test_idea_threshold", "the chance of trying a test option (0.05)",
                  {"type": "number"}),
           _param("bad_idea_threshold", "the chance of a bad option (0.05)",
                  {"type": "number"}),
           _param("record", "0: do not count this answer as a choice (dashboards)"), _TOKEN]

PATHS: dict[str, dict[str, dict]] = {
    "whale": {
        "/count": _COUNT,
        "/count.gif": _COUNT_GIF,
        "/batch": {"post": _operation(
            "Count a batch at most once under its id (hailwail's deliveries; admin token)",
            [_param("id", "the batch id (1 to 200 characters)"),
             _param("count", "how many lines the body holds (wire lines)",
                    {"type": "integer"}), _TOKEN],
            body="wire lines (application/x-hailwhale-wire), or a JSON envelope "
                 '{"id", "events"} of the first form')},
        "/plotpoints": {"get": _operation(
            "Flot-ready series: one per shown dimension and metric, every bucket present",
            _QUERY)},
        "/totals": {"get": _operation("The totals of the same selection", _QUERY)},
        "/rank": {"get": _operation(
            "The descendants of a dimension that matter: each one's importance, score, "
            "difference, effect, value, count and significance, keyed by its path", _RANK)},
        "/dimensions": {"get": _operation("The children of a dimension, for drill-down", [
            _param("pk", "the namespace"), _param("category", "alias of pk"),
            _param("dimensions", "the dimension whose children are listed"),
            _param("dimension", "alias of dimensions"), _TOKEN])},
        "/metrics": {"get": _operation("A pk's metric names and their kinds",
                                       [_param("pk", "the namespace"), _TOKEN])},
        "/pks": {"get": _operation("The pks (those a read token covers)", [_TOKEN])},
        "/count_decision": {"get": _operation(
            "Count the outcome of having shown an option of a decision", _COUNT_DECISION)},
        "/decide": {"get": _operation(
            "The option to show a visitor, each option's class and score", _DECIDE)},
        "/decisions": {"get": _operation("A pk's decisions and the options of each", [
            _param("pk", "the namespace"), _param("category", "alias of pk"), _TOKEN])},
        "/periods": {"get": _operation("The configured periods", errors=False)},
        "/health": _HEALTH,
        "/api": {"get": _operation("The endpoints, in short", errors=False)},
        "/openapi.json": _DOCUMENT,
        "/prometheus": _PROMETHEUS,
        "/": {"get": _operation("The dashboard", answer={
            "description": "an HTML page", "content": {"text/html": {"schema": {
                "type": "string"}}}}, errors=False)},
        "/embed.js": {"get": _operation(
            "One tag, a live graph: the script that loads jQuery, flot and the plugin and "
            "draws where its tag stands (its data- attributes are the selection)",
            answer=_FILE, errors=False)},
        "/static/{name}": {"get": _operation(
            "The jQuery plugin and the dashboard's files",
            [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            answer=_FILE, errors=False)},
        "/static/vendor/{name}": {"get": _operation(
            "jQuery and flot", [{"name": "name", "in": "path", "required": True,
                                 "schema": {"type": "string"}}], answer=_FILE, errors=False)},
        **_GRAPHITE,
    },
    "hail": {
        "/count": _COUNT,
        "/count.gif": _COUNT_GIF,
        "/health": _HEALTH,
        "/openapi.json": _DOCUMENT,
        "/prometheus": _PROMETHEUS,
        "/": {"get": _operation("The endpoints, in short", errors=False)},
    },
}


def document(app: str) -> dict:
    """The OpenAPI document of ``app`` ("whale" or "hail")."""
    return {
        "openapi": "3.1.0",
        "info": {"title": f"HailWhale: {app.capitalize()}", "version": VERSION,
                 "description": "Real-time counting of rolled-up, multi-dimensional metrics "
                                "(see README.md)."},
        "paths": PATHS[app],
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "param": {"type": "string"}}}},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "token": {"type": "apiKey", "in": "query", "name": "token"}},
        },
        "security": [{}, {"bearer": []}, {"token": []}],
    }
