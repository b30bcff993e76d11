"""Unit tests for hailwhale.windows: parsing times and resolving query windows (no Redis)."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hailwhale.errors import BadRequest
from hailwhale.periods import Period
from hailwhale.windows import parse_time, resolve

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
P15 = Period(15, 10800)
P1H = Period(3600, 7 * 86400)
P1D = Period(86400, 365 * 86400)


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


# -- parse_time -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-86400, -1, 1e16, "0001-01-01T00:00:00Z"])
def test_parse_time_refuses_times_outside_1970_to_9999(value):
    with pytest.raises(BadRequest, match="between 1970 and 9999"):
        parse_time(value, UTC, "since")


@pytest.mark.parametrize(
    "value, expected",
    [
        (1700000000, 1700000000.0),
        (1700000000.25, 1700000000.25),
        ("1700000000", 1700000000.0),
        (" 1700000000.5 ", 1700000000.5),
        (0, 0.0),
        (1e11, 1e11),  # the last value still taken as seconds
        (1700000000123, 1700000000.123),  # milliseconds, as JavaScript gives them
        ("1700000000123", 1700000000.123),
        (1e11 + 1000, 1e8 + 1),
    ],
)
def test_parse_time_numbers(value, expected):
    result = parse_time(value, UTC, "since")
    assert result == pytest.approx(expected, abs=1e-6)
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value, tz, expected",
    [
        ("2026-03-29T12:00:00Z", BERLIN, utc(2026, 3, 29, 12)),
        ("2026-03-29T12:00:00+00:00", NEW_YORK, utc(2026, 3, 29, 12)),
        ("2026-03-29T12:00:00+02:00", UTC, utc(2026, 3, 29, 10)),
        ("2026-03-29T12:00:00-05:00", BERLIN, utc(2026, 3, 29, 17)),
        ("2026-03-29T12:00:00.250Z", UTC, utc(2026, 3, 29, 12) + 0.25),
        # No zone: the configured one, with its daylight-saving rules.
        ("2026-03-29T12:00:00", BERLIN, utc(2026, 3, 29, 10)),  # CEST
        ("2026-03-28T12:00:00", BERLIN, utc(2026, 3, 28, 11)),  # CET
        ("2026-03-29T12:00:00", NEW_YORK, utc(2026, 3, 29, 16)),  # EDT
        ("2026-01-15T12:00:00", NEW_YORK, utc(2026, 1, 15, 17)),  # EST
        ("2026-03-29T12:00:00", UTC, utc(2026, 3, 29, 12)),
        ("2026-01-15", BERLIN, utc(2026, 1, 14, 23)),  # a date: local midnight
        ("2026-01-15 12:00", UTC, utc(2026, 1, 15, 12)),
    ],
)
def test_parse_time_iso(value, tz, expected):
    assert parse_time(value, tz, "at") == expected


@pytest.mark.parametrize(
    "value",
    ["", "tomorrow", "2026-13-01", "2026-03-29T25:00", "12:00", "nan", "inf", "-inf",
     float("nan"), float("inf"), True, False, None, [1]],
)
def test_parse_time_rejects(value):
    with pytest.raises(BadRequest) as info:
        parse_time(value, UTC, "until")
    assert info.value.param == "until"


def test_parse_time_error_quotes_the_input():
    with pytest.raises(BadRequest) as info:
        parse_time("next tuesday", UTC, "since")
    assert '"next tuesday"' in str(info.value)
    assert str(info.value).startswith("since: ")


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=4_000_000_000))
def test_parse_time_seconds_milliseconds_and_iso_agree(seconds):
    iso = datetime.fromtimestamp(seconds, timezone.utc).isoformat()
    assert parse_time(seconds, BERLIN, "at") == seconds
    if seconds * 1000 > 1e11:  # milliseconds from March 1973 on
        assert parse_time(seconds * 1000, BERLIN, "at") == seconds
    else:  # before that, a number this small is seconds
        assert parse_time(seconds * 1000, BERLIN, "at") == seconds * 1000
    assert parse_time(str(seconds), BERLIN, "at") == seconds
    assert parse_time(iso, BERLIN, "at") == seconds
    assert parse_time(iso.replace("+00:00", "Z"), NEW_YORK, "at") == seconds


# -- resolve -----------------------------------------------------------------------------------

NOW = utc(2026, 3, 29, 10, 0, 7)  # 12:00:07 CEST in Berlin, 06:00:07 EDT in New York


def test_default_window_is_the_whole_retention_ending_now():
    assert resolve(P15, None, None, NOW, UTC, 5000) == (NOW - 10800 + 15, NOW)
    assert resolve(P1H, "", "", NOW, UTC, 5000) == (NOW - 7 * 86400 + 3600, NOW)
    since, until = resolve(P15, None, None, NOW, UTC, 5000)
    # Exactly the retention's worth of buckets (plus the partial one at the start).
    assert len(P15.ordinals(since, until, UTC)) in (P15.slots, P15.slots + 1)


def test_default_window_ends_at_until():
    until = NOW - 3600
    assert resolve(P15, None, until, NOW, UTC, 5000) == (until - 10800 + 15, until)


@pytest.mark.parametrize(
    "since, seconds",
    [("24h", 86400), ("7d", 7 * 86400), ("90m", 5400), ("30s", 30), ("1w", 7 * 86400),
     (" 2H ", 7200)],
)
def test_durations_back_from_now(since, seconds):
    assert resolve(P1H, since, None, NOW, UTC, 5000) == (NOW - seconds, NOW)


def test_duration_until():
    assert resolve(P1H, "7d", "1d", NOW, UTC, 5000) == (NOW - 7 * 86400, NOW - 86400)


def test_now():
    assert resolve(P15, "now", None, NOW, UTC, 5000) == (NOW, NOW)
    assert resolve(P15, "1h", "now", NOW, UTC, 5000) == (NOW - 3600, NOW)
    assert resolve(P15, "1h", "NOW", NOW, UTC, 5000) == (NOW - 3600, NOW)


@pytest.mark.parametrize(
    "tz, midnight",
    [
        (UTC, utc(2026, 3, 29)),
        (BERLIN, utc(2026, 3, 28, 23)),  # the day began in winter time (CET)
        (NEW_YORK, utc(2026, 3, 29, 4)),  # EDT
    ],
)
def test_today(tz, midnight):
    assert resolve(P15, "today", None, NOW, tz, 5000) == (midnight, NOW)
    assert resolve(P15, " Today ", None, NOW, tz, 5000) == (midnight, NOW)


@pytest.mark.parametrize(
    "tz, start, end",
    [
        (UTC, utc(2026, 3, 28), utc(2026, 3, 29)),
        (BERLIN, utc(2026, 3, 27, 23), utc(2026, 3, 28, 23)),
        (NEW_YORK, utc(2026, 3, 28, 4), utc(2026, 3, 29, 4)),
    ],
)
def test_yesterday(tz, start, end):
    since, until = resolve(P1H, "yesterday", None, NOW, tz, 5000)
    assert since == start
    assert until == pytest.approx(end - 0.001)
    assert until < end
    # The window covers exactly yesterday's 24 hour buckets.
    assert len(P1H.ordinals(since, until, tz)) == 24
    assert len(P1D.ordinals(since, until, tz)) == 1


def test_yesterday_across_the_short_day():
    now = utc(2026, 3, 30, 10)  # Monday; Sunday 2026-03-29 had 23 hours in Berlin
    since, until = resolve(P1H, "yesterday", None, now, BERLIN, 5000)
    assert since == utc(2026, 3, 28, 23)
    assert until == pytest.approx(utc(2026, 3, 29, 22) - 0.001)
    assert len(P1H.ordinals(since, until, BERLIN)) == 23


def test_yesterday_with_an_explicit_until():
    assert resolve(P1H, "yesterday", "now", NOW, UTC, 5000) == (utc(2026, 3, 28), NOW)


@pytest.mark.parametrize(
    "name, tz, start",
    [
        ("mtd", UTC, utc(2026, 3, 1)),
        ("mtd", BERLIN, utc(2026, 2, 28, 23)),
        ("mtd", NEW_YORK, utc(2026, 3, 1, 5)),  # still EST on March 1st
        ("ytd", UTC, utc(2026, 1, 1)),
        ("ytd", BERLIN, utc(2025, 12, 31, 23)),
        ("ytd", NEW_YORK, utc(2026, 1, 1, 5)),
    ],
)
def test_month_and_year_to_date(name, tz, start):
    assert resolve(P1D, name, None, NOW, tz, 5000) == (start, NOW)
    assert resolve(P1D, name.upper(), None, NOW, tz, 5000) == (start, NOW)


def test_names_use_the_local_date_not_the_utc_date():
    # 23:30 UTC on March 31st is already April 1st in Berlin: month to date is one day old.
    now = utc(2026, 3, 31, 23, 30)
    assert resolve(P1D, "mtd", None, now, BERLIN, 5000) == (utc(2026, 3, 31, 22), now)
    assert resolve(P1D, "mtd", None, now, UTC, 5000) == (utc(2026, 3, 1), now)


def test_absolute_since_and_until():
    since, until = "2026-03-29T00:00:00", "2026-03-29T06:00:00"
    assert resolve(P1H, since, until, NOW, BERLIN, 5000) == (
        utc(2026, 3, 28, 23), utc(2026, 3, 29, 4)
    )
    ms = int(utc(2026, 3, 29) * 1000)
    assert resolve(P1H, ms, ms + 3_600_000, NOW, UTC, 5000) == (
        utc(2026, 3, 29), utc(2026, 3, 29, 1)
    )


def test_since_after_until_is_a_bad_request():
    with pytest.raises(BadRequest) as info:
        resolve(P15, "now", "1h", NOW, UTC, 5000)
    assert info.value.param == "since"
    assert "after until" in str(info.value)
    with pytest.raises(BadRequest):
        resolve(P15, NOW + 1, NOW, NOW, UTC, 5000)


def test_since_equal_to_until_is_one_bucket():
    since, until = resolve(P15, NOW, NOW, NOW, UTC, 5000)
    assert since == until == NOW


def test_too_many_buckets_is_a_bad_request():
    with pytest.raises(BadRequest) as info:
        resolve(P15, "1d", None, NOW, UTC, 5000)  # 5761 buckets of 15s
    assert info.value.param == "since"
    assert info.value.value == "1d"
    assert "5761 buckets" in str(info.value)
    assert "at most 5000" in str(info.value)


def test_bucket_limit_boundary():
    start = 15 * 1000
    assert resolve(P15, start, start + 15 * 99, NOW, UTC, 100) == (start, start + 15 * 99)
    with pytest.raises(BadRequest):
        resolve(P15, start, start + 15 * 100, NOW, UTC, 100)


def test_default_window_counts_against_the_limit():
    with pytest.raises(BadRequest):
        resolve(P15, None, None, NOW, UTC, 100)


@pytest.mark.parametrize("value", ["tomorrow", "1x", "h", "2026-02-30"])
def test_unparseable_since_and_until(value):
    with pytest.raises(BadRequest) as info:
        resolve(P1H, value, None, NOW, UTC, 5000)
    assert info.value.param == "since"
    with pytest.raises(BadRequest) as info:
        resolve(P1H, "1h", value, NOW, UTC, 5000)
    assert info.value.param == "until"


# -- regressions found by review ------------------------------------------------------------


@pytest.mark.parametrize("since", ["0h", "99999999999999y", "-1e300", "1e300"])
def test_absurd_windows_are_refused_not_crashed(since):
    with pytest.raises(BadRequest) as caught:
        resolve(Period(86400, 365 * 86400), since, None, 1_800_000_000, UTC, 5000)
    assert caught.value.param == "since"
