"""Exact metric arithmetic: pure functions, no Redis.

Metric values are added as integers of billionths ("nanos"). Integers stay exact at any size
Redis holds; floats are taken at their shortest decimal spelling (``0.1`` is exactly one tenth)
and kept to nine decimal places, so a million events of 0.10 add up to exactly 100000, with
none of the drift that repeated binary floating-point additions (HINCRBYFLOAT) show.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANO = 10**9
# The largest magnitude one event may carry; far below the 9.2e18 an int64 counter holds, so
# sums over many events stay exact.
MAX_VALUE = 10**12
_NANO_EXPONENT = Decimal(1).scaleb(-9)
_TENS = [10**n for n in range(10)]


def to_nanos(value: int | float) -> int:
    """``value`` in billionths, exactly for ints and for floats' shortest decimal spelling."""
    if isinstance(value, int):
        return value * NANO
    # Fast path, exact: a spelling such as "-12.25" with at most 9 decimals is read as digits
    # (no binary multiplication, so no rounding); anything else (exponents, more decimals)
    # takes the Decimal path.
    text = repr(value)
    whole, dot, decimals = text.partition(".")
    if dot and len(decimals) <= 9 and decimals.isdigit() and whole.lstrip("-").isdigit():
        return int(whole + decimals) * _TENS[9 - len(decimals)]
    exact = Decimal(text).quantize(_NANO_EXPONENT, rounding=ROUND_HALF_EVEN)
    return int(exact.scaleb(9))


def from_nanos(nanos: int) -> int | float:
    """The number that ``nanos`` billionths make: an int when whole."""
    whole, fraction = divmod(nanos, NANO)
    if not fraction:
        return whole
    return float(Decimal(nanos).scaleb(-9))


def split(nanos: int) -> tuple[int, int]:
    """``(whole units, billionths 0..NANO-1)`` stored in a bucket's two fields."""
    return divmod(nanos, NANO)
