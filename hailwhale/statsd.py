"""The StatsD line protocol, as Hail takes it: a packet's lines as checked events.

A line is ``name:value|type[|@rate][|#tag:value,tag][|Ttimestamp]`` (StatsD, with
DogStatsD's tags and timestamp); a packet holds one line or several, newline separated. A
dotted name is a dimension path and its metric: ``shop.checkout.paid:1|c`` counts ``paid``
into ``["shop", "checkout"]`` and every prefix of it, and each tag is a branch of its own
(``#country:uk`` counts into ``["country", "uk"]`` as well). Every line also counts
``hits: 1``, as every event does.

Types: ``c`` (a counter; ``@rate`` scales it up: ``3|c|@0.1`` counts 30), ``s`` (a set: the
value is a member, counted as a unique of the metric), ``g`` (a gauge: ``5|g`` sets it, ``+3|g``
and ``-3|g`` move it, as StatsD has it), ``ms``, ``h`` and DogStatsD's ``d`` (timings: samples
of a distribution; several a line as ``12:15:9|ms``, as DogStatsD packs them; a sample rate
leaves them as they are, since percentiles do not change under uniform sampling).

Pure: no sockets here (hail/statsd.py listens), so every rule is testable alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from . import wire
from .config import Settings
from .errors import BadRequest
from .event import DELTA, GAUGE, TIMING, UNIQUE, Event, event_of

# A StatsD metric name's last part becomes a HailWhale metric name (letters, digits and _,
# not starting with a digit): other characters become _, as the StatsD daemon sanitizes
# names for Graphite, and a leading digit gets a _ before it.
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
MAX_LINE = 8192  # characters; a longer line is refused, the rest of the packet counts
_TYPES = {"c", "s", "g", "ms", "h", "d"}
_TIMINGS = {"ms", "h", "d"}


@dataclass(frozen=True)
class Refused:
    """A line that cannot be counted, and why."""

    line: str
    reason: str


def metric_name(part: str) -> str:
    """The HailWhale metric name a StatsD name's last part is counted as."""
    name = _NOT_NAME.sub("_", part)
    return f"_{name}" if name[:1].isdigit() else name


def parse_packet(data: bytes | str, settings: Settings, now: float,
                 pk: str = "") -> tuple[list[Event], list[Refused]]:
    """The events of a packet's lines and the lines refused (each alone: the rest of the
    packet counts)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    events: list[Event] = []
    refused: list[Refused] = []
    for line in _lines(text.split("\n")):
        try:
            events.append(parse_line(line, settings, now, pk))
        except BadRequest as exc:
            refused.append(Refused(line[:200], str(exc)))
    return events, refused


def _lines(lines: Iterable[str]) -> Iterable[str]:
    """The lines that say something: a CR before the newline dropped, blank ones skipped."""
    for line in lines:
        line = line.rstrip("\r")
        if line.strip():
            yield line


def parse_line(line: str, settings: Settings, now: float, pk: str = "") -> Event:
    """One StatsD line as a checked event; BadRequest (its param ``statsd``) says why not."""
    if len(line) > MAX_LINE:
        raise BadRequest("statsd", line[:120], f"a line is at most {MAX_LINE} characters")
    name, colon, rest = line.partition(":")
    sections = rest.split("|")
    if not colon or len(sections) < 2 or not name:
        raise BadRequest("statsd", line, "a StatsD line is name:value|type")
    value, kind = sections[0], sections[1]
    if kind not in _TYPES:
        raise BadRequest("statsd", line, f"unknown type {kind!r}: c, s, g, ms, h or d")
    rate, tags, at = 1.0, [], None
    for section in sections[2:]:
        if section.startswith("@"):
            rate = _number(section[1:], line, "a sample rate")
            if not 0 < rate <= 1:
                raise BadRequest("statsd", line, "a sample rate is above 0 and at most 1")
        elif section.startswith("#"):
            tags = [tag for tag in section[1:].split(",") if tag]
        elif section.startswith("T"):
            at = _number(section[1:], line, "a timestamp")
        elif section.startswith("c:"):
            pass  # DogStatsD's container id: nothing to count by
        else:
            raise BadRequest("statsd", line, f"unknown section {section[:40]!r}")
    parts = name.split(".")
    if any(not part.strip() for part in parts):
        raise BadRequest("statsd", line, "a name's dotted parts cannot be empty")
    metric = metric_name(parts[-1])
    branches = [parts[:-1], *(tag.split(":", 1) for tag in tags)]
    if kind == "c":
        # Billionths are what a float metric keeps (hailwhale.numbers): 3|c|@0.1 is 30,
        # not 30.000000000000004.
        amount = round(_number(value, line, "a counter's value") / rate, 9)
        if amount.is_integer() and abs(amount) < 2**53:
            amount = int(amount)
        return event_of(branches, {metric: amount}, settings, now, pk=pk, at=at)
    if kind == "g":
        level = _number(value, line, "a gauge's value")
        how = DELTA if value[:1] in "+-" else GAUGE
        return event_of(branches, {metric: {how: level}}, settings, now, pk=pk, at=at)
    if kind in _TIMINGS:
        samples = [_number(sample, line, "a timing's value") for sample in value.split(":")]
        return event_of(branches, {metric: {TIMING: samples}}, settings, now, pk=pk, at=at)
    if not value:
        raise BadRequest("statsd", line, "a set's value is the member to count")
    return event_of(branches, {metric: UNIQUE}, settings, now, pk=pk, uid=value, at=at)


class Encoder:
    """A listener's lines straight to wire lines (hailwhale.wire), as ``parse_line`` and
    ``wire.encode`` make them. StatsD clients send the same few lines over and over, so the
    encoding of each short line without a timestamp is remembered (4,096 of them at most,
    what does not depend on the time: everything but ``received`` and ``at``): measured, 14
    us a line parsed and encoded, about 1 remembered."""

    CACHED = 512  # characters: a longer line is never remembered, so the cache stays small

    def __init__(self, settings: Settings, pk: str = ""):
        self.settings, self.pk = settings, pk
        self._tail = lru_cache(maxsize=4096)(self._encode_tail)

    def encode(self, lines: Iterable[str], now: float) -> tuple[list[str], list[Refused]]:
        """``(wire lines, refused lines)`` of ``lines`` received at ``now``."""
        received = repr(float(now))
        out: list[str] = []
        refused: list[Refused] = []
        for line in _lines(lines):
            if len(line) <= self.CACHED and "|T" not in line:
                tail = self._tail(line)
                if isinstance(tail, Refused):
                    refused.append(tail)
                else:
                    out.append(f"{tail[0]}\t{received}\t{tail[1]}\t{received}\t{tail[2]}")
                continue
            try:
                out.append(wire.encode(parse_line(line, self.settings, now, self.pk), now))
            except BadRequest as exc:
                refused.append(Refused(line[:200], str(exc)))
        return out, refused

    def _encode_tail(self, line: str) -> tuple[str, str, str] | Refused:
        """The wire fields of a line without a timestamp around its time: ``(version, pk,
        uid and the rest)``; or why it is refused (that does not depend on the time
        either)."""
        try:
            event = parse_line(line, self.settings, 0.0, self.pk)
        except BadRequest as exc:
            return Refused(line[:200], str(exc))
        fields = wire.encode(event, 0.0).split("\t")
        return fields[0], fields[2], "\t".join(fields[4:])


def _number(text: str, line: str, what: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise BadRequest("statsd", line, f"{what} is a number, not {text[:40]!r}") from None
    if not math.isfinite(number):
        raise BadRequest("statsd", line, f"{what} must be finite")
    return number
