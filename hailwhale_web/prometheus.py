"""The web side of hailwhale.telemetry: the timing of every request, and ``GET /prometheus``.

Both apps answer ``GET /prometheus`` with ``scrape`` (each declares the route, behind its
Guard: an admin token, or a read token for every pk, when a SECRET is set), and every request
is timed by ``timed``, which plumbing.App wraps around Bottle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import bottle

from hailwhale import auth, telemetry


def timed(app: str, call: Callable, environ: dict, start_response: Callable) -> Iterable:
    """``call(environ, start_response)`` (a Bottle app), counted and timed as a request of
    ``app``, labelled with the rule of the route it matched (never its path: a path is the
    client's string) and the status it was answered with."""
    started = time.perf_counter()
    statuses: list[str] = []

    def start(status: str, headers: list, exc_info=None):
        statuses.append(status)
        return start_response(status, headers, exc_info) if exc_info else \
            start_response(status, headers)

    with telemetry.in_progress(app):
        answer = call(environ, start)
    route = environ.get("bottle.route")
    telemetry.request(app, route.rule if route is not None else "",
                      environ.get("REQUEST_METHOD", ""), statuses[-1][:3] if statuses else "",
                      time.perf_counter() - started)
    return answer


def scrape(grant: auth.Grant, collectors: Iterable = ()) -> bytes:
    """The answer to ``GET /prometheus``: every metric of this node and those ``collectors``
    read now, in Prometheus' text format, for a ``grant`` that may see the service whole."""
    auth.require_overview(grant)
    body, content_type = telemetry.exposition(collectors)
    bottle.response.content_type = content_type
    bottle.response.set_header("Cache-Control", "no-store")
    return body
