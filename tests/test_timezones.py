"""Day buckets in the viewer's time zone (issue 12, part 4): tz= on queries, with the zones
of TIMEZONES kept as day buckets of their own and any other zone folded from hourly
buckets, DST days included, on real Redis and fakeredis."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import webtest

from hailwhale.config import load_settings
from hailwhale.store import Store
from whale import create_app


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture
def zoned(client, clock):
    """Whale with hours kept 60 days (so the last US DST change is foldable) and Berlin's
    days kept as buckets of their own."""
    settings = load_settings(environ={}, PERIODS="15s:3h,1h:60d,1d:1y",
                             TIMEZONES=["Europe/Berlin"])
    return webtest.TestApp(create_app(Store(client, settings), clock=clock))


def count(app, when: float, **metrics):
    app.get("/count", {"dimensions": "shop", "at": str(when),
                       "metrics": json.dumps(metrics or {"dollars": 1})})


def days(app, **params):
    answer = app.get("/plotpoints", {"period": "1d:1y", "dimensions": "shop", **params}).json
    series = answer["series"][0]
    return answer, {datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(): value
                    for ms, value in series["data"]}


def test_a_listed_zones_days_across_its_dst_change(zoned):
    # Berlin leaves summer time on 2026-10-25 at 03:00 CEST: that day has 25 hours.
    count(zoned, at("2026-10-24T22:30"))  # 00:30 CEST, 25 Oct in Berlin (24 Oct in UTC)
    count(zoned, at("2026-10-25T22:30"))  # 23:30 CET, still 25 Oct in Berlin
    count(zoned, at("2026-10-25T23:30"))  # 00:30 CET, 26 Oct in Berlin
    answer, berlin = days(zoned, tz="Europe/Berlin", since="2026-10-24", until="2026-10-26T12:00")
    assert answer["tz"] == "Europe/Berlin" and answer["period"] == "1d:1y"
    assert berlin == {"2026-10-23T22:00:00+00:00": 0,  # 24 Oct 00:00 CEST
                      "2026-10-24T22:00:00+00:00": 2,  # 25 Oct 00:00 CEST, 25 hours long
                      "2026-10-25T23:00:00+00:00": 1}  # 26 Oct 00:00 CET
    _, utc = days(zoned, since="2026-10-24T00:00:00Z", until="2026-10-25T12:00:00Z")
    assert utc == {"2026-10-24T00:00:00+00:00": 1, "2026-10-25T00:00:00+00:00": 2}


def test_another_zones_days_are_folded_from_hours_dst_included(zoned):
    # New York leaves daylight time on 2026-11-01 at 02:00 EDT: a 25-hour day.
    count(zoned, at("2026-11-01T04:30"), dollars=5)  # 00:30 EDT, 1 Nov
    count(zoned, at("2026-11-02T04:30"), dollars=7)  # 23:30 EST, still 1 Nov
    count(zoned, at("2026-11-02T05:30"), dollars=11)  # 00:30 EST, 2 Nov
    _, york = days(zoned, tz="America/New_York", since="2026-11-01",
                   until="2026-11-02T12:00", metrics="dollars,hits,dollars/hits")
    assert york == {"2026-11-01T04:00:00+00:00": 12, "2026-11-02T05:00:00+00:00": 11}
    answer = zoned.get("/totals", {"period": "1d", "tz": "America/New_York",
                                   "dimensions": "shop", "since": "2026-11-01",
                                   "until": "2026-11-02T12:00", "metrics": "dollars"}).json
    assert answer["totals"][0]["totals"] == {"dollars": 23}


def test_folding_is_refused_beyond_the_hours_kept_and_for_uniques(zoned, clock):
    count(zoned, clock.now - 3600)
    far = zoned.get("/plotpoints", {"period": "1d:1y", "tz": "Asia/Tokyo", "since": "90d"},
                    expect_errors=True)
    assert far.status_int == 400 and far.json["param"] == "tz"
    assert "TIMEZONES" in far.json["error"] and "60 days" in far.json["error"]
    zoned.get("/count", {"dimensions": "shop", "uid": "u1",
                         "metrics": '{"visitors": "is_unique"}'})
    unique = zoned.get("/plotpoints", {"period": "1d:1y", "tz": "Asia/Tokyo", "since": "2d",
                                       "metrics": "visitors"}, expect_errors=True)
    assert unique.status_int == 400 and unique.json["param"] == "tz"
    # A listed zone keeps unique counts per day like any.
    listed = zoned.get("/totals", {"period": "1d:1y", "tz": "Europe/Berlin", "since": "2d",
                                   "metrics": "visitors", "dimensions": "shop"}).json
    assert listed["totals"][0]["totals"] == {"visitors": 1}


def test_tz_names_its_windows_and_is_checked(zoned, clock):
    bad = zoned.get("/plotpoints", {"tz": "Mars/Olympus"}, expect_errors=True)
    assert bad.status_int == 400 and bad.json["param"] == "tz"
    # Hourly and finer buckets are UTC-aligned in every zone: tz moves only the window.
    count(zoned, clock.now)
    answer = zoned.get("/totals", {"tz": "Pacific/Auckland", "since": "today",
                                   "dimensions": "shop", "metrics": "dollars"}).json
    midnight = datetime.fromtimestamp(clock.now, ZoneInfo("Pacific/Auckland")).replace(
        hour=0, minute=0, second=0, microsecond=0)
    assert abs(answer["since"] / 1000 - midnight.timestamp()) < 1


def test_rank_takes_tz_too(zoned):
    """/rank over a folded zone's days reads the hours of those days."""
    for name, amount in (("a", 30), ("b", 70)):
        for _ in range(20):
            zoned.get("/count", {"dimensions": json.dumps(["shop", name]),
                                 "metrics": json.dumps({"dollars": amount})})
    answer = zoned.get("/rank", {"dimensions": "shop", "value": "dollars", "period": "1d:1y",
                                 "since": "today", "tz": "America/New_York"}).json
    assert answer["tz"] == "America/New_York"
    assert {key: row["value"] for key, row in answer["ranked"].items()} == {
        '["shop","a"]': 600, '["shop","b"]': 1400}


def test_the_python_api_takes_tz(client):
    from hailwhale import HailWhale

    settings = load_settings(environ={}, PERIODS="15s:3h,1h:60d,1d:1y")
    api = HailWhale(Store(client, settings))
    api.log("shop", {"dollars": 5}, at=at("2026-11-01T04:30"))  # 00:30 EDT, 1 Nov
    api.log("shop", {"dollars": 7}, at=at("2026-11-02T04:30"))  # 23:30 EST, still 1 Nov
    york = ZoneInfo("America/New_York")
    points = api.dataset("shop", value="dollars", period="1d:1y", tz="America/New_York",
                         start_at=datetime(2026, 11, 1, tzinfo=york),
                         end_at=datetime(2026, 11, 1, 12, tzinfo=york))
    assert points == [(datetime(2026, 11, 1, tzinfo=york), 12)]
    ranked = api.rank([], value="dollars", period="1d:1y", tz="America/New_York",
                      start_at=datetime(2026, 11, 1, tzinfo=york))
    assert ranked[("shop",)]["value"] == 12
