"""The Whale Bottle app: counts events and answers queries over HTTP.

Every answer is JSON. Bad input is a 400 ``{"error": ..., "param": ...}``; a Redis that cannot
be reached is a 503 with ``Retry-After``; answers carry CORS headers so a dashboard on another
origin can draw from them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import bottle

from hailwhale import auth, columns, decisions, keys, telemetry, wire  # noqa: F401 (columns)
from hailwhale import query as queries
from hailwhale import rank as ranks
from hailwhale.admission import Budget, Slots
from hailwhale.batches import check_batch_id, count_batch, count_events, count_lines
from hailwhale.buffer import Buffer
from hailwhale.config import Settings
from hailwhale.errors import BadRequest
from hailwhale.event import parse_events
from hailwhale.store import Store
from hailwhale_web import openapi, prometheus
from hailwhale_web.plumbing import (
    OPEN_WARNING,
    App,
    Guard,
    asset,
    body,
    gif_answer,
    handled,
    install_common,
    json_answer,
    node_key,
    posted_events,
    posted_json,
    query_params,
    require_write,
)

from . import assets
from . import graphite as graphite_api

log = logging.getLogger("hailwhale.whale")


def create_app(store: Store, settings: Settings | None = None,
               clock: Callable[[], float] = time.time) -> bottle.Bottle:
    """The Whale WSGI app, counting into and reading from ``store``."""
    settings = settings or store.settings
    app = App("whale")
    install_common(app)
    guard = Guard(settings)
    if guard.open:
        log.warning("whale: %s", OPEN_WARNING)
    telemetry.serving("whale")
    # What GET /prometheus reads in Redis: the dead letters of the Celery path live here.
    facts = [telemetry.StoreFacts(Buffer(store.redis))]
    slots = Slots(settings.query_slots, node_key())  # shared by every worker of this node

    def count(grant: auth.Grant, raw_events: list) -> int:
        now = clock()
        events = parse_events(raw_events, settings, now)
        require_write(grant, events)
        counted = count_events(store, events, now)
        telemetry.accepted("whale", counted)
        return counted

    def count_query() -> int:
        params = query_params()
        return count(guard.grant(params), [params])

    @app.get("/count")
    @handled
    def count_get():
        return json_answer({"ok": True, "counted": count_query()})

    @app.get("/count.gif")
    @handled
    def count_gif():
        count_query()
        return gif_answer()

    @app.post("/count")
    @handled
    def count_post():
        raws = posted_events()  # first: a posted form may carry the token
        return json_answer({"ok": True, "counted": count(guard.grant(query_params()), raws)})

    @app.post("/batch")
    @handled
    def batch():
        """hailwail's delivery, counted at most once: ``POST /batch?id=...&count=N`` with the
        buffered wire lines (hailwhale.wire) as the body, one per line; or, as earlier
        hailwails sent it, ``{"id": ..., "events": [...]}`` (with ``count``, the number of
        events it meant to send). Admin tokens only: the events were checked, and their
        tokens, by the Hail node that took them."""
        params = query_params()
        auth.require(guard.grant(params), "admin")
        if bottle.request.content_type.split(";")[0].strip().lower() == wire.CONTENT_TYPE:
            batch_id = check_batch_id(params.get("id"))
            try:
                text = body().decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest("body", "", "wire lines are UTF-8 text") from None
            items = text.split("\n") if text else []
            if params.get("count") != str(len(items)):
                # A line broken in the buffer (or on the way) merges or splits events:
                # refused whole, hailwail splits the batch to find it.
                raise BadRequest("count", params.get("count"),
                                 f"the batch holds {len(items)} lines")
            return json_answer({"ok": True, **count_lines(store, batch_id, items, clock())})
        document = posted_json()
        if not isinstance(document, dict) or not isinstance(document.get("events"), list):
            raise BadRequest("body", document, 'a batch is {"id": ..., "events": [...]}')
        batch_id = check_batch_id(document.get("id"))
        count = document.get("count")
        if count is not None and count != len(document["events"]):
            raise BadRequest("count", count, f"the batch holds {len(document['events'])} "
                             "events")
        return json_answer({"ok": True, **count_batch(store, batch_id, document["events"],
                                                      clock())})

    def read(answer: Callable, parse: Callable = queries.parse_query) -> Callable:
        @handled
        def route():
            params = query_params()
            grant = guard.grant(params)
            query = parse(params, settings, clock())
            auth.require(grant, "read", query.pk, [query.path])
            bottle.response.set_header("Cache-Control", "no-cache")
            with Budget(slots) as budget:
                return json_answer(answer(store, query, budget))

        return route

    app.get("/plotpoints", callback=read(queries.plotpoints))
    app.get("/totals", callback=read(queries.totals))
    app.get("/rank", callback=read(ranks.answer, ranks.parse_rank))  # hailwhale.rank
    graphite_api.install(app, store, settings, guard, slots, clock)  # Grafana's Graphite

    @app.get("/dimensions")
    @handled
    def dimensions():
        params = query_params()
        grant = guard.grant(params)
        queries.refuse_unknown(params, {"pk", "category", "dimensions", "dimension"})
        path = queries.parse_path(params.get("dimensions", params.get("dimension")), settings)
        pk = params.get("pk", params.get("category")) or ""
        auth.require(grant, "read", pk, [path])
        return json_answer(queries.dimensions(store, pk, path))

    @app.get("/metrics")
    @handled
    def metrics():
        params = query_params()
        grant = guard.grant(params)
        queries.refuse_unknown(params, {"pk"})
        pk = params.get("pk") or ""
        auth.require(grant, "read", pk)
        return json_answer({"pk": pk, "metrics": store.metric_kinds(pk)})

    @app.get("/count_decision")
    @handled
    def count_decision():
        """The outcome of having shown ``option`` of ``decision`` to a visitor (hailwhale.
        decisions): a write token covering the pk (and, with a prefix, the decision)."""
        params = query_params()
        grant = guard.grant(params)
        event = decisions.outcome(params, settings, clock())
        auth.require(grant, "write", event.pk[len(decisions.DECISIONS):], event.branches)
        return json_answer({"ok": True, "counted": decisions.record(store, [event], clock())})

    @app.get("/decide")
    @handled
    def decide():
        """Which option of ``decision`` to show a visitor: a read token of the pk."""
        params = query_params()
        grant = guard.grant(params)
        pk = str(params.get("pk", params.get("category")) or "")
        decision = params.get("decision")
        auth.require(grant, "read", pk, [(decision,)] if isinstance(decision, str) else [()])
        bottle.response.set_header("Cache-Control", "no-store")
        return json_answer(decisions.decide(store, params, clock()))

    @app.get("/decisions")
    @handled
    def decisions_of_pk():
        """The decisions of a pk and their options, for dashboards: a read token."""
        params = query_params()
        grant = guard.grant(params)
        pk = str(params.get("pk", params.get("category")) or "")
        auth.require(grant, "read", pk)
        return json_answer(decisions.listed(store, pk))

    @app.get("/pks")
    @handled
    def pks():
        grant = guard.grant(query_params())
        auth.require(grant, "read")
        # A token sees the pks it covers, and those even before anything was counted in
        # them, so a dashboard opened with a one-pk token shows that pk.
        known = set(store.pks()) | (grant.pks - {auth.ANY_PK})
        return json_answer({"pks": grant.visible_pks(sorted(known))})

    @app.get("/periods")
    @handled
    def periods():
        return json_answer({"periods": [p.as_dict() for p in settings.periods],
                            "timezone": settings.timezone})

    @app.get("/health")
    @handled
    def health():
        layout = store.layout()  # also what proves Redis answers
        stale = {} if layout == keys.LAYOUT else {"migrate": (
            f"the store holds counters of storage layout {layout}, not shown until "
            f"`hailwhale migrate` carries them into layout {keys.LAYOUT}")}
        return json_answer({"ok": True, "store": "up", "layout": layout, **stale,
                            **guard.health()})

    @app.get("/openapi.json")
    @handled
    def openapi_document():
        return json_answer(openapi.document("whale"))

    @app.get("/prometheus")
    @handled
    def prometheus_metrics():
        return prometheus.scrape(guard.grant(query_params()), facts)

    @app.get("/api")
    @handled
    def index():
        return json_answer({
            "service": "whale",
            "endpoints": ["/count", "/count.gif", "/batch", "/plotpoints", "/totals", "/rank",
                          "/dimensions", "/metrics", "/pks", "/count_decision", "/decide",
                          "/decisions",
                          "/periods", "/health", "/",
                          "/static/jquery.hailwhale.js", "/embed.js", "/openapi.json",
                          "/prometheus",
                          "/render", "/metrics/find", "/metrics/expand", "/functions",
                          "/version"],
        })

    @app.get("/")
    def dashboard():
        return asset(bottle.static_file("dashboard.html", root=str(assets.static_dir())))

    @app.get("/embed.js")
    def embed():
        # One tag, a live graph: it loads the two libraries and the plugin below by itself.
        return asset(bottle.static_file("embed.js", root=str(assets.static_dir())))

    @app.get("/static/vendor/<name>")
    def vendor(name: str):
        path = assets.vendor_file(name)
        if path is None:
            return json_answer({"error": f"{name} is not installed: {assets.INSTALL_HINT}"},
                               404)
        return asset(bottle.static_file(path.name, root=str(path.parent)))

    @app.get("/static/<name>")
    def static(name: str):
        return asset(bottle.static_file(name, root=str(assets.static_dir())))

    return app
