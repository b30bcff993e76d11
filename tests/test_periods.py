"""Unit tests for hailwhale.periods: durations, periods and bucket maths (no Redis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hailwhale.errors import BadRequest, ConfigurationError
from hailwhale.periods import (
    DAY,
    Period,
    find_period,
    format_duration,
    parse_duration,
    parse_period,
    parse_periods,
)

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600
WEEK = 7 * DAY
YEAR = 365 * DAY


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def local(tz, *args) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


# -- parse_duration / format_duration -------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("15s", 15),
        ("5m", 300),
        ("3h", 10800),
        ("7d", 604800),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("90", 90),
        (" 2 h ", 7200),
        (45, 45),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "1.5h", "-5s", "3x", "3hh", "1h30m", "0s", "0", 0, -1, "abc", True]
)
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_duration_error_quotes_input():
    with pytest.raises(ValueError, match="'3x'"):
        parse_duration("3x")


@pytest.mark.parametrize(
    "seconds, text",
    [
        (15, "15s"),
        (90, "90s"),
        (120, "2m"),
        (10800, "3h"),
        (86400, "1d"),
        (172800, "2d"),
        (604800, "7d"),  # days read better than weeks
        (1209600, "14d"),
        (365 * 86400, "1y"),
        (366 * 86400, "366d"),
        (3601, "3601s"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**10))
def test_format_then_parse_duration_round_trips(seconds):
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    # The shortest spelling: never a bare number of seconds when a bigger unit divides it.
    if seconds % 60 == 0:
        assert not text.endswith("s")


# -- Period ------------------------------------------------------------------------------


def test_period_properties():
    p = Period(15, 10800)
    assert p.name == "15s:3h"
    assert p.code == "15r10800"
    assert not p.daily
    assert p.slots == 720
    assert p.as_dict() == {"name": "15s:3h", "label": "15s:3h", "interval": 15, "retention": 10800}
    labelled = Period(86400, YEAR, "daily")
    assert labelled.daily
    assert labelled.name == "1d:1y"
    assert labelled.as_dict()["label"] == "daily"
    assert labelled.slots == 365


def test_period_codes_differ_when_retention_differs():
    assert Period(3600, WEEK).code != Period(3600, DAY).code


@pytest.mark.parametrize("interval, retention", [(0, 10), (-15, 10800), (3600, 15)])
def test_period_rejects_bad_values(interval, retention):
    with pytest.raises(ConfigurationError):
        Period(interval, retention)


def test_period_retention_equal_to_interval_is_allowed():
    assert Period(60, 60).slots == 1


@pytest.mark.parametrize("interval, daily", [(15, False), (3600, False), (90000, False),
                                             (86400, True), (172800, True), (WEEK, True)])
def test_daily(interval, daily):
    assert Period(interval, interval * 10).daily is daily


# -- sub-day buckets: aligned to the UTC epoch ----------------------------------------------


@pytest.mark.parametrize("tz", [UTC, BERLIN, NEW_YORK])
def test_sub_day_buckets_are_aligned_to_the_epoch(tz):
    p = Period(15, 10800)
    assert p.ordinal(0, tz) == 0
    assert p.ordinal(14.999, tz) == 0
    assert p.ordinal(15, tz) == 1
    assert p.ordinal(-0.5, tz) == -1
    assert p.ordinal(1_700_000_007, tz) == 1_700_000_007 // 15
    assert p.start(113_333_333, tz) == 113_333_333 * 15
    assert isinstance(p.start(3, tz), float)


def test_hour_buckets_ignore_the_time_zone():
    p = Period(HOUR, WEEK)
    ts = utc(2026, 3, 29, 1, 30)  # the hour Berlin skips: 02:00 CET -> 03:00 CEST
    assert p.ordinal(ts, BERLIN) == p.ordinal(ts, UTC) == p.ordinal(ts, NEW_YORK)
    assert p.start(p.ordinal(ts, BERLIN), BERLIN) == utc(2026, 3, 29, 1, 0)


def test_non_whole_day_interval_is_epoch_aligned():
    p = Period(90000, 10 * 90000)  # 25 hours: not a whole number of days
    assert not p.daily
    assert p.start(7, BERLIN) == 7 * 90000
    assert p.ordinal(7 * 90000 - 1, BERLIN) == 6


# -- day buckets: local midnight in the configured time zone -------------------------------


def test_utc_day_buckets_count_days_since_epoch():
    p = Period(DAY, YEAR)
    assert p.ordinal(0, UTC) == 0
    assert p.ordinal(86399.9, UTC) == 0
    assert p.ordinal(86400, UTC) == 1
    assert p.ordinal(-1, UTC) == -1
    assert p.start(20000, UTC) == 20000 * 86400.0


def test_berlin_day_bucket_follows_local_midnight():
    p = Period(DAY, YEAR)
    # 23:30 UTC on March 27 is 00:30 on March 28 in Berlin (CET, +1).
    ts = utc(2026, 3, 27, 23, 30)
    o = p.ordinal(ts, BERLIN)
    assert o == p.ordinal(ts, UTC) + 1
    assert p.start(o, BERLIN) == utc(2026, 3, 27, 23, 0)
    assert datetime.fromtimestamp(p.start(o, BERLIN), BERLIN).isoformat() == (
        "2026-03-28T00:00:00+01:00"
    )


def test_new_york_day_bucket_follows_local_midnight():
    p = Period(DAY, YEAR)
    # 03:00 UTC on Jan 15 is still Jan 14 in New York (EST, -5).
    ts = utc(2026, 1, 15, 3, 0)
    o = p.ordinal(ts, NEW_YORK)
    assert o == p.ordinal(ts, UTC) - 1
    assert p.start(o, NEW_YORK) == utc(2026, 1, 14, 5, 0)
    assert p.start(o + 1, NEW_YORK) == utc(2026, 1, 15, 5, 0)


@pytest.mark.parametrize(
    "tz, day, hours",
    [
        (BERLIN, (2026, 3, 29), 23),
        (BERLIN, (2026, 10, 25), 25),
        (BERLIN, (2026, 3, 28), 24),
        (BERLIN, (2026, 10, 26), 24),
        (NEW_YORK, (2026, 3, 8), 23),
        (NEW_YORK, (2026, 11, 1), 25),
        (NEW_YORK, (2026, 7, 4), 24),
        (UTC, (2026, 3, 29), 24),
    ],
)
def test_day_length_across_daylight_saving_changes(tz, day, hours):
    p = Period(DAY, YEAR)
    noon = local(tz, *day, 12)
    o = p.ordinal(noon, tz)
    assert p.start(o, tz) == local(tz, *day)
    assert p.start(o + 1, tz) - p.start(o, tz) == hours * 3600
    # The last second of that local day is still in the bucket; its midnight is not.
    assert p.ordinal(p.start(o + 1, tz) - 1, tz) == o
    assert p.ordinal(p.start(o + 1, tz), tz) == o + 1


def test_berlin_short_day_bucket_holds_the_whole_local_day():
    p = Period(DAY, YEAR)
    o = p.ordinal(local(BERLIN, 2026, 3, 29, 12), BERLIN)
    for hour in (0, 1, 3, 12, 23):  # 02:00 does not exist on this day
        assert p.ordinal(local(BERLIN, 2026, 3, 29, hour, 59), BERLIN) == o
    assert p.ordinal(local(BERLIN, 2026, 3, 28, 23, 59, 59), BERLIN) == o - 1
    assert p.ordinal(local(BERLIN, 2026, 3, 30, 0, 0), BERLIN) == o + 1


def test_berlin_long_day_holds_both_repeated_hours():
    p = Period(DAY, YEAR)
    o = p.ordinal(local(BERLIN, 2026, 10, 25, 12), BERLIN)
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0).timestamp()
    second = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1).timestamp()
    assert second - first == 3600
    assert p.ordinal(first, BERLIN) == p.ordinal(second, BERLIN) == o


def test_two_day_buckets_start_at_local_midnight():
    p = Period(2 * DAY, 60 * DAY)
    for o in range(10200, 10240):
        moment = datetime.fromtimestamp(p.start(o, BERLIN), BERLIN)
        assert (moment.hour, moment.minute, moment.second) == (0, 0, 0)
        assert p.start(o + 1, BERLIN) - p.start(o, BERLIN) in (
            47 * 3600, 48 * 3600, 49 * 3600
        )


# -- week buckets: Monday, local midnight ----------------------------------------------------


@pytest.mark.parametrize("tz", [UTC, BERLIN, NEW_YORK])
@pytest.mark.parametrize("weeks", [1, 2])
def test_week_buckets_start_on_monday_local_midnight(tz, weeks):
    p = Period(weeks * WEEK, 52 * WEEK)
    first = p.ordinal(local(tz, 2026, 1, 1), tz)
    for o in range(first, first + 60):
        moment = datetime.fromtimestamp(p.start(o, tz), tz)
        assert moment.weekday() == 0  # Monday
        assert (moment.hour, moment.minute, moment.second) == (0, 0, 0)


def test_week_bucket_of_a_known_date():
    p = Period(WEEK, 52 * WEEK)
    # Wednesday 2026-03-25 in Berlin: its week starts Monday 2026-03-23 00:00 CET.
    o = p.ordinal(local(BERLIN, 2026, 3, 25, 15), BERLIN)
    assert p.start(o, BERLIN) == local(BERLIN, 2026, 3, 23)
    # That week holds the spring-forward Sunday: 7 days minus one hour.
    assert p.start(o + 1, BERLIN) == local(BERLIN, 2026, 3, 30)
    assert p.start(o + 1, BERLIN) - p.start(o, BERLIN) == WEEK - 3600
    # Sunday 23:59 is the same week; Monday 00:00 the next one.
    assert p.ordinal(local(BERLIN, 2026, 3, 29, 23, 59), BERLIN) == o
    assert p.ordinal(local(BERLIN, 2026, 3, 30, 0, 0), BERLIN) == o + 1
    # The epoch (a Thursday) is in the week that began Monday 1969-12-29.
    assert p.start(p.ordinal(0, UTC), UTC) == utc(1969, 12, 29)


# -- expires_at, ordinals, keeps -------------------------------------------------------------


def test_expires_at_is_bucket_end_plus_retention():
    p = Period(15, 10800)
    assert p.expires_at(10, UTC) == 165 + 10800
    assert isinstance(p.expires_at(10, UTC), int)
    d = Period(DAY, YEAR)
    o = d.ordinal(local(BERLIN, 2026, 10, 25, 12), BERLIN)
    assert d.expires_at(o, BERLIN) == local(BERLIN, 2026, 10, 26) + YEAR


def test_ordinals_cover_the_window():
    p = Period(15, 10800)
    assert p.ordinals(0, 30, UTC) == range(0, 3)
    assert p.ordinals(0, 29.9, UTC) == range(0, 2)
    assert p.ordinals(20, 20, UTC) == range(1, 2)
    assert list(p.ordinals(-16, 0, UTC)) == [-2, -1, 0]
    d = Period(DAY, YEAR)
    since = local(BERLIN, 2026, 3, 28, 12)
    until = local(BERLIN, 2026, 3, 30, 1)
    r = d.ordinals(since, until, BERLIN)
    assert len(r) == 3
    assert d.start(r[0], BERLIN) == local(BERLIN, 2026, 3, 28)


def test_keeps_boundary():
    p = Period(15, 10800)
    ts = 1000.0  # bucket 66: [990, 1005)
    expires = p.expires_at(p.ordinal(ts, UTC), UTC)
    assert expires == 1005 + 10800
    assert p.keeps(ts, expires - 1, UTC)
    assert not p.keeps(ts, expires, UTC)
    assert p.keeps(ts, ts, UTC)


def test_keeps_a_day_bucket_for_a_year_after_the_local_day_ends():
    d = Period(DAY, YEAR)
    ts = local(NEW_YORK, 2026, 3, 8, 10)
    end = local(NEW_YORK, 2026, 3, 9)
    assert d.keeps(ts, end + YEAR - 1, NEW_YORK)
    assert not d.keeps(ts, end + YEAR, NEW_YORK)


# -- hypothesis: bucket invariants ----------------------------------------------------------

PERIODS = [
    Period(1, 60),
    Period(15, 10800),
    Period(60, DAY),
    Period(HOUR, WEEK),
    Period(90000, 900000),
    Period(DAY, YEAR),
    Period(2 * DAY, YEAR),
    Period(WEEK, YEAR),
    Period(2 * WEEK, YEAR),
]
ZONES = [UTC, BERLIN, NEW_YORK, ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe")]

periods_st = st.sampled_from(PERIODS)
zones_st = st.sampled_from(ZONES)
# 1906 .. 2096, as whole seconds and at microsecond resolution (what datetime holds; see
# test_sub_day_bucket_holds_any_float_timestamp for arbitrary floats).
timestamps = st.one_of(
    st.integers(min_value=-2 * 10**9, max_value=4 * 10**9),
    st.integers(min_value=-2 * 10**15, max_value=4 * 10**15).map(lambda us: us / 10**6),
)


@settings(max_examples=300, deadline=None)
@given(periods_st, zones_st, timestamps)
def test_bucket_holds_its_timestamp(p, tz, ts):
    o = p.ordinal(ts, tz)
    assert isinstance(o, int)
    assert p.start(o, tz) <= ts < p.start(o + 1, tz)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([p for p in PERIODS if not p.daily]),
    zones_st,
    # Subnormals excluded: -5e-324 / 15 underflows to -0.0 (bucket 0 although ts < 0).
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_subnormal=False),
)
def test_sub_day_bucket_holds_any_float_timestamp(p, tz, ts):
    o = p.ordinal(ts, tz)
    assert p.start(o, tz) <= ts < p.start(o + 1, tz)


@settings(max_examples=200, deadline=None)
@given(periods_st, zones_st, timestamps, timestamps)
def test_ordinal_is_monotonic(p, tz, a, b):
    a, b = min(a, b), max(a, b)
    assert p.ordinal(a, tz) <= p.ordinal(b, tz)
    assert len(p.ordinals(a, b, tz)) == p.ordinal(b, tz) - p.ordinal(a, tz) + 1


@settings(max_examples=200, deadline=None)
@given(periods_st, zones_st, st.integers(min_value=-20000, max_value=40000))
def test_start_is_strictly_increasing_and_round_trips(p, tz, day):
    # ``day`` is scaled so that every period's ordinal stays within 1915 .. 2079.
    o = day * DAY // p.interval // 2
    assert p.start(o, tz) < p.start(o + 1, tz)
    assert p.ordinal(p.start(o, tz), tz) == o
    if p.daily:
        moment = datetime.fromtimestamp(p.start(o, tz), tz)
        assert (moment.hour, moment.minute, moment.second) == (0, 0, 0)
        length = p.start(o + 1, tz) - p.start(o, tz)
        # Days are 24h give or take a daylight-saving shift (at most an hour here).
        assert abs(length - p.interval) <= 3600


@settings(max_examples=100, deadline=None)
@given(periods_st, zones_st, timestamps)
def test_keeps_matches_expires_at(p, tz, ts):
    expires = p.expires_at(p.ordinal(ts, tz), tz)
    assert expires >= ts + p.retention
    assert p.keeps(ts, expires - 1, tz)
    assert not p.keeps(ts, expires, tz)


# -- parse_period / parse_periods --------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, interval, retention, label",
    [
        ("15s:3h", 15, 10800, None),
        (" 1h : 7d ", 3600, 604800, None),
        ((15, 10800), 15, 10800, None),
        ([3600, "7d"], 3600, 604800, None),
        ((86400, 31536000, "daily"), 86400, 31536000, "daily"),
    ],
)
def test_parse_period(spec, interval, retention, label):
    p = parse_period(spec)
    assert (p.interval, p.retention, p.label) == (interval, retention, label)


def test_parse_period_passes_a_period_through():
    p = Period(15, 10800, "x")
    assert parse_period(p) is p


@pytest.mark.parametrize(
    "spec", ["15s", "", "abc:def", "0s:3h", "1h:15s", "15s:", (15,), (1, 2, 3, 4), ("x", 10)]
)
def test_parse_period_rejects(spec):
    with pytest.raises(ConfigurationError):
        parse_period(spec)


def test_parse_periods_from_string_and_list():
    periods = parse_periods("15s:3h,1h:7d,1d:1y")
    assert [p.name for p in periods] == ["15s:3h", "1h:7d", "1d:1y"]
    assert parse_periods([(15, 10800), (3600, 604800)]) == (Period(15, 10800), Period(3600, 604800))
    assert [p.name for p in parse_periods(" 15s:3h , ,1h:7d,")] == ["15s:3h", "1h:7d"]
    assert isinstance(parse_periods("15s:3h"), tuple)


@pytest.mark.parametrize("spec", ["", " , ", [], "15s:3h,15s:10800", [(15, 10800), "15s:3h"]])
def test_parse_periods_rejects(spec):
    with pytest.raises(ConfigurationError):
        parse_periods(spec)


def test_parse_periods_allows_same_interval_with_other_retention():
    periods = parse_periods("1h:1d,1h:7d")
    assert len(periods) == 2


# -- find_period -----------------------------------------------------------------------------

CONFIGURED = (
    Period(15, 10800),
    Period(3600, WEEK, "hourly"),
    Period(DAY, YEAR),
    Period(DAY, 30 * DAY),
)


@pytest.mark.parametrize(
    "spec, index",
    [
        (None, 0),
        ("", 0),
        ("15s:3h", 0),
        ("hourly", 1),
        ("1h:7d", 1),
        ("60m:168h", 1),
        ((3600, WEEK), 1),
        ("1d:1y", 2),
        ("1d:30d", 3),
        ("15s", 0),
        ("1h", 1),
        (3600, 1),
        (Period(3600, WEEK), 1),
    ],
)
def test_find_period(spec, index):
    assert find_period(CONFIGURED, spec) is CONFIGURED[index]


def test_find_period_with_a_configured_period_object():
    assert find_period(CONFIGURED, CONFIGURED[2]) is CONFIGURED[2]


@pytest.mark.parametrize("spec", ["1d", "5m", "1h:1d", "nonsense", "x:y", (1, 2, 3, 4), 7])
def test_find_period_unknown_is_a_bad_request(spec):
    with pytest.raises(BadRequest) as info:
        find_period(CONFIGURED, spec)
    assert info.value.param == "period"
    assert "15s:3h" in str(info.value)  # lists what is configured


def test_ordinal_of_a_timestamp_one_microsecond_before_midnight():
    d = Period(DAY, YEAR)
    midnight = local(BERLIN, 2026, 10, 26)
    before = (datetime.fromtimestamp(midnight, BERLIN) - timedelta(microseconds=1)).timestamp()
    assert d.ordinal(before, BERLIN) + 1 == d.ordinal(midnight, BERLIN)
