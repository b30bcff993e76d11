"""hailwail's work: move a Hail buffer into Whale, batch by batch, each exactly once.

A batch is taken atomically into a processing list, sent to Whale's ``POST /batch`` under
its id, and removed only after Whale confirmed it. Whale applies an id at most once, so a
batch sent twice (its sender crashed after Whale counted it, a timeout, two hailwails) is
counted once; a batch whose sender died is sent again after its lease runs out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from .buffer import Buffer
from .errors import HailWhaleError

DEFAULT_BATCH = 1000
DEFAULT_LEASE = 60.0


class DeliveryFailed(HailWhaleError):
    """Whale could not be reached or did not confirm a batch; it stays in flight."""


@dataclass
class Report:
    """What one drain did."""

    events: int = 0
    batches: int = 0
    dead: int = 0
    recovered: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self, stats) -> str:
        age = "none waiting" if stats.oldest_age is None else \
            f"oldest waiting {stats.oldest_age:.1f}s"
        seconds = time.monotonic() - self.started
        rate = self.events / seconds if seconds > 0 else 0.0
        return (f"moved {self.events} events in {self.batches} batches "
                f"({self.recovered} recovered, {self.duplicates} already counted), "
                f"dead-lettered {self.dead}; {stats.waiting} waiting, {age}; "
                f"{rate:,.0f} events/s")


class WhaleClient:
    """Sends batches to Whale's ``POST /batch``."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/") + "/batch"
        self.timeout = timeout
        self.session = requests.Session()

    def send(self, batch_id: str, events: list) -> dict:
        body = json.dumps({"id": batch_id, "events": events}, separators=(",", ":"))
        try:
            try:
                answer = self._post(body)
            except requests.ConnectionError:
                # A kept-alive connection the server closed meanwhile (uWSGI's http-socket
                # does): once more on a new one. Safe, as Whale applies a batch id once.
                self.session.close()
                answer = self._post(body)
        except requests.RequestException as exc:
            raise DeliveryFailed(f"Whale at {self.url} cannot be reached: {exc}") from None
        if answer.status_code != 200:
            raise DeliveryFailed(f"Whale answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()

    def _post(self, body: str) -> requests.Response:
        return self.session.post(self.url, data=body, timeout=self.timeout,
                                 headers={"Content-Type": "application/json"})


def _decode(items: list[str]) -> tuple[list[dict], list[int], list[tuple[str, str]]]:
    """The events worth sending, their positions in the batch, and the undecodable ones."""
    events, positions, dead = [], [], []
    for position, item in enumerate(items):
        try:
            event = json.loads(item)
        except ValueError as exc:
            dead.append((item, f"not JSON: {exc}"))
            continue
        events.append(event)
        positions.append(position)
    return events, positions, dead


def deliver(buffer: Buffer, send: Callable[[str, list], dict], batch_id: str,
            items: list[str], report: Report) -> None:
    """Send one batch and acknowledge it; on failure give its lease up and re-raise."""
    events, positions, dead = _decode(items)
    try:
        answer = send(batch_id, events) if events else {"rejected": []}
    except DeliveryFailed:
        buffer.release(batch_id)
        raise
    dead += [(items[positions[r["index"]]], r["error"]) for r in answer.get("rejected", [])]
    buffer.ack(batch_id, dead)
    report.batches += 1
    report.events += len(items) - len(dead)
    report.dead += len(dead)
    report.duplicates += bool(answer.get("duplicate"))


def drain(buffer: Buffer, send: Callable[[str, list], dict], batch_size: int = DEFAULT_BATCH,
          lease: float = DEFAULT_LEASE, report: Report | None = None) -> Report:
    """Send batches until the buffer is empty: first any whose sender died (lease run
    out), then new ones. Raises DeliveryFailed when Whale does not confirm a batch."""
    report = report or Report()
    for batch_id in buffer.stale(lease):
        items = buffer.claim(batch_id, lease)
        if items:
            deliver(buffer, send, batch_id, items, report)
            report.recovered += 1
    while taken := buffer.take(batch_size):
        deliver(buffer, send, *taken, report)
    return report
