"""hailwhale migrate: a store written by the first storage layout (tests/data/layout1.json.gz,
written by that code with tests/data/make_layout1.py) answers every query as it did then,
once migrated; reruns, interrupted runs and two runs at once count nothing twice."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hailwhale import keys
from hailwhale.batches import count_events
from hailwhale.migrate import MIGRATE_LUA, _plan, migrate
from hailwhale.query import parse_query, plotpoints, totals
from hailwhale.store import Store

DATA = json.loads(gzip.decompress((Path(__file__).parent / "data" / "layout1.json.gz")
                                  .read_bytes()))
OLD_HASHES = sum(1 for key in DATA["keys"] if keys.parse_v1_counter(key))


def load(client) -> None:
    """The first layout's store, each key with the time to live it had left."""
    pipe = client.pipeline(transaction=False)
    for key, stored in DATA["keys"].items():
        kind, value = stored["type"], stored["value"]
        if kind == "hash":
            pipe.hset(key, mapping=value)
        elif kind == "zset":
            pipe.zadd(key, dict(value))
        elif kind == "set":
            pipe.sadd(key, *value)
        else:
            pipe.set(key, base64.b64decode(value))
        if stored["pttl"] > 0:
            pipe.pexpire(key, stored["pttl"])
    pipe.execute()


def assert_answers_as_written(store: Store) -> None:
    for asked in DATA["answers"]:
        query = parse_query(asked["params"], store.settings, DATA["now"])
        shown = [{**series, "data": [point for point in series["data"] if point[1]]}
                 for series in plotpoints(store, query)["series"]]
        assert shown == asked["series"], asked["params"]
        assert totals(store, query)["totals"] == asked["totals"], asked["params"]


@pytest.fixture
def old_store(real_client, settings):
    # Real Redis only: the fixture's HyperLogLogs are Redis' own bytes, which fakeredis
    # (keeping its HyperLogLogs as sets) cannot read.
    load(real_client)
    return Store(real_client, settings)


def test_the_fixture_is_a_first_layout_store():
    assert OLD_HASHES > 4000
    assert sum(len(series["data"]) for a in DATA["answers"] for series in a["series"]) > 10_000


def test_migrating_keeps_every_answer(old_store):
    assert old_store.layout() == 1
    report = migrate(old_store)
    assert (report.carried, report.already, report.skipped) == (OLD_HASHES, 0, 0)
    assert old_store.layout() == keys.LAYOUT
    assert list(old_store.redis.scan_iter(match="*:c:*")) == []
    markers = list(old_store.redis.scan_iter(match="*:migrated:*", count=1000))
    assert len(markers) == OLD_HASHES and all(old_store.redis.pttl(m) > 0 for m in markers)
    assert_answers_as_written(old_store)
    # Every new bucket hash expires, no later than the old hash it came from did.
    longest = max(stored["pttl"] for stored in DATA["keys"].values())
    for key in old_store.redis.scan_iter(match="hw:*:s:*", count=1000):
        assert 0 < old_store.redis.pttl(key) <= longest, key


def test_running_it_again_adds_nothing(old_store):
    migrate(old_store)
    again = migrate(old_store)
    assert (again.carried, again.already) == (0, 0)
    assert_answers_as_written(old_store)


def test_a_run_stopped_midway_is_finished_by_the_next(old_store):
    # What a run killed after its scripts and before its deletes leaves: the first 300 old
    # hashes carried and marked, still there.
    script = old_store.redis.register_script(MIGRATE_LUA)
    carried = [key for key in DATA["keys"] if keys.parse_v1_counter(key)][:300]
    for key in carried:
        targets, items = _plan(key, old_store.redis.hgetall(key), old_store)
        script(keys=[keys.migrated(key, targets[0]), *targets], args=[600_000, *items])
    report = migrate(old_store)
    assert (report.carried, report.already) == (OLD_HASHES - 300, 300)
    assert_answers_as_written(old_store)


def test_counting_goes_on_during_and_after_the_migration(old_store, settings):
    from hailwhale.event import parse_event

    now = DATA["now"]
    event = parse_event({"dimensions": ["site1"], "metrics": {"dollars": 7}, "at": now - 5},
                        settings, now)
    count_events(old_store, [event], now)
    migrate(old_store)
    count_events(old_store, [event], now)
    query = parse_query({"dimensions": '["site1"]', "metrics": "dollars", "since": now - 3600,
                         "until": now}, settings, now)
    before = next(a for a in DATA["answers"] if a["params"]["dimensions"] == '["site1"]'
                  and a["params"]["period"] == "15s:3h" and a["params"]["pk"] == "")
    was = next(s for s in before["totals"] if s["dimension"] == ["site1"])["totals"]["dollars"]
    shown = totals(old_store, query)["totals"][0]["totals"]["dollars"]
    # The fixture's window is 3h: the last hour's dollars were at most that, plus the 14.
    assert shown - 14 <= was and shown >= 14


def test_two_runs_at_once_carry_each_hash_once(real_client, settings):
    load(real_client)
    stores = [Store(real_client, settings) for _ in range(2)]
    reports = []
    threads = [threading.Thread(target=lambda s=s: reports.append(migrate(s, batch=50)))
               for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.carried for r in reports) == OLD_HASHES
    assert_answers_as_written(stores[0])


def test_the_command_and_health_say_when_a_migration_is_needed(redis_server, real_client):
    import webtest

    from hailwhale.config import load_settings
    from whale import create_app

    load(real_client)
    settings = load_settings(environ={})
    app = webtest.TestApp(create_app(Store(real_client, settings), settings))
    health = app.get("/health").json
    assert health["layout"] == 1 and "hailwhale migrate" in health["migrate"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "hailwhale"), "migrate", "--redis", redis_server.url],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HAILWHALE_PERIODS": ""})
    assert done.returncode == 0, done.stderr
    assert f"{OLD_HASHES} counter hashes carried" in done.stdout
    assert f"the store is layout {keys.LAYOUT}" in done.stdout
    health = app.get("/health").json
    assert health["layout"] == keys.LAYOUT and "migrate" not in health
    assert_answers_as_written(Store(real_client, settings))


def test_a_new_store_records_its_layout_with_its_first_batch(store, settings, clock):
    from hailwhale.event import parse_event

    assert store.layout() == keys.LAYOUT and store.redis.dbsize() == 0  # reading writes nothing
    count_events(store, [parse_event({"dimensions": "a"}, settings, clock.now)], clock.now)
    assert store.redis.get(keys.LAYOUT_KEY) == str(keys.LAYOUT)
    # Not over a first-layout store's pks, which only hailwhale migrate may mark as carried.
    store.redis.delete(keys.LAYOUT_KEY)
    count_events(store, [parse_event({"dimensions": "b"}, settings, clock.now)], clock.now)
    assert store.redis.get(keys.LAYOUT_KEY) is None and store.layout() == 1
