"""The Hail Bottle app: takes events and buffers them, answering 200 once they are safe.

Events are checked exactly as Whale checks them, so bad input is refused at the edge with the
same 400. A good event is stamped with its time (the moment Hail received it, unless it set
``at``) and handed to the sink: the node's Redis buffer, or Celery. When the sink is down the
answer is 503 with ``Retry-After``; nothing is acknowledged that is not stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import bottle

from hailwhale import auth, telemetry, wire
from hailwhale.config import Settings
from hailwhale.event import Event, parse_events
from hailwhale_web import openapi, prometheus
from hailwhale_web.plumbing import (
    OPEN_WARNING,
    App,
    Guard,
    gif_answer,
    handled,
    install_common,
    json_answer,
    posted_events,
    query_params,
    require_write,
)

log = logging.getLogger("hailwhale.hail")
Sink = Callable[[list], None]
# What a sink is given for one checked event: (its raw parameters, the Event, when received).
Encoder = Callable[[dict, Event, float], object]


def stamp(raw: dict, event: Event, received: float) -> dict:
    """What is buffered for one event: its parameters under their canonical names, with
    ``at`` fixed to its time (so a late drain does not move it to a later bucket) and
    ``_received`` for the buffer's age (Whale ignores names starting with ``_``)."""
    item = {
        "dimensions": raw.get("dimensions", raw.get("dimension")),
        "metrics": raw.get("metrics", raw.get("metric")),
        "pk": event.pk,
        "uid": raw.get("uid"),
        "at": event.at,
        "_received": received,
    }
    return {name: value for name, value in item.items() if value not in (None, "")}


def create_app(sink: Sink, settings: Settings, health: Callable[[], dict],
               clock: Callable[[], float] = time.time, encode: Encoder = stamp,
               facts: Sequence = ()) -> bottle.Bottle:
    """The Hail WSGI app: events go to ``sink``, each as ``encode`` makes it (which raises
    StoreUnavailable when it cannot take them); ``health`` reports the sink's state for
    ``/health``; ``facts`` are collectors ``GET /prometheus`` reads (hailwhale.telemetry)."""
    app = App("hail")
    install_common(app)
    guard = Guard(settings)
    if guard.open:
        log.warning("hail: %s", OPEN_WARNING)
    telemetry.serving("hail")

    def accept(grant: auth.Grant, raws: list) -> int:
        now = clock()
        events = parse_events(raws, settings, now)
        require_write(grant, events)
        sink([encode(raw, event, now) for raw, event in zip(raws, events, strict=True)])
        telemetry.accepted("hail", len(events))
        return len(events)

    def accept_query() -> int:
        params = query_params()
        return accept(guard.grant(params), [params])

    @app.get("/count")
    @handled
    def count_get():
        return json_answer({"ok": True, "accepted": accept_query()})

    @app.get("/count.gif")
    @handled
    def count_gif():
        accept_query()
        return gif_answer()

    @app.post("/count")
    @handled
    def count_post():
        raws = posted_events()  # first: a posted form may carry the token
        return json_answer({"ok": True, "accepted": accept(guard.grant(query_params()), raws)})

    @app.get("/health")
    @handled
    def health_route():
        return json_answer({"ok": True, **health(), **guard.health()})

    @app.get("/openapi.json")
    @handled
    def openapi_document():
        return json_answer(openapi.document("hail"))

    @app.get("/prometheus")
    @handled
    def prometheus_metrics():
        return prometheus.scrape(guard.grant(query_params()), facts)

    @app.get("/")
    @handled
    def index():
        return json_answer({"service": "hail", "endpoints": ["/count", "/count.gif", "/health",
                                                             "/openapi.json", "/prometheus"]})

    return app


def from_settings(settings: Settings) -> bottle.Bottle:
    """The Hail app as configured: buffering into ``HAIL_REDIS_URL``, or handing events to
    Celery when ``HAIL_BACKEND`` is ``celery``."""
    if settings.hail_backend == "celery":
        from hailwhale import tasks

        return create_app(tasks.enqueue, settings, tasks.health)
    from hailwhale.buffer import Buffer

    buffer = Buffer.from_url(settings.hail_redis_url)

    def health() -> dict:
        state = buffer.stats().as_dict()
        if settings.statsd_port:  # the listener's tallies (its own process under uWSGI)
            state["statsd"] = {"port": settings.statsd_port, **buffer.statsd_counts()}
        return state

    return create_app(buffer.push, settings, health,
                      encode=lambda raw, event, received: wire.encode(event, received),
                      facts=[telemetry.BufferFacts(buffer)])
