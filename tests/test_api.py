"""The Python API of the original README, run as written there (with valid Python)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hailwhale import HailWhale, Store
from hailwhale.errors import BadRequest


@pytest.fixture
def whale(store):
    """The class-level API of the README, bound to the test's store."""
    HailWhale.configure(store)
    yield HailWhale
    HailWhale._default = None


def main_page(visitor_id, url="site.com/main"):
    """The README's my_site.wsgi view."""
    update_params = ["pageviews", "site.com", url, visitor_id]
    update_values = {
        "hits": 1,  # Increment a value
        "time_on_page": 25,  # Or store things to aggregate
        "visitors": "is_unique",  # Magic strings get replaced
    }
    HailWhale.log(update_params, update_values)
    return "<h1>Hello, Whale</h1>"


def test_seed_python_example(whale, settings):
    for visitor, url in [("v1", "site.com/main"), ("v2", "site.com/main"),
                         ("v1", "site.com/main"), ("v3", "site.com/about")]:
        assert main_page(visitor, url) == "<h1>Hello, Whale</h1>"

    # The four prefixes and the overall root are counted.
    for params, hits in [([], 4), (["pageviews"], 4), (["pageviews", "site.com"], 4),
                         (["pageviews", "site.com", "site.com/main"], 3),
                         (["pageviews", "site.com", "site.com/main", "v1"], 2)]:
        points = HailWhale.dataset(params, value="hits", period=settings.PERIODS[0])
        assert sum(v for _, v in points) == hits, params

    # "total_hits_this_month" (the README's timedelta(months=1) is not valid Python).
    total_hits_this_month = HailWhale.dataset(
        ["pageviews"], value="hits", period=settings.PERIOD[-1],
        start_at=datetime.now() - timedelta(days=30),
    )
    assert isinstance(total_hits_this_month, list)
    assert all(isinstance(d, datetime) and d.tzinfo for d, _ in total_hits_this_month)
    assert len(total_hits_this_month) in (30, 31)
    assert total_hits_this_month[-1][1] == 4
    days = [d for d, _ in total_hits_this_month]
    assert all(b - a == timedelta(days=1) for a, b in zip(days, days[1:], strict=False))

    timeonpage_per_page_for_sitecom_this_week = HailWhale.dataset(
        ["pageviews", "site.com"], depth=1, value="time_on_page", period=settings.PERIOD[1])
    assert set(timeonpage_per_page_for_sitecom_this_week) == {"site.com/main",
                                                              "site.com/about"}
    main = timeonpage_per_page_for_sitecom_this_week["site.com/main"]
    assert sum(v for _, v in main) == 75
    assert len(main) == 168  # a week of hours

    visitors = HailWhale.dataset(["pageviews"], value="visitors", period=settings.PERIODS[1])
    assert sum(v for _, v in visitors) == 3  # v1 came twice: counted once
    per_visit = HailWhale.dataset(["pageviews"], value="time_on_page/hits",
                                  period=(3600, 3600 * 24 * 7))
    assert [v for _, v in per_visit if v] == [25]


def test_dataset_points_are_bucket_starts(store, settings):
    api = HailWhale(store)
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    api.log("services", {"dollars": 200}, at=start)
    points = api.dataset("services", value="dollars", period="1h:7d",
                         start_at=start - timedelta(hours=1))
    (stamp, value), = [(d, v) for d, v in points if v]
    assert value == 200
    assert stamp <= start < stamp + timedelta(hours=1)
    assert stamp.minute == 0 and stamp.second == 0


def test_timings_and_gauges_through_the_python_api(store):
    api = HailWhale(store)
    for ms in (100, 200, 300, 400):
        api.log(["checkout", "eu"], {"latency": {"timing": ms}})
    api.log(["checkout", "eu"], {"cpu": {"gauge": 0.25}})
    points = api.dataset(["checkout"], value="latency:max")
    assert [v for _, v in points if v is not None] == [400]
    assert points[0][1] is None  # a bucket without samples has no maximum: a gap
    by_child = api.dataset(["checkout"], value="latency:count", depth=1)
    assert sum(v for _, v in by_child["eu"]) == 4
    assert api.dataset(["checkout", "eu"], value="cpu:last")[-1][1] == 0.25


def test_log_refuses_bad_input_and_stores_nothing(store):
    api = HailWhale(store)
    with pytest.raises(BadRequest, match="metrics.dollars"):
        api.log("services", {"dollars": "lots"})
    with pytest.raises(BadRequest, match="period"):
        api.dataset("services", period=(5, 60))
    assert store.redis.dbsize() == 0


def test_default_instance_is_built_from_settings(monkeypatch, redis_server):
    monkeypatch.setenv("WHALE_REDIS_URL", redis_server.url)
    HailWhale._default = None
    try:
        assert isinstance(HailWhale.default().store, Store)
        assert HailWhale.default().store.redis.connection_pool.connection_kwargs["port"] == \
            redis_server.port
    finally:
        HailWhale._default = None
