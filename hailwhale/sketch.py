"""Timings (or any distribution) as mergeable sketches: pure, no Redis.

A distribution is kept per bucket and series as counts in logarithmic bins, as DDSketch does
(Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees", VLDB 2019): a positive value ``v`` falls in the bin
``ceil(log(v) / log(GAMMA))``, which holds the values of ``(GAMMA**(i-1), GAMMA**i]``, and
every value of a bin is answered as ``2 * GAMMA**i / (GAMMA + 1)``, within RELATIVE_ERROR
(1%) of any of them. Negative values have bins of their own, mirrored; values within
ZERO of 0 count in one bin. Two sketches merge by adding their bins' counts, which is what
makes "p99 over a week, for the EU only" exact up to that 1%: a window's buckets and a
dimension's children are merged at read time, never averaged.

Beside the bins a sketch keeps the exact sum (in billionths, as summed metrics are) and the
exact minimum and maximum, so ``count``, ``sum``, ``mean``, ``min`` and ``max`` are exact, and
a quantile is never answered outside ``[min, max]``.

In the store a sketch is one hash per series, metric, period and bucket: a field per bin
(``bin_field``), the sum's whole units and billionths (SUM_FIELD, keys.FRACTION appended),
and MIN_FIELD, MAX_FIELD.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .numbers import NANO, from_nanos

RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
# Values this close to 0 count as 0 (no log bin can hold them; far below any timing).
ZERO = 1e-9
ZERO_FIELD = "z"
SUM_FIELD = "s"
MIN_FIELD, MAX_FIELD = "<", ">"
_NEGATIVE = "n"

# The statistics a distribution answers: ``latency:p99``, ``latency:mean`` ...
STATS = ("count", "sum", "mean", "min", "max")
_PERCENTILE = re.compile(r"p(\d{1,4})")


def bin_field(value: float) -> str:
    """The field of the bin ``value`` counts in."""
    if -ZERO <= value <= ZERO:
        return ZERO_FIELD
    index = math.ceil(math.log(abs(value)) / _LOG_GAMMA)
    return str(index) if value > 0 else f"{_NEGATIVE}{index}"


def _bin_value(fieldname: str) -> float:
    """What every value of a bin is answered as."""
    if fieldname == ZERO_FIELD:
        return 0.0
    negative = fieldname.startswith(_NEGATIVE)
    index = int(fieldname[1:] if negative else fieldname)
    value = 2 * GAMMA ** index / (GAMMA + 1)
    return -value if negative else value


def _order(fieldname: str) -> tuple[int, int]:
    """Bins in the order of their values: negatives (largest magnitude first), 0, positives."""
    if fieldname == ZERO_FIELD:
        return (0, 0)
    if fieldname.startswith(_NEGATIVE):
        return (-1, -int(fieldname[1:]))
    return (1, int(fieldname))


def quantile_of(text: str) -> float | None:
    """The quantile a percentile statistic names: ``p50`` 0.5, ``p99`` 0.99, ``p999`` 0.999
    (three or more digits are the decimals after "0.", as p999 is commonly written), ``p0``
    the minimum and ``p100`` the maximum; None for anything else."""
    match = _PERCENTILE.fullmatch(text)
    if not match:
        return None
    digits = match.group(1)
    if len(digits) <= 2 or digits == "100":
        return int(digits) / 100
    return float("0." + digits)


def is_stat(text: str) -> bool:
    """Whether ``text`` names a statistic of a distribution."""
    return text in STATS or quantile_of(text) is not None


@dataclass
class Sketch:
    """One distribution: bin counts, the exact sum in billionths, min and max."""

    bins: dict[str, int] = field(default_factory=dict)
    nanos: int = 0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def of(cls, values: Iterable[float], nanos: int) -> Sketch:
        """The sketch of ``values``, whose exact sum is ``nanos`` billionths."""
        sketch = cls(nanos=nanos)
        for value in values:
            name = bin_field(value)
            sketch.bins[name] = sketch.bins.get(name, 0) + 1
            sketch.low = min(sketch.low, value)
            sketch.high = max(sketch.high, value)
        return sketch

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Sketch:
        """A sketch as the store holds it: a bucket's hash, field -> value."""
        sketch = cls()
        for name, value in fields.items():
            if name == MIN_FIELD:
                sketch.low = float(value)
            elif name == MAX_FIELD:
                sketch.high = float(value)
            elif name == SUM_FIELD:
                sketch.nanos += int(value) * NANO
            elif name.startswith(SUM_FIELD):  # the sum's billionths (keys.FRACTION appended)
                sketch.nanos += int(value)
            elif int(value):
                sketch.bins[name] = sketch.bins.get(name, 0) + int(value)
        return sketch

    def merge(self, other: Sketch) -> Sketch:
        """Add ``other`` into this sketch (and return it)."""
        for name, count in other.bins.items():
            self.bins[name] = self.bins.get(name, 0) + count
        self.nanos += other.nanos
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        return self

    @property
    def count(self) -> int:
        """How many values the sketch holds."""
        return sum(self.bins.values())

    def quantile(self, q: float) -> float | None:
        """The value at rank ``floor(q * (count - 1))`` of the sorted values, within
        RELATIVE_ERROR; None for an empty sketch."""
        total = self.count
        if not total:
            return None
        if q <= 0:
            return self.low
        if q >= 1:
            return self.high
        rank = math.floor(q * (total - 1))
        seen = 0
        for name in sorted(self.bins, key=_order):
            seen += self.bins[name]
            if seen > rank:
                return min(max(_bin_value(name), self.low), self.high)
        return self.high

    def stat(self, name: str) -> int | float | None:
        """One statistic (``count``, ``sum``, ``mean``, ``min``, ``max``, ``p50`` ...); None
        where an empty sketch has none (mean, min, max, percentiles): a gap on a graph."""
        total = self.count
        if name == "count":
            return total
        if name == "sum":
            return from_nanos(self.nanos)
        if not total:
            return None
        if name == "mean":
            return from_nanos(self.nanos) / total
        if name == "min":
            return self.low
        if name == "max":
            return self.high
        q = quantile_of(name)
        if q is None:
            raise ValueError(f"not a statistic: {name!r}")
        return self.quantile(q)
