"""The wire form (hailwhale.wire) and Whale's check of it (hailwhale.columns.check): what Hail
buffers comes out as the same event; a line that breaks any rule is refused with the rule,
alone; and whatever is sent, every line accepted can be counted."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hailwhale import columns, wire
from hailwhale.event import parse_event
from hailwhale.store import Store, connect

HOSTILE = ["<img src=x onerror=alert(1)>", "a|b", "c:d", "{e}", "100%", "ünï", "'\"", " sp "]


def line(settings, now, **raw):
    return wire.encode(parse_event(raw, settings, now), now)


def test_a_wire_line_comes_out_as_the_event_it_was(settings):
    now = time.time()
    raw = {"pk": HOSTILE[1], "dimensions": {HOSTILE[0]: {HOSTILE[2]: HOSTILE[3]},
                                            HOSTILE[4]: HOSTILE[5]},
           "metrics": {"dollars": -12.25, "big": 10**12, "tiny": 1e-9, "v": "is_unique"},
           "uid": HOSTILE[6], "at": now - 30}
    event = parse_event(raw, settings, now)
    table, rejected = columns.check([wire.encode(event, now)], settings, now)
    assert rejected == []
    [row] = table.to_dicts()
    assert row["pk"] == event.pk and row["at"] == event.at and row["uid"] == event.uid
    assert tuple(map(tuple, row["branches"])) == event.branches
    assert row["names"] == list(event.metrics) and row["uniques"] == ["v"]
    assert [w * 10**9 + f for w, f in zip(row["wholes"], row["fractions"], strict=True)] == \
        [-12_250_000_000, 10**21, 1, 10**9]
    assert wire.received_of(wire.encode(event, 1234.5)) == 1234.5


@pytest.mark.parametrize(("broken", "reason"), [
    (lambda good: good.replace("2\t", "3\t", 1), "not wire form 2"),
    (lambda good: good + "\textra", "not a wire line of 10 or 12 fields"),
    (lambda good: good.rsplit("\t", 1)[0], "not a wire line of 10 or 12 fields"),
    (lambda good: _field(good, 3, "soon"), "received and at are numbers"),
    (lambda good: _field(good, 3, "inf"), "received and at are numbers"),
    (lambda good: _field(good, 2, "p\x07k"), "pk: too long or holds control characters"),
    (lambda good: _field(good, 5, "a\x1f\x07b"), "dimensions: a name is empty"),
    (lambda good: _field(good, 5, "a\x1f\x1fb"), "dimensions: a name is empty"),
    (lambda good: _field(good, 5, "a\x1f   "), "dimensions: a name is empty"),
    (lambda good: _field(good, 5, "x" * 201), "dimensions: a name is empty, too long"),
    (lambda good: _field(good, 5, "\x1f".join("abcdefghi")), "a branch is empty or too deep"),
    (lambda good: _field(good, 5, "\x1e".join("abcdefghijklmnopq")), "too many branches"),
    (lambda good: _field(good, 6, "dollars\x1fhits\x1fx"), "names and values do not match"),
    (lambda good: _field(good, 6, "1dollars\x1fhits"), "a name is not letters, digits"),
    (lambda good: _field(good, 6, "hits\x1fhits"), "a name is not letters, digits"),
    (lambda good: _field(good, 9, "v-v"), "a name is not letters, digits"),
    (lambda good: _field(good, 7, "1000000000001\x1f1"), "a value is not a number"),
    (lambda good: _field(good, 7, "1.5\x1f1"), "a value is not a number"),
    (lambda good: _field(good, 8, "1000000000\x1f0"), "a value is not a number"),
    (lambda good: _field(good, 8, "-1\x1f0"), "a value is not a number"),
    (lambda good: _field(good, 4, ""), "a unique metric needs a uid"),
    (lambda good: _field(good, 3, str(time.time() + 3600)), "in the future"),
    (lambda good: _field(good, 3, "1000"), "older than every period's retention"),
])
def test_a_line_that_breaks_a_rule_is_refused_alone_with_it(settings, broken, reason):
    now = time.time()
    good = line(settings, now, dimensions=["a", "b"], metrics={"dollars": 5, "v": "is_unique"},
                uid="u")
    table, rejected = columns.check([good, broken(good), good], settings, now)
    assert table["index"].to_list() == [0, 2]
    assert [r["index"] for r in rejected] == [1]
    assert rejected[0]["error"].startswith("wire: ") and reason in rejected[0]["error"], \
        rejected[0]["error"]


def _field(text: str, index: int, value: str) -> str:
    fields = text.split("\t")
    fields[index] = value
    return "\t".join(fields)


def test_first_wire_form_items_are_checked_in_full(settings):
    now = time.time()
    items = [json.dumps({"dimensions": "old", "at": now}), "{not json",
             json.dumps({"dimensions": "old", "metrics": {"x": "y"}}),
             line(settings, now, dimensions="new")]
    table, rejected = columns.check(items, settings, now)
    assert table["index"].to_list() == [0, 3]
    assert [(r["index"], r["error"][:12]) for r in rejected] == \
        [(1, "not JSON: Ex"), (2, "metrics.x: a")]


FIELD_TEXT = st.text(alphabet="12\x1f\x1eab.9-_ \x07é<", max_size=8)


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.text(alphabet="2\t\x1f\x1eab0.9-_ {}\"x\x07é", max_size=40),
    st.lists(FIELD_TEXT, min_size=10, max_size=10).map("\t".join),
    st.tuples(st.integers(0, 9), FIELD_TEXT)), max_size=12))
def test_whatever_is_sent_every_accepted_line_counts(items):
    """Lines of random shape, and good lines with one field replaced at random: the check
    never fails, and what it accepts folds and is applied by the store without an error."""
    from hailwhale.config import load_settings

    settings = load_settings(environ={})
    now = time.time()
    good = line(settings, now, pk="p", dimensions=["a", "b"], uid="u",
                metrics={"m": 1.5, "v": "is_unique"})
    items = [_field(good, *item) if isinstance(item, tuple) else item.replace("\n", "")
             for item in items] + [good]
    table, rejected = columns.check(items, settings, now)
    assert sorted(table["index"].to_list() + [r["index"] for r in rejected]) == \
        list(range(len(items)))
    store = Store(connect("memory://"), settings)
    batch = columns.fold(table, settings.periods, settings.tz, now)
    assert store.write(batch, "b")[0]
    assert batch.events == table.height


def _contents(client) -> dict:
    """Every key's contents, HyperLogLogs as their counts, and whether it expires."""
    found = {}
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":  # scored by when written (the cardinality guard's reservation)
            value = client.zrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif client.getrange(key, 0, 3) == "HYLL":
            value = client.pfcount(key)
        else:
            value = client.get(key)
        found[key] = (kind, value, client.ttl(key) > 0)
    return found


