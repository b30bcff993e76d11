"""A batch Whale cannot count never stalls the queue: hailwail isolates the events Whale
refuses (or fails on) and dead-letters exactly those, counting the rest once. Real Redis, a
real Whale over real HTTP, the real WhaleClient."""

from __future__ import annotations

import io
import json
import time

import pytest

from hailwhale import query
from hailwhale.buffer import Buffer
from hailwhale.drain import WhaleClient, drain_parallel
from hailwhale.store import Store
from hailwhale_web.server import serve_in_thread
from whale import create_app


def failing_on(word: str, app):
    """Whale, but answering 500 to any batch that mentions ``word``: a stand-in for an
    event that makes Whale fail (such as the lone surrogate that once did)."""

    def middleware(environ, start_response):
        if environ["PATH_INFO"] == "/batch":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            if word.encode() in body:
                start_response("500 Internal Server Error",
                               [("Content-Type", "application/json")])
                return [b'{"error": "internal error; see the server log"}']
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    return middleware


@pytest.mark.parametrize("parallel", [1, 2])
def test_poison_events_are_dead_lettered_and_the_rest_counted_once(real_client, settings,
                                                                   parallel):
    store = Store(real_client, settings)
    server = serve_in_thread(failing_on("poison", create_app(store, settings)))
    whale_url = f"http://127.0.0.1:{server.server_port}"
    buffer = Buffer(real_client)
    events = [{"dimensions": ["page", "poison" if i in (7, 450, 999) else f"p{i % 5}"]}
              for i in range(1000)]
    buffer.push(events)
    whales = [WhaleClient(whale_url) for _ in range(parallel)]
    try:
        report = drain_parallel(buffer, [w.send_items for w in whales], batch_size=100)
    finally:
        server.shutdown()
    assert (report.events, report.dead) == (997, 3)
    dead = buffer.dead_letters()
    dead_events = [d["event"] if isinstance(d["event"], dict) else json.loads(d["event"])
                   for d in dead]
    assert [e["dimensions"][1] for e in dead_events] == ["poison"] * 3
    assert all("500" in d["reason"] for d in dead)
    stats = buffer.stats()
    assert (stats.waiting, stats.in_flight) == (0, 0)
    answer = query.totals(store, query.parse_query({"dimensions": "page"}, settings,
                                                   time.time()))
    assert answer["totals"][0]["totals"]["hits"] == 997
