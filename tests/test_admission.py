"""Heavy queries run in a few slots shared by a node's workers, so writes always find one free
(issue 9: "a slow query does not stall writes"); the cost bounds refuse what no slot should
take."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest
import webtest

from hailwhale import admission, query
from hailwhale.admission import Budget, Busy, Slots
from hailwhale.batches import count_events
from hailwhale.errors import BadRequest, ConfigurationError
from hailwhale.event import parse_event
from hailwhale.store import Store
from hailwhale_web.plumbing import node_key
from whale import create_app


@pytest.fixture
def slots(tmp_path):
    return Slots(2, "test", directory=str(tmp_path))


def test_a_node_has_as_many_slots_as_configured(slots):
    first, second = slots.acquire(), slots.acquire()
    with pytest.raises(Busy, match="2 heavy queries are running"):
        slots.acquire()
    Slots.release(first)
    third = slots.acquire()  # the freed slot
    for fd in (second, third):
        Slots.release(fd)


def test_a_killed_holder_leaves_its_slot_free(slots):
    """A worker killed while it holds a slot (harakiri, kill -9) does not keep it: the
    kernel drops its lock with the process."""
    held = slots.acquire()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child holds the other slot until killed
        slots.acquire()
        time.sleep(60)
        os._exit(0)
    deadline = time.monotonic() + 10
    while True:  # until the child holds the second slot
        try:
            Slots.release(slots.acquire())
        except Busy:
            break
        assert time.monotonic() < deadline, "the child never took its slot"
        time.sleep(0.01)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    Slots.release(slots.acquire())  # free again
    Slots.release(held)


def test_a_budget_takes_a_slot_only_past_heavy_cells(slots):
    with Budget(slots) as light:
        light.spend(admission.HEAVY_CELLS)
        assert light._fd is None
        with Budget(slots) as heavy:
            heavy.spend(admission.HEAVY_CELLS + 1)
            assert heavy._fd is not None
            with Budget(slots) as another:
                another.spend(10)
                another.spend(admission.HEAVY_CELLS)  # in all past it
                with Budget(slots) as third, pytest.raises(Busy):
                    third.spend(admission.HEAVY_CELLS * 2)
    # every slot released on the way out
    Slots.release(slots.acquire())
    Slots.release(slots.acquire())


def _wide(client, settings, clock, children: int) -> Store:
    store = Store(client, settings)
    count_events(store, [parse_event({"dimensions": ["wide", f"c{i}"], "metrics": {"dollars": i}},
                             settings, clock.now) for i in range(children)], clock.now)
    return store


def test_whale_refuses_a_heavy_query_while_every_slot_is_taken(client, settings, clock):
    """Through the app: with the node's slots held by other workers, a heavy query is a 503
    with Retry-After at once; light queries, counting and batches go on."""
    settings = dataclasses.replace(settings, query_slots=1)
    store = _wide(client, settings, clock, 600)
    web = webtest.TestApp(create_app(store, settings, clock=clock))
    heavy = {"dimensions": "wide", "depth": "1", "threshold": "0", "since": "3h",
             "metrics": "hits,dollars"}
    node = Slots(1, node_key())
    held = node.acquire()  # another worker of this node, busy with a heavy query
    try:
        refused = web.get("/plotpoints", heavy, status=503)
        assert refused.headers["Retry-After"] == "1"
        assert "heavy queries are running" in refused.json["error"]
        light = web.get("/plotpoints", {"dimensions": "wide", "since": "3h"})
        assert light.json["series"][0]["total"] == 600
        assert web.get("/count", {"dimensions": "wide", "metric": '{"dollars": 1}'}).json == {
            "ok": True, "counted": 1}
    finally:
        Slots.release(held)
    answer = web.get("/plotpoints", heavy)
    assert len(answer.json["series"]) == 2 * 601  # the parent and each child, two metrics
    # the answer released its slot: the next heavy query runs too
    web.get("/totals", heavy)


def test_showing_is_bounded_like_ranking(client, settings, clock):
    """MAX_QUERY_CELLS bounds what a query shows (series x metrics x buckets) as well as what
    it ranks; the refusal says how to narrow it."""
    store = _wide(client, dataclasses.replace(settings, max_query_cells=100 * 241), clock, 60)
    every = {"dimensions": "wide", "depth": "1", "since": "1h", "threshold": "0",
             "metrics": "hits,dollars"}
    with pytest.raises(BadRequest, match="show 122 series") as refused:
        query.plotpoints(store, query.parse_query(every, store.settings, clock.now))
    assert refused.value.param == "depth" and "set a limit" in str(refused.value)
    fewer = query.parse_query({**every, "limit": "20"}, store.settings, clock.now)
    assert len(query.plotpoints(store, fewer)["series"]) == 2 * 21


def test_the_slots_live_in_a_private_directory(tmp_path):
    """Another local user must not be able to hold a node's slots: the directory is this
    user's own, 0700, and one that is not (a symlink, too open) is refused."""
    Slots(2, "test", directory=str(tmp_path))
    home = tmp_path / f"hailwhale-{os.getuid()}"
    assert home.is_dir() and (home.stat().st_mode & 0o777) == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    other = tmp_path / "other"
    other.mkdir()
    (other / f"hailwhale-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match="not a private directory"):
        Slots(2, "test", directory=str(other))
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / f"hailwhale-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(shared / f"hailwhale-{os.getuid()}", 0o777)
    with pytest.raises(ConfigurationError, match="not a private directory"):
        Slots(2, "test", directory=str(shared))


def test_the_slot_files_of_gone_nodes_are_removed(tmp_path):
    child = os.fork()
    if child == 0:  # pragma: no cover - a node that ends at once
        os._exit(0)
    os.waitpid(child, 0)  # gone now
    gone = Slots(2, f"uwsgi-{child}", directory=str(tmp_path))
    Slots.release(gone.acquire())
    home = tmp_path / f"hailwhale-{os.getuid()}"
    assert [p.name for p in home.iterdir()] == [f"slot-uwsgi-{child}-0"]
    mine = Slots(2, f"pid-{os.getpid()}", directory=str(tmp_path))  # a node starting
    Slots.release(mine.acquire())
    assert [p.name for p in home.iterdir()] == [f"slot-pid-{os.getpid()}-0"]
    Slots(2, "another", directory=str(tmp_path))  # this process lives: its files stay
    assert [p.name for p in home.iterdir()] == [f"slot-pid-{os.getpid()}-0"]
