"""``hailwhale demo``: Whale with a steady stream of sample events, in one process.

The sample traffic is the original README's: revenue from services, advertising and sales of
products, and page views of a small site with unique visitors. An hour of history is
backfilled first, so the graphs have a shape from the first second.
"""

from __future__ import annotations

import random
import threading
import time

from .config import Settings
from .event import parse_event
from .store import Store

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
    return store.count(events, now)


class SampleTraffic(threading.Thread):
    """A daemon thread counting a few sample events every ``pause`` seconds."""

    def __init__(self, store: Store, settings: Settings, rate: float = 5.0, seed: int = 2):
        super().__init__(daemon=True, name="sample-traffic")
        self.store = store
        self.settings = settings
        self.rate = rate
        self.rng = random.Random(seed)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            now = time.time()
            count = max(1, int(self.rng.gauss(self.rate, self.rate / 3)))
            events = [parse_event(sample_event(self.rng), self.settings, now)
                      for _ in range(count)]
            self.store.count(events, now)
