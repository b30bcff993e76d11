"""hailwail's work: move a Hail buffer into Whale, batch by batch, each exactly once.

A batch is taken atomically into a processing list, sent to Whale's ``POST /batch`` under
its id, and removed only after Whale confirmed it. Whale applies an id at most once, so a
batch sent twice (its sender crashed after Whale counted it, a timeout, two hailwails) is
counted once; a batch whose sender died is sent again after its lease runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests

from . import wire
from .buffer import Buffer
from .errors import HailWhaleError

# Larger batches fold more (a page's hits in a bucket become one increment however many
# events carry them) and pay the HTTP, polars and script overheads less often: measured in
# one process on the reference workload, Whale's Python and Redis together spend 38 us an
# event at 10,000, 28 at 25,000, 22 at 50,000. Whale applies a batch in parts, so Redis is
# never held for long, but taking a batch out of the buffer is one script in Hail's Redis
# (7 ms at 10,000 events, 22 at 25,000, 45 at 50,000), during which Hail's writes wait.
# 25,000 events are a body of about 2.5 MB.
DEFAULT_BATCH = 25_000
DEFAULT_LEASE = 60.0
# Batches in flight at once: while Whale counts one (Python), Redis applies another.
DEFAULT_PARALLEL = 2
# Seconds a partial batch may wait for more events (hailwail --loop). Without it, steady
# traffic is sent as it trickles in: at 2,800 events/s batches averaged 20 events, and a batch
# folds, and costs Whale, by how many events it holds. The price is at most this much more
# delay before an event is counted.
DEFAULT_LINGER = 0.25


class DeliveryFailed(HailWhaleError):
    """Whale could not be reached or did not confirm a batch; it stays in flight."""


class Refused(DeliveryFailed):
    """Whale refused a batch whole in a way sending it again cannot change (400, 413, 500):
    ``isolating`` splits it to find the events that cannot be counted."""

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(f"Whale answered {status}: {reason}")


# Answers to a batch that the same batch would get again: split it. Any other failure (503
# while Redis is down, 401/403 for a missing token, a lost connection) is retried whole.
POISON = (400, 413, 422, 500)


@dataclass
class Report:
    """What one drain did."""

    events: int = 0
    batches: int = 0
    dead: int = 0
    recovered: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, other: Report) -> None:
        """Add another drain's counts to this one's (the start time stays)."""
        for name in ("events", "batches", "dead", "recovered", "duplicates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def line(self, stats) -> str:
        age = "none waiting" if stats.oldest_age is None else \
            f"oldest waiting {stats.oldest_age:.1f}s"
        seconds = time.monotonic() - self.started
        rate = self.events / seconds if seconds > 0 else 0.0
        return (f"moved {self.events} events in {self.batches} batches "
                f"({self.recovered} recovered, {self.duplicates} already counted), "
                f"dead-lettered {self.dead}; {stats.waiting} waiting, {age}; "
                f"{rate:,.0f} events/s")


Sender = Callable[[str, list[str]], dict]


class WhaleClient:
    """Sends batches to Whale's ``POST /batch``."""

    def __init__(self, url: str, timeout: float = 30.0,
                 token: Callable[[], str | None] | None = None):
        self.url = url.rstrip("/") + "/batch"
        self.timeout = timeout
        self.session = requests.Session()
        # The admin token POST /batch needs when Whale has a SECRET (auth.ServiceToken).
        self.token = token or (lambda: None)

    def send_items(self, batch_id: str, items: list[str]) -> dict:
        """Send buffered items (wire lines, or JSON texts of the first wire form) as they
        are, one per line; Whale's answer, ``rejected`` indexing ``items``.

        ``count`` lets Whale check that each item stayed one line; if one did not (a newline
        inside it), Whale refuses the whole batch and it is split to find that item
        (``isolating``), which is then rejected."""
        return isolating(self._send_lines)(batch_id, items)

    def _send_lines(self, batch_id: str, items: list[str]) -> dict:
        query = urlencode({"id": batch_id, "count": len(items)})
        return _confirmed(self._post("\n".join(items), query, wire.CONTENT_TYPE))

    def _post(self, body: str, query: str, content_type: str) -> requests.Response:
        try:
            try:
                return self._request(body, query, content_type)
            except requests.ConnectionError:
                # A kept-alive connection the server closed meanwhile (uWSGI's http-socket
                # does): once more on a new one. Safe, as Whale applies a batch id once.
                self.session.close()
                return self._request(body, query, content_type)
        except requests.RequestException as exc:
            raise DeliveryFailed(f"Whale at {self.url} cannot be reached: {exc}") from None

    def _request(self, body: str, query: str, content_type: str) -> requests.Response:
        headers = {"Content-Type": content_type}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.url}?{query}" if query else self.url
        return self.session.post(url, data=body.encode(), timeout=self.timeout,
                                 headers=headers)


