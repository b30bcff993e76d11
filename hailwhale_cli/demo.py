"""``hailwhale demo``: every part in one process, with a steady stream of sample events.

The sample traffic is the original README's: revenue from services, advertising and sales of
products, and page views of a small site with unique visitors. An hour of history is
backfilled first, so the graphs have a shape from the first second.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import requests

from hailwhale import telemetry, wire
from hailwhale.auth import ANY_PK, ServiceToken, issue
from hailwhale.batches import count_events
from hailwhale.buffer import Buffer
from hailwhale.config import Settings
from hailwhale.drain import WhaleClient, drain
from hailwhale.errors import HailWhaleError
from hailwhale.event import parse_event
from hailwhale.store import Store, connect

log = logging.getLogger("hailwhale.demo")

PRODUCTS = ["p100", "p123", "p200", "p314", "p999"]
PAGES = ["site.com/main", "site.com/about", "site.com/pricing", "site.com/blog"]
PAGE_WEIGHTS = [50, 10, 25, 15]


def sample_event(rng: random.Random) -> dict:
    """One raw event, as an application would send it."""
    roll = rng.random()
    if roll < 0.15:
        return {"dimensions": "services", "metrics": {"dollars": rng.choice([100, 200, 350])}}
    if roll < 0.20:
        return {"dimensions": "advertising", "metrics": {"dollars": -rng.choice([50, 120])}}
    if roll < 0.45:
        product = rng.choices(PRODUCTS, weights=[30, 25, 20, 15, 10])[0]
        return {"dimensions": {"sales": product},
                "metrics": {"dollars": round(rng.uniform(5, 60), 2)}}
    page = rng.choices(PAGES, weights=PAGE_WEIGHTS)[0]
    visitor = f"visitor{rng.randrange(400)}"
    return {"dimensions": ["pageviews", "site.com", page, visitor],
            "metrics": {"time_on_page": rng.randrange(3, 120), "visitors": "is_unique"}}


def backfill(store: Store, settings: Settings, seconds: int = 3600, per_minute: int = 60,
             seed: int = 1) -> int:
    """Count ``seconds`` of past sample traffic; returns the number of events."""
    rng = random.Random(seed)
    now = time.time()
    events = []
    for _ in range(seconds * per_minute // 60):
        raw = sample_event(rng)
        raw["at"] = now - rng.uniform(0, seconds)
        events.append(parse_event(raw, settings, now))
    return count_events(store, events, now)


class SampleTraffic(threading.Thread):
    """A daemon thread sending a few sample events a second to a Hail node, over HTTP, as an
    application would."""

    def __init__(self, hail_url: str, rate: float = 5.0, seed: int = 2,
                 token: str | None = None):
        super().__init__(daemon=True, name="sample-traffic")
        self.url = hail_url.rstrip("/") + "/count"
        self.rate = rate
        self.rng = random.Random(seed)
        self.session = requests.Session()
        if token:  # a write token, when the demo runs with a SECRET
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            count = max(1, int(self.rng.gauss(self.rate, self.rate / 3)))
            events = [sample_event(self.rng) for _ in range(count)]
            try:
                self.session.post(self.url, json=events, timeout=5)
            except requests.RequestException as exc:
                log.warning("sample traffic: %s", exc)


class Wailer(threading.Thread):
    """hailwail --loop, in a thread: drains the demo's Hail buffer into its Whale."""

    def __init__(self, buffer: Buffer, whale_url: str, pause: float = 1.0,
                 token: ServiceToken | None = None):
        super().__init__(daemon=True, name="hailwail")
        self.buffer = buffer
        self.whale = WhaleClient(whale_url, token=token)
        self.pause = pause
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.pause):
            try:
                drain(self.buffer, self.whale.send_items, lease=5)
            except HailWhaleError as exc:
                log.warning("hailwail: %s", exc)


def _statsd(settings: Settings, buffer: Buffer) -> None:
    """StatsD into the demo's Hail node too, when its port is free (else said, and off)."""
    if not settings.statsd_port:
        return
    from hail.statsd import Listener

    try:
        listener = Listener(settings, buffer).start()
    except OSError as exc:
        print(f"statsd: off, {settings.statsd_host}:{settings.statsd_port} is not free "
              f"({exc.strerror or exc}; HAILWHALE_STATSD_PORT chooses another)", flush=True)
        return
    print(f"statsd: listening on udp and tcp {settings.statsd_host}:{listener.port}; try "
          f"echo 'demo.signups:1|c' | nc -u -w0 {settings.statsd_host} {listener.port}",
          flush=True)


def run(settings: Settings, host: str, port: int, redis_url: str | None, data_dir) -> None:
    """Every part in one process: Whale (with the dashboard) on ``port``, a Hail node on
    ``port + 1``, hailwail draining it, and sample traffic flowing into Hail."""
    from hail.app import create_app as hail_app
    from hailwhale.embedded import embedded_store_url
    from hailwhale_web.server import make
    from whale import assets
    from whale import create_app as whale_app

    if redis_url:
        store_url, buffer_url = redis_url, settings.hail_redis_url
        print(f"store: {redis_url} (configured); buffer: {buffer_url}", flush=True)
    else:
        store_url, line = embedded_store_url(data_dir)
        buffer_url = store_url[:-1] + "1" if store_url.endswith("/0") else store_url
        print(line, flush=True)
    store = Store.from_settings(settings, store_url)
    buffer = Buffer(connect(buffer_url))
    whale = make(whale_app(store, settings), host, port)
    hail = make(hail_app(buffer.push, settings, lambda: buffer.stats().as_dict(),
                         encode=lambda raw, event, received: wire.encode(event, received),
                         facts=[telemetry.BufferFacts(buffer)]),
                host, port + 1 if port else 0)
    whale_url = f"http://{host}:{whale.server_port}"
    hail_url = f"http://{host}:{hail.server_port}"
    # History once: a demo restarted on the same data folder carries on from what it has.
    history = "kept the history already stored" if store.pks() else \
        f"backfilled {backfill(store, settings)} events of the last hour"
    print(f"sample traffic: {history}; a few more every second go to Hail at "
          f"{hail_url}/count, and hailwail moves them to Whale", flush=True)
    threading.Thread(target=hail.serve_forever, daemon=True, name="hail").start()
    _statsd(settings, buffer)
    Wailer(buffer, whale_url, token=ServiceToken(settings.secret, settings.token)).start()
    dashboard = f"{whale_url}/"
    if settings.secret:
        # With a SECRET the demo is guarded like a deployment: its own traffic carries a
        # write token, and the dashboard link a read token for every pk.
        SampleTraffic(hail_url, token=issue(settings.secret, "write", [ANY_PK])).start()
        dashboard += "#token=" + issue(settings.secret, "read", [ANY_PK], expires_in=86400)
    else:
        SampleTraffic(hail_url).start()
        print("demo: open, no SECRET set (fine on 127.0.0.1; see README, Security)",
              flush=True)
    missing = assets.missing_vendor()
    if missing:
        print(f"dashboard: {', '.join(missing)} missing: {assets.INSTALL_HINT}", flush=True)
    print(f"dashboard: {dashboard}", flush=True)
    print(f"whale (demo) listening on {whale_url}/", flush=True)
    try:
        whale.serve_forever()
    except KeyboardInterrupt:
        pass
