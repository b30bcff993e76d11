"""hailwail --loop lets a partial batch linger until it fills or its oldest event has waited
the linger, so steady traffic is sent in batches that fold (issue 10: "steady traffic folds
too"), with each event still delivered exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from hailwhale.buffer import Buffer
from hailwhale.drain import drain, linger


@pytest.fixture
def buffer(real_client):
    real_client.flushdb()
    return Buffer(real_client)


def _events(n: int, received: float, start: int = 0) -> list[dict]:
    return [{"dimensions": "steady", "n": start + i, "_received": received} for i in range(n)]


def test_linger_waits_for_a_young_partial_batch_only(buffer):
    waited = []
    assert linger(buffer, 100, 0.25, waited.append) == 0  # empty: nothing to wait for
    buffer.push(_events(100, time.time()))
    assert linger(buffer, 100, 0.25, waited.append) == 0  # a whole batch: send it now
    assert linger(buffer, 200, 0.25, waited.append) == pytest.approx(0.25, abs=0.05)
    buffer.take(1000)
    buffer.push(_events(5, time.time() - 0.2))  # its oldest has waited 0.2 s already
    assert linger(buffer, 200, 0.25, waited.append) == pytest.approx(0.05, abs=0.05)
    buffer.take(1000)
    buffer.push(_events(5, time.time() - 30))  # older than the linger (or a clock ahead)
    assert linger(buffer, 200, 0.25, waited.append) == 0
    buffer.take(1000)
    buffer.push(_events(5, time.time() + 30))  # a Hail clock behind: never past the linger
    assert linger(buffer, 200, 0.25, waited.append) == 0.25
    assert linger(buffer, 200, 0, waited.append) == 0  # --linger 0: never
    assert len(waited) == 3


def _steady(buffer: Buffer, linger_for: float) -> list[int]:
    """Events pushed at about 2,000 a second for 1.5 s while one drain follows them: the
    sizes of the batches it sent, after checking each event arrived exactly once."""
    sizes, seen, stop = [], [], threading.Event()

    def send(batch_id: str, items: list[str]) -> dict:
        sizes.append(len(items))
        seen.extend(items)
        return {"batch": batch_id, "counted": len(items), "rejected": []}

    def follow() -> None:
        while not stop.is_set():
            drain(buffer, send, batch_size=10_000, linger_for=linger_for)
            time.sleep(0.01)

    follower = threading.Thread(target=follow)
    follower.start()
    sent = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        buffer.push(_events(20, time.time(), sent))
        sent += 20
        time.sleep(0.01)
    time.sleep(linger_for + 0.1)
    stop.set()
    follower.join()
    drain(buffer, send)  # whatever the follower left
    assert sorted(int(item.split('"n":')[1].split(",")[0]) for item in seen) == \
        list(range(sent))
    return sizes


def test_steady_traffic_is_sent_in_batches_that_fill(buffer):
    eager = _steady(buffer, 0.0)
    lingering = _steady(buffer, 0.25)
    eager_mean = sum(eager) / len(eager)
    lingering_mean = sum(lingering) / len(lingering)
    print(f"batches: eager {len(eager)} of {eager_mean:.0f} events, "
          f"lingering {len(lingering)} of {lingering_mean:.0f}")
    # About 20 events per look without a linger; a quarter second of traffic with it.
    assert lingering_mean > 5 * eager_mean
    assert lingering_mean >= 200


def test_hailwail_takes_a_linger_within_bounds(capsys, monkeypatch, redis_server):
    from hailwhale_cli.wail import main

    monkeypatch.setenv("HAIL_REDIS_URL", f"redis://127.0.0.1:{redis_server.port}/5")
    assert main(["--linger", "-1"]) == 1
    assert "--linger must be between 0 and 10 seconds" in capsys.readouterr().err
