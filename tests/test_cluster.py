"""The store runs unchanged on a real three-node Redis Cluster."""

from __future__ import annotations

import pytest
import webtest

from hailwhale.aggregate import aggregate
from hailwhale.event import parse_event
from hailwhale.store import Store, connect
from whale import create_app


@pytest.fixture
def cluster_store(redis_cluster, settings):
    client = connect(redis_cluster)
    client.flushall(target_nodes="primaries")
    yield Store(client, settings)
    client.close()


def test_counting_and_queries_on_a_cluster(cluster_store, clock):
    app = webtest.TestApp(create_app(cluster_store, clock=clock))
    for query in ('dimension=services&metric={"dollars": 200}',
                  'dimension=advertising&metric={"dollars": -2000}',
                  'dimensions={"sales": "p123"}&metric={"dollars": 500}'):
        app.get("/count?" + query)
    for visitor in "abcab":
        app.get("/count", {"pk": "site", "dimensions": f'["pages", "{visitor}"]',
                           "metrics": '{"visitors": "is_unique"}'})
    answer = app.get("/plotpoints", {"metrics": "dollars,dollars/hits", "depth": 1}).json
    totals = {s["label"]: s["total"] for s in answer["series"]}
    assert totals["Overall: dollars"] == -1300
    assert totals["sales: dollars"] == 500
    assert totals["Overall: dollars/hits"] == pytest.approx(-1300 / 3)
    uniques = app.get("/totals", {"pk": "site", "metrics": "visitors,hits"}).json
    assert uniques["totals"][0]["totals"] == {"visitors": 3, "hits": 5}
    assert app.get("/pks").json["pks"] == ["", "site"]
    # The keys really are spread over the nodes.
    nodes = {cluster_store.redis.get_node_from_key(k).name
             for k in cluster_store.redis.keys("hw:*", target_nodes="primaries")}
    assert len(nodes) > 1


def test_gauges_and_timings_on_a_cluster(cluster_store, clock):
    app = webtest.TestApp(create_app(cluster_store, clock=clock))
    for host, ms in (("h1", 10), ("h2", 30), ("h1", 20)):
        app.get("/count", {"dimensions": f'["hosts", "{host}"]', "metrics":
                           f'{{"latency": {{"timing": {ms}}}, "load": {{"delta": {ms}}}}}'})
    rows = app.get("/totals", {"metrics": "latency:count,latency:max,load", "depth": 2,
                               "threshold": 0}).json["totals"]
    found = {tuple(row["dimension"]): row["totals"] for row in rows}
    assert found[()] == {"latency:count": 3, "latency:max": 30, "load": 60}
    assert found[("hosts", "h1")] == {"latency:count": 2, "latency:max": 20, "load": 30}


def test_a_batch_id_is_applied_once_per_slot_on_a_cluster(cluster_store, settings, clock):
    raws = [{"pk": f"pk{n}", "dimensions": ["a", f"b{n}"]} for n in range(20)]
    batch = aggregate([parse_event(r, settings, clock.now) for r in raws], settings.periods,
                      settings.tz, clock.now)
    assert cluster_store.write(batch, "b1", "r")[0] is True
    assert cluster_store.write(batch, "b1", "r") == (False, "r")
    for n in range(20):
        period = settings.periods[0]
        ordinals = period.ordinals(clock.now - 60, clock.now, settings.tz)
        reading = cluster_store.read(f"pk{n}", [()], {"hits": "sum"}, period, ordinals)
        assert reading[()]["hits"].total == 1
    assert cluster_store.reset("pk3") > 0
    assert "pk3" not in cluster_store.pks()


def test_rank_on_a_cluster(cluster_store, clock):
    """GET /rank's reads (children of a whole tree in one pipeline, totals level by level)
    on a cluster: the original ratio case, its paths' keys in many slots."""
    app = webtest.TestApp(create_app(cluster_store, clock=clock))
    app.post_json("/count", [
        {"dimensions": path, "metrics": {"value": value, "visitors": visitors}}
        for path, value, visitors in ((["t", "a", "asub1"], 54989, 4999),
                                      (["t", "a", "asub2"], 375000, 25000),
                                      (["t", "b"], 100000, 20000), (["t", "c"], 5, 1))])
    ranked = app.get("/rank", {"dimensions": "t", "value": "value/visitors"}).json["ranked"]
    assert {key: row["important"] for key, row in ranked.items()} == {
        '["t","a"]': False, '["t","a","asub1"]': False, '["t","a","asub2"]': True,
        '["t","b"]': True, '["t","c"]': False}
