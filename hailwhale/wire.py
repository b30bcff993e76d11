"""The wire form: how a checked event travels from Hail, through its buffer and hailwail, to
Whale's ``POST /batch``. Pure, no Redis, no HTTP.

Hail checks an event fully (hailwhale.event) and buffers it as one line of tab-separated
fields, version first:

    2 TAB received TAB pk TAB at TAB uid TAB branches TAB names TAB wholes TAB billionths
      TAB uniques          (one line)

``branches`` are the event's dimension paths, names separated by US (\\x1f), paths by RS
(\\x1e); ``names``, ``wholes`` and ``billionths`` its summed metrics and their values split
exactly into whole units and billionths (hailwhale.numbers), US-separated, in the same order;
``uniques`` its unique metrics' names. An event with gauges or timings is a line of version
3, with two fields more:

    3 TAB ... (the ten fields above, from received on) TAB gauges TAB timings

``gauges`` its gauges, US-separated, each ``name=value`` (set) or ``name+value`` (moved by
``value``, which may be negative), ``timings`` its timings, each ``name=sample,sample,...``
(numbers as Python's ``repr`` spells floats). Events without them stay version 2, which a
Whale from before gauges reads. Checked names cannot hold control characters, so the
separators are never inside a field, and a batch is its lines joined by newlines: hailwail
sends what it took from the buffer as it is, and Whale reads a whole batch into columns at
once (hailwhale.columns.check). This module has no polars: Hail imports it.
"""

from __future__ import annotations

import json

from .event import Event
from .numbers import split, to_nanos

VERSION = "2"
VERSION_KINDS = "3"  # a line carrying gauges or timings: FIELDS_KINDS
# The Content-Type of a POST /batch body of wire lines.
CONTENT_TYPE = "application/x-hailwhale-wire"
US, RS = "\x1f", "\x1e"
FIELDS = ("version", "received", "pk", "at", "uid", "branches", "names", "wholes", "fractions",
          "uniques")
FIELDS_KINDS = (*FIELDS, "gauges", "timings")


def encode(event: Event, received: float) -> str:
    """The wire line of a checked event received at ``received``."""
    # Whole numbers (hits, most metrics) need no conversion: (value, 0 billionths).
    parts = [(value, 0) if type(value) is int else split(to_nanos(value))
             for value in event.metrics.values()]
    kinds = bool(event.gauges or event.timings)
    line = "\t".join((
        VERSION_KINDS if kinds else VERSION, repr(float(received)), event.pk,
        repr(float(event.at)), event.uid or "",
        RS.join(US.join(branch) for branch in event.branches),
        US.join(event.metrics), US.join(str(whole) for whole, _ in parts),
        US.join(str(fraction) for _, fraction in parts), US.join(event.uniques)))
    if kinds:
        line += "\t" + US.join(f"{name}{op}{value!r}" for name, op, value in event.gauges)
        line += "\t" + US.join(f"{name}={','.join(map(repr, samples))}"
                               for name, samples in event.timings)
    return line


def received_of(item: str) -> float | None:
    """When Hail received a buffered item (either wire form), or None if it does not say."""
    try:
        if item.startswith("{"):
            return float(json.loads(item)["_received"])
        return float(item.split("\t", 2)[1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