def test_a_batch_folded_as_columns_writes_what_the_per_event_fold_writes(real_client, settings):
    """Store.write turns a columnar fold into apply.lua's operations with polars; the
    store it leaves is the one the per-event fold's operations leave."""
    import random

    from hailwhale.aggregate import aggregate

    rng = random.Random(5)
    now = time.time()
    raws = [{"pk": rng.choice(["", "shop", HOSTILE[1]]),
             "dimensions": rng.choice([[], ["a"], ["a", rng.choice(HOSTILE)], {"x": "y", "z": "w"},
                                       [rng.choice(HOSTILE), "b", f"p{rng.randrange(9)}"]]),
             "metrics": {"m": rng.choice([1, -2, 0.25, 1e-9, -0.5, 10**12]), "v": "is_unique",
                         "n": rng.randrange(-3, 4)},
             "uid": f"u{rng.randrange(20)}", "at": now - rng.choice([0, 20, 4000, 90000])}
            for _ in range(500)]
    events = [parse_event(raw, settings, now) for raw in raws]
    store = Store(real_client, settings)
    table, rejected = columns.check([wire.encode(e, now) for e in events], settings, now)
    assert rejected == []
    store.write(columns.fold(table, settings.periods, settings.tz, now), "columns")
    by_columns = _contents(real_client)
    real_client.flushdb()
    store.write(aggregate(events, settings.periods, settings.tz, now), "columns")
    assert _contents(real_client) == by_columns
    assert len(by_columns) > 500


def test_post_batch_takes_wire_lines_once_and_refuses_a_broken_body(app, store, clock):

    settings = store.settings
    lines = [line(settings, clock.now, dimensions=["w", f"p{i % 3}"], metrics={"m": 0.5})
             for i in range(30)] + ["2\tbroken"]
    body = "\n".join(lines).encode()
    headers = {"Content-Type": wire.CONTENT_TYPE}
    answer = app.post("/batch?id=w1&count=31", body, headers=headers).json
    assert (answer["counted"], answer["duplicate"]) == (30, False)
    assert [r["index"] for r in answer["rejected"]] == [30]
    again = app.post("/batch?id=w1&count=31", body, headers=headers).json
    assert again["duplicate"] and again["counted"] == 30
    period = settings.periods[0]
    ordinals = period.ordinals(clock.now - 60, clock.now, settings.tz)
    read = store.read("", [("w",)], {"m": "sum", "hits": "sum"}, period, ordinals)[("w",)]
    assert (read["m"].total, read["hits"].total) == (15, 30)
    # A line count that differs (a line split or merged on the way), or bytes that are not
    # UTF-8: refused whole, nothing counted.
    wrong = app.post("/batch?id=w2&count=30", body, headers=headers, status=400).json
    assert wrong["param"] == "count" and "31 lines" in wrong["error"]
    bad = app.post("/batch?id=w3&count=1", b"2\t\xff", headers=headers, status=400).json
    assert bad["param"] == "body"
    assert app.post("/batch?count=1", b"x", headers=headers, status=400).json["param"] == "id"
    read = store.read("", [("w",)], {"hits": "sum"}, period, ordinals)[("w",)]
    assert read["hits"].total == 30