def _confirmed(answer: requests.Response) -> dict:
    """Whale's answer to a batch; DeliveryFailed unless it confirmed it (Refused when it
    would refuse the same batch again)."""
    if answer.status_code in POISON:
        raise Refused(answer.status_code, answer.text[:300])
    if answer.status_code != 200:
        raise DeliveryFailed(f"Whale answered {answer.status_code}: {answer.text[:200]}")
    return answer.json()


def isolating(send: Sender) -> Sender:
    """A sender that never lets one bad event hold a batch up: a batch Whale refuses whole
    (Refused) is split in halves, each sent under an id of its own (``<id>/0``, ``<id>/1``,
    so a retry of a half is still counted once), down to single events, which are then
    answered as rejected with Whale's reason and go to the dead letters. The rest is
    counted once and the queue moves on."""

    def send_items(batch_id: str, items: list[str]) -> dict:
        try:
            return send(batch_id, items)
        except Refused as exc:
            if len(items) == 1:
                return {"batch": batch_id, "counted": 0, "duplicate": False,
                        "rejected": [{"index": 0, "error": str(exc)}]}
        half = len(items) // 2
        first = send_items(f"{batch_id}/0", items[:half])
        second = send_items(f"{batch_id}/1", items[half:])
        return {"batch": batch_id,
                "counted": first.get("counted", 0) + second.get("counted", 0),
                "rejected": first.get("rejected", []) +
                [{**r, "index": r["index"] + half} for r in second.get("rejected", [])],
                "duplicate": bool(first.get("duplicate") and second.get("duplicate"))}

    return send_items


def deliver(buffer: Buffer, send: Sender, batch_id: str, items: list[str],
            report: Report) -> None:
    """Send one batch and acknowledge it; on failure give its lease up and re-raise."""
    try:
        answer = send(batch_id, items)
    except DeliveryFailed:
        buffer.release(batch_id)
        raise
    dead = [(items[r["index"]], r["error"]) for r in answer.get("rejected", [])]
    buffer.ack(batch_id, dead)
    report.batches += 1
    report.events += len(items) - len(dead)
    report.dead += len(dead)
    report.duplicates += bool(answer.get("duplicate"))


def linger(buffer: Buffer, batch_size: int, seconds: float,
           sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait, up to ``seconds``, until a whole batch is buffered or the oldest buffered event
    has waited ``seconds`` since Hail received it; returns how long it waited. An empty
    buffer, or a full batch, is not waited for. The age comes from the event's stamp, so
    clocks apart between Hail and hailwail shorten or lengthen the wait, never past
    ``seconds``."""
    if seconds <= 0:
        return 0.0
    stats = buffer.stats()
    if not stats.waiting or stats.waiting >= batch_size:
        return 0.0
    wait = max(0.0, seconds - (stats.oldest_age or 0.0))  # the age is never negative
    if wait:
        sleep(wait)
    return wait


def drain(buffer: Buffer, send: Sender, batch_size: int = DEFAULT_BATCH,
          lease: float = DEFAULT_LEASE, report: Report | None = None,
          linger_for: float = 0.0) -> Report:
    """Send batches until the buffer is empty: first any whose sender died (lease run
    out), then new ones, each partial one after lingering up to ``linger_for`` seconds for
    more events. ``send`` takes a batch id and the buffered items (JSON texts), as
    WhaleClient.send_items does. Raises DeliveryFailed when Whale does not confirm a batch."""
    report = report or Report()
    for batch_id in buffer.stale(lease):
        items = buffer.claim(batch_id, lease)
        if items:
            deliver(buffer, send, batch_id, items, report)
            report.recovered += 1
    while True:
        linger(buffer, batch_size, linger_for)
        taken = buffer.take(batch_size)
        if not taken:
            return report
        deliver(buffer, send, *taken, report)


def drain_parallel(buffer: Buffer, senders: Sequence[Sender], batch_size: int = DEFAULT_BATCH,
                   lease: float = DEFAULT_LEASE, report: Report | None = None,
                   linger_for: float = 0.0) -> Report:
    """``drain`` with one thread per sender, each taking its own batches: Whale counts them
    in parallel workers (each batch is still applied once, in one step). Raises the first
    DeliveryFailed once every thread has stopped."""
    report = report or Report()
    parts = [Report() for _ in senders]
    with ThreadPoolExecutor(len(senders), thread_name_prefix="hailwail") as pool:
        futures = [pool.submit(drain, buffer, send, batch_size, lease, part, linger_for)
                   for send, part in zip(senders, parts, strict=True)]
    for part in parts:
        report.add(part)
    for future in futures:
        future.result()  # re-raises a thread's failure
    return report
