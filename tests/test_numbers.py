"""Unit tests for hailwhale.numbers: exact metric arithmetic in billionths (no Redis)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hailwhale.numbers import MAX_VALUE, NANO, from_nanos, split, to_nanos


def test_nano_is_a_billionth():
    assert NANO == 10**9


@pytest.mark.parametrize(
    "value, nanos",
    [
        (0, 0),
        (1, 10**9),
        (-2000, -2000 * 10**9),
        (10**12, 10**21),
        (0.1, 10**8),
        (-0.1, -(10**8)),
        (0.3, 3 * 10**8),
        (19.99, 19_990_000_000),
        (1.0, 10**9),
        (-0.0, 0),
        (1e-9, 1),
        (123456.789012345, 123_456_789_012_345),
        (1e-10, 0),  # below a billionth: rounded away
        (1.5e-9, 2),  # half to even
        (2.5e-9, 2),
        (-1.5e-9, -2),
    ],
)
def test_to_nanos(value, nanos):
    result = to_nanos(value)
    assert result == nanos
    assert isinstance(result, int)


def test_to_nanos_is_exact_for_big_ints():
    big = 9_007_199_254_740_993  # 2**53 + 1: not a float
    assert to_nanos(big) == big * NANO


@pytest.mark.parametrize(
    "nanos, value",
    [
        (0, 0),
        (10**9, 1),
        (-3 * 10**9, -3),
        (10**8, 0.1),
        (-(10**8), -0.1),
        (1, 1e-9),
        (19_990_000_000, 19.99),
        (10**21, 10**12),
    ],
)
def test_from_nanos(nanos, value):
    result = from_nanos(nanos)
    assert result == value
    assert isinstance(result, type(value))


def test_a_million_tenths_add_up_exactly():
    tenth = to_nanos(0.1)
    assert tenth == 10**8
    total = sum(tenth for _ in range(1_000_000))
    result = from_nanos(total)
    assert result == 100000
    assert isinstance(result, int)
    # What plain float additions (HINCRBYFLOAT) would have given instead:
    drifting = 0.0
    for _ in range(1_000_000):
        drifting += 0.1
    assert drifting != 100000


def test_mixed_signs_cancel_exactly():
    total = to_nanos(19.99) + to_nanos(-19.99) + to_nanos(0.01) * 3 - to_nanos(0.03)
    assert total == 0
    assert from_nanos(total) == 0


@pytest.mark.parametrize(
    "nanos, parts",
    [
        (0, (0, 0)),
        (10**9, (1, 0)),
        (1_500_000_000, (1, 500_000_000)),
        (10**8, (0, 10**8)),
        (-(10**8), (-1, 900_000_000)),
        (-1, (-1, 999_999_999)),
        (-(10**9), (-1, 0)),
    ],
)
def test_split(nanos, parts):
    assert split(nanos) == parts


@settings(max_examples=200)
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_split_invariants(nanos):
    whole, fraction = split(nanos)
    assert whole * NANO + fraction == nanos
    assert 0 <= fraction < NANO


@settings(max_examples=200)
@given(st.integers(min_value=-MAX_VALUE * 10**6, max_value=MAX_VALUE * 10**6))
def test_ints_round_trip_exactly(value):
    nanos = to_nanos(value)
    assert nanos == value * NANO
    back = from_nanos(nanos)
    assert back == value
    assert isinstance(back, int)


@settings(max_examples=200)
@given(st.decimals(min_value=-MAX_VALUE, max_value=MAX_VALUE, places=3))
def test_short_decimals_are_exact(d):
    # A float whose shortest spelling has few decimals is taken at exactly that value.
    value = float(d)
    assert to_nanos(value) == int(d.scaleb(9))
    assert from_nanos(to_nanos(value)) == value


@settings(max_examples=100)
@given(st.lists(st.decimals(min_value=-1000, max_value=1000, places=2), max_size=50))
def test_sums_do_not_drift(ds):
    total = sum(to_nanos(float(d)) for d in ds)
    assert total == int(sum(ds, Decimal(0)).scaleb(9))
    assert from_nanos(total) == float(sum(ds, Decimal(0)))


@settings(max_examples=200)
@given(st.floats(min_value=-MAX_VALUE, max_value=MAX_VALUE, allow_nan=False))
def test_any_float_is_kept_to_a_billionth(value):
    nanos = to_nanos(value)
    assert isinstance(nanos, int)
    back = from_nanos(nanos)
    assert abs(back - value) <= 5e-10 + 2 * math.ulp(value)
    if value == int(value):
        assert back == int(value)
        assert isinstance(back, int)


@settings(max_examples=200)
@given(st.integers(min_value=-(10**24), max_value=10**24))
def test_from_nanos_is_the_nearest_number(nanos):
    value = from_nanos(nanos)
    if nanos % NANO == 0:
        assert isinstance(value, int)
        assert value == nanos // NANO
    else:
        assert isinstance(value, float)
        assert value == float(Decimal(nanos) / NANO)
        whole, fraction = split(nanos)
        assert value == pytest.approx(whole + fraction / NANO, rel=1e-15)
