"""Pre-aggregation (pure, no Redis): the grouped, rolled-up fold must count exactly what
expanding every event on its own counts."""

from collections import defaultdict
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from hailwhale.aggregate import aggregate
from hailwhale.batches import count_events
from hailwhale.dimensions import expand, parent_links
from hailwhale.event import Event
from hailwhale.numbers import to_nanos
from hailwhale.periods import parse_periods

PERIODS = parse_periods("15s:3h,1h:7d,1d:1y")
TZ = ZoneInfo("Europe/Berlin")
NOW = 1_750_000_000.0


def reference(events):
    """Every event expanded on its own: (pk, path, metric, period index, ordinal) -> nanos,
    -> uids, and (pk, parent) -> child -> last seen."""
    sums, uids, children = defaultdict(int), defaultdict(set), {}
    for event in events:
        paths = expand(event.branches)
        for index, period in enumerate(PERIODS):
            if not period.keeps(event.at, NOW, TZ):
                continue
            ordinal = period.ordinal(event.at, TZ)
            for path in paths:
                for name, value in event.metrics.items():
                    sums[(event.pk, path, name, index, ordinal)] += to_nanos(value)
                for name in event.uniques:
                    uids[(event.pk, path, name, index, ordinal)].add(event.uid)
        for parent, child in parent_links(paths):
            seen = children.setdefault((event.pk, parent), {})
            seen[child] = max(seen.get(child, 0.0), event.at)
    return dict(sums), dict(uids), children


def flatten(batch):
    sums = {(pk, path, name, index, ordinal): nanos
            for (pk, path, index, ordinal), metrics in batch.counters.items()
            for name, nanos in metrics.items()}
    uids = {(pk, path, name, index, ordinal): set(members)
            for (pk, path, index, ordinal), metrics in batch.uniques.items()
            for name, members in metrics.items()}
    return sums, uids, batch.children


names = st.sampled_from(["a", "b", "c"])
branch = st.lists(names, min_size=1, max_size=3).map(tuple)
events = st.builds(
    lambda branches, pk, hits, money, uid, at: Event(
        tuple(dict.fromkeys(branches)), {"hits": hits, "money": money},
        ("visitors",), uid, pk, at),
    st.lists(branch, min_size=0, max_size=3),
    st.sampled_from(["", "shop"]),
    st.integers(-3, 3),
    st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 3)),
    st.sampled_from(["u1", "u2", "u3"]),
    # within the last 3 hours (every period keeps it) or days back (only the longer ones)
    st.one_of(st.integers(0, 10_800), st.integers(10_800, 30 * 86400)).map(
        lambda back: NOW - back),
)


@hsettings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40))
def test_the_fold_counts_what_expanding_each_event_counts(batch_events):
    batch = aggregate(batch_events, PERIODS, TZ, NOW)
    assert flatten(batch) == reference(batch_events)
    assert batch.events == len(batch_events)


def test_shared_groups_are_never_changed_by_a_later_fold():
    # One event's group is stored by reference at every level; folding another event into
    # the parent must not change the child's counters.
    one = Event((("a", "b"),), {"hits": 1}, (), None, "", NOW)
    other = Event((("a", "c"),), {"hits": 1}, (), None, "", NOW)
    batch = aggregate([one, other], PERIODS, TZ, NOW)
    ordinal = PERIODS[0].ordinal(NOW, TZ)
    assert batch.counters[("", ("a", "b"), 0, ordinal)] == {"hits": 1 * 10**9}
    assert batch.counters[("", ("a",), 0, ordinal)] == {"hits": 2 * 10**9}
    assert batch.counters[("", (), 0, ordinal)] == {"hits": 2 * 10**9}


def test_an_event_with_several_branches_counts_once_in_their_shared_prefixes():
    event = Event((("a", "b"), ("a", "c")), {"hits": 1}, ("v",), "u", "", NOW)
    batch = aggregate([event, event], PERIODS, TZ, NOW)
    ordinal = PERIODS[0].ordinal(NOW, TZ)
    assert batch.counters[("", ("a",), 0, ordinal)] == {"hits": 2 * 10**9}
    assert batch.counters[("", ("a", "c"), 0, ordinal)] == {"hits": 2 * 10**9}
    assert batch.uniques[("", (), 0, ordinal)] == {"v": {"u"}}
    assert batch.children[("", ("a",))] == {"b": NOW, "c": NOW}


def test_the_caches_hold_no_long_names(settings):
    """Worst-case events (16 branches x 8 levels of 200-character names, all new) are
    counted without entering any per-process cache, so the caches stay bounded by what they
    hold, not only by their entry counts."""
    import random
    import time

    from hailwhale import aggregate as aggregation
    from hailwhale import keys
    from hailwhale.event import parse_event
    from hailwhale.store import Store, connect

    store = Store(connect("memory://"), settings)
    caches = (aggregation._cached_expansion, keys._cached_tag, keys._cached_part)
    count_events(store, [parse_event({"dimensions": "short"}, settings, time.time())])
    before = [cache.cache_info().currsize for cache in caches]
    rng = random.Random(5)

    def name():
        return "".join(rng.choices("abcdefghij", k=200))

    now = time.time()
    worst = [parse_event({"dimensions": {name(): [name() for _ in range(7)]
                                         for _ in range(16)}}, settings, now)
             for _ in range(20)]
    assert count_events(store, worst, now) == 20
    assert [cache.cache_info().currsize for cache in caches] == before


def _columns_settings():
    import dataclasses

    from hailwhale.config import load_settings

    return dataclasses.replace(load_settings(environ={}), periods=PERIODS,
                               timezone="Europe/Berlin")


@hsettings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=40))
def test_the_columnar_fold_of_wire_lines_counts_what_expanding_each_event_counts(batch_events):
    """Hail's wire lines, checked and folded as columns by Whale, count what each event
    counts, and exactly what the per-event fold above counts."""
    from hailwhale import columns, wire

    settings = _columns_settings()
    assert settings.tz.key == "Europe/Berlin"
    lines = [wire.encode(event, NOW) for event in batch_events]
    table, rejected = columns.check(lines, settings, NOW)
    assert rejected == [] and table["index"].to_list() == list(range(len(lines)))
    batch = columns.fold(table, PERIODS, TZ, NOW).batch()
    assert flatten(batch) == reference(batch_events)
    assert batch.events == len(batch_events)
    folded = aggregate(batch_events, PERIODS, TZ, NOW)
    assert (batch.counters, batch.uniques, batch.children, batch.metric_kinds) == \
        (folded.counters, folded.uniques, folded.children, folded.metric_kinds)
