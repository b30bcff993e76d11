"""The cardinality guard: a parent holds at most MAX_CHILDREN children; events under further
new children are counted under "__other__", exactly, and cost one series however many names
arrive. Pure fold, then the store on real Redis (and fakeredis)."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from hailwhale import query
from hailwhale.aggregate import aggregate
from hailwhale.batches import count_events
from hailwhale.cardinality import OTHER, fold
from hailwhale.errors import BadRequest
from hailwhale.event import parse_event
from hailwhale.store import Store


def batch_of(settings, now, *raws):
    return aggregate([parse_event(raw, settings, now) for raw in raws], settings.periods,
                     settings.tz, now)


def hits_by_path(batch, index=0):
    totals: dict = {}
    for (_pk, path, period, _ordinal), sums in batch.counters.items():
        if period == index:
            totals[path] = totals.get(path, 0) + sums["hits"]
    return totals


def test_fold_counts_refused_children_under_other_and_drops_their_levels(settings):
    now = time.time()
    batch = batch_of(settings, now, {"dimensions": ["site", "a", "x"]},
                     {"dimensions": ["site", "b", "y"]}, {"dimensions": ["site", "c"]},
                     {"dimensions": ["site", "c", "z"]})
    folded = hits_by_path(fold(batch, {("", ("site",)): {"b", "c"}}))
    nano = 10**9  # counters are kept in billionths
    assert folded == {(): 4 * nano, ("site",): 4 * nano, ("site", "a"): nano,
                      ("site", "a", "x"): nano, ("site", OTHER): 3 * nano}
    children = fold(batch, {("", ("site",)): {"b", "c"}}).children
    assert set(children[("", ("site",))]) == {"a", OTHER}
    assert ("", ("site", "b")) not in children and ("", ("site", "c")) not in children
    assert fold(batch, {}) is batch


@pytest.fixture
def capped(client, settings):
    return Store(client, dataclasses.replace(settings, max_children=5))


def totals(store, now, **params):
    answer = query.totals(store, query.parse_query(params, store.settings, now))
    return {tuple(row["dimension"]): row["totals"]["hits"] for row in answer["totals"]}


def test_a_parent_keeps_its_cap_and_every_total_stays_exact(capped, clock):
    now = clock.now
    count_events(capped, [parse_event({"dimensions": ["pages", f"p{i}", "deep"]}, capped.settings,
                              now) for i in range(20)], now)
    count_events(capped, [parse_event({"dimensions": ["pages", f"p{i}"]}, capped.settings, now)
                  for i in (0, 1, 17, 18, 19)], now)  # old children count, new ones fold
    children = capped.children("", ("pages",))
    assert len(children) == 6 and OTHER in children
    shown = totals(capped, now, dimensions="pages", depth="1", threshold="0")
    assert shown[("pages",)] == 25
    assert sum(v for path, v in shown.items() if len(path) == 2) == 25
    assert shown[("pages", OTHER)] == 15 + 3
    assert shown[("pages", "p0")] == 2
    # /dimensions lists __other__ for drill-down; nothing is kept below it.
    listed = query.dimensions(capped, "", ("pages",))
    assert OTHER in [child["name"] for child in listed["children"]]
    assert capped.children("", ("pages", OTHER)) == []


def test_concurrent_writers_never_pass_the_cap(real_client, settings, clock):
    store = Store(real_client, dataclasses.replace(settings, max_children=50))
    now = clock.now

    def writer(offset):
        for start in range(0, 200, 20):
            count_events(store, [parse_event({"dimensions": ["c", f"w{offset}-{i}"]},
                                             store.settings, now)
                                 for i in range(start, start + 20)], now)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    children = store.children("", ("c",))
    assert len(children) == 51 and OTHER in children  # 50 and __other__, never more
    assert totals(store, now, dimensions="c", depth="1", threshold="0")[("c",)] == 800
    assert sum(v for p, v in totals(store, now, dimensions="c", depth="1",
                                    threshold="0").items() if len(p) == 2) == 800


def test_a_flood_of_new_names_costs_what_the_cap_allows(real_client, settings, clock):
    """200,000 events, each under a page name never seen before, in batches of 10,000: Redis
    grows by about what 1,000 children cost, not by 200,000 series."""
    store = Store(real_client, settings)  # the default cap, 1,000
    now = clock.now

    def flood(first, count):
        for start in range(first, first + count, 10_000):
            count_events(store, [parse_event({"dimensions": ["site", f"page-{i}"]}, settings, now)
                         for i in range(start, min(start + 10_000, first + count))], now)

    flood(0, 1_000)  # fills the cap
    filled = real_client.info("memory")["used_memory"]
    flood(1_000, 200_000)
    grown = real_client.info("memory")["used_memory"] - filled
    assert len(store.children("", ("site",))) == 1_001
    assert totals(store, now, dimensions="site")[("site",)] == 201_000
    # 200,000 new series would take tens of megabytes; folded, the growth is __other__'s
    # few counters (and allocator noise).
    assert grown < 1_000_000, grown
    print(f"flood: 200,000 new names grew used_memory by {grown} bytes")


def test_a_query_past_its_cost_bound_is_refused_naming_depth(client, settings, clock):
    store = Store(client, dataclasses.replace(settings, max_query_cells=100 * 240))
    now = clock.now
    count_events(store, [parse_event({"dimensions": ["wide", f"c{i}"]}, settings, now)
                 for i in range(150)], now)
    narrow = query.parse_query({"dimensions": "wide", "depth": "1", "since": "1h"},
                               store.settings, now)
    with pytest.raises(BadRequest, match="MAX_QUERY_CELLS") as refused:
        query.plotpoints(store, narrow)
    assert refused.value.param == "depth"
    # The same ranking over a shorter window fits.
    short = query.parse_query({"dimensions": "wide", "depth": "1", "since": "10m",
                               "threshold": "0"},
                              store.settings, now)
    assert len(query.plotpoints(store, short)["series"]) > 1


def test_a_pk_holds_at_most_max_pk_metrics_metric_names(client, settings, clock):
    from hailwhale.batches import count_batch

    store = Store(client, dataclasses.replace(settings, max_pk_metrics=4))  # hits + 3
    now = clock.now
    count_events(store, [parse_event({"metrics": {"m1": 1, "m2": 2, "m3": 3}}, settings, now)], now)
    with pytest.raises(BadRequest, match="MAX_PK_METRICS") as refused:
        count_events(store, [parse_event({"metrics": {"m1": 1}}, settings, now),
                     parse_event({"metrics": {"m4": 1}}, settings, now)], now)
    assert refused.value.param == "metrics.m4"
    assert totals(store, now)[()] == 1  # nothing of the refused request was counted
    # Through a delivered batch: the event naming a new metric is refused alone.
    answer = count_batch(store, "b-metrics", [{"metrics": {"m2": 5}, "at": now},
                                              {"metrics": {"visitors": "is_unique"},
                                               "uid": "u", "at": now},
                                              {"metrics": {"m3": 1}, "at": now}], now)
    assert answer["counted"] == 2 and [r["index"] for r in answer["rejected"]] == [1]
    assert "MAX_PK_METRICS" in answer["rejected"][0]["error"]
    assert sorted(store.metric_kinds("")) == ["hits", "m1", "m2", "m3"]
    # Another pk has room of its own.
    count_events(store, [parse_event({"pk": "other", "metrics": {"m4": 1}}, settings, now)], now)
