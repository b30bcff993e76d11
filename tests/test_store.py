"""The store on real Redis and fakeredis: counting, reading, retention, chunking, reset."""

from __future__ import annotations

import pytest

from hailwhale import keys
from hailwhale.batches import count_events
from hailwhale.event import parse_event
from hailwhale.periods import Period


def events(settings, now, *raws):
    return [parse_event(raw, settings, now) for raw in raws]


def read_total(store, now, path=(), metric="hits", kind="sum", pk="", period=None):
    period = period or store.settings.periods[0]
    ordinals = period.ordinals(now - 600, now, store.settings.tz)
    return store.read(pk, [path], {metric: kind}, period, ordinals)[path][metric]


def test_every_prefix_and_the_root_in_every_period(store, settings, clock):
    branch = ["pageviews", "site.com", "site.com/main", "visitor7"]
    count_events(store, events(settings, clock.now, {"dimensions": branch}), clock.now)
    for period in settings.periods:
        for end in range(len(branch) + 1):
            path = tuple(branch[:end])
            assert read_total(store, clock.now, path, period=period).total == 1, (period, path)
    assert read_total(store, clock.now, ("site.com",)).total == 0


def test_a_batch_is_pre_aggregated_into_one_write_per_counter(real_client, settings, clock):
    from hailwhale.store import Store

    store = Store(real_client, settings)
    batch = events(settings, clock.now, *[{"dimensions": "page"}] * 10_000)
    count_events(store, events(settings, clock.now, {"dimensions": "warm"}), clock.now)
    real_client.config_resetstat()  # after the scripts' first calls (NOSCRIPT, then loaded)
    count_events(store, batch, clock.now)
    stats = real_client.info("commandstats")
    # One script call for the whole batch (and the guards': one for the pk's metric names,
    # one per parent, here the root); inside it, 2 paths (root, page) x 3 periods x 1
    # metric: six increments for ten thousand events.
    assert stats["cmdstat_evalsha"]["calls"] == 3
    assert stats["cmdstat_hincrby"]["calls"] == 6
    assert read_total(store, clock.now, ("page",)).total == 10_000


def test_a_batch_id_is_applied_at_most_once(store, settings, clock):
    batch = events(settings, clock.now, {"dimensions": "a", "metrics": {"v": "is_unique"},
                                         "uid": "x"}, {"dimensions": "b"})
    from hailwhale.aggregate import aggregate

    aggregated = aggregate(batch, settings.periods, settings.tz, clock.now)
    assert store.write(aggregated, "batch-1", record="first") == (True, "first")
    assert store.write(aggregated, "batch-1", record="second") == (False, "first")
    assert store.write(aggregated, "batch-2") == (True, "")
    assert read_total(store, clock.now).total == 4
    assert read_total(store, clock.now, ("a",)).total == 2
    assert 0 < store.redis.ttl(keys.batch_done("batch-1")) <= settings.batch_memory
    # The same id with other events (other keys, other slots) counts nothing either.
    other = aggregate(events(settings, clock.now, {"dimensions": "zzz"}), settings.periods,
                      settings.tz, clock.now)
    assert store.write(other, "batch-1", record="third") == (False, "first")
    assert read_total(store, clock.now).total == 4
    # A batch with nothing to apply is remembered as well.
    empty = aggregate([], settings.periods, settings.tz, clock.now)
    assert store.write(empty, "batch-3", record="none") == (True, "none")
    assert store.write(other, "batch-3", record="late") == (False, "none")
    assert read_total(store, clock.now).total == 4


def test_an_apply_that_would_overflow_a_counter_changes_nothing(real_client, settings, clock):
    """HINCRBY fails past 2^63 and Redis does not roll a script back: apply.lua undoes the
    increments it made before, so a batch applies whole or not at all, and a retry of it
    cannot add its first increments again."""
    from hailwhale.aggregate import aggregate
    from hailwhale.errors import CounterOverflow
    from hailwhale.store import Store

    store = Store(real_client, settings)
    count_events(store, events(settings, clock.now, {"dimensions": "big",
                                             "metrics": {"n": 10**12}}), clock.now)
    counter = real_client.keys("hw:{%}:s:n:*")[0]  # the root's hash, beside its child big
    assert set(real_client.hgetall(counter)) == {keys.ROOT_FIELD, "big"}
    real_client.hset(counter, keys.ROOT_FIELD, 2**63 - 10**11)  # the root's n, near the limit
    # Every key but the children sets: the cardinality guard reserves a new child's room
    # before the apply, and keeps it (a child listed with nothing counted) when that fails.
    def state():
        return {key: real_client.dump(key) for key in real_client.keys("*")
                if not key.endswith(":children")}

    before = state()
    batch = aggregate(events(settings, clock.now, {"dimensions": "a"}, {"dimensions": "big",
                      "metrics": {"n": 10**12}}), settings.periods, settings.tz, clock.now)
    for _ in range(5):
        with pytest.raises(CounterOverflow, match="nothing of the batch"):
            store.write(batch, "overflowing", record="r")
    assert state() == before
    assert real_client.get(keys.batch_done("overflowing")) is None


def _names_in_parts(count: int, below: int | None = None) -> list[str]:
    """Top-level names whose series' keys lie in ``count`` different apply parts (below
    part ``below`` when given)."""
    names, parts = [], set()
    for i in range(10_000):
        part = keys.apply_part(keys.series_tag("", (f"n{i}",)))
        if part not in parts and (below is None or part < below):
            names.append(f"n{i}")
            parts.add(part)
            if len(names) == count:
                return names
    raise AssertionError("no such names")


def test_an_overflow_in_a_later_part_takes_back_the_parts_before_it(real_client, settings,
                                                                    clock):
    """A batch with an id is applied in parts (keys.apply_part); when one part would
    overflow a counter, the parts applied before it are undone too, so nothing of the batch
    stays counted, and count_batch then counts its other events exactly once."""
    from hailwhale.aggregate import aggregate
    from hailwhale.batches import count_batch
    from hailwhale.errors import CounterOverflow
    from hailwhale.store import Store

    store = Store(real_client, settings)
    big = next(f"big{i}" for i in range(100)
               if keys.apply_part(keys.series_tag("", (f"big{i}",))) >= 3)
    others = _names_in_parts(2, below=keys.apply_part(keys.series_tag("", (big,))))
    count_events(store, events(settings, clock.now, {"dimensions": [big, "leaf"],
                                             "metrics": {"n": 10**12}}), clock.now)
    counter = next(key for key in real_client.keys("hw:*:s:n:*")
                   if key.startswith(f"hw:{{%|{big}}}"))
    assert set(real_client.hgetall(counter)) == {"leaf"}
    real_client.hset(counter, "leaf", 2**63 - 10**11)

    def state():
        return {key: real_client.dump(key) for key in real_client.keys("*")
                if not key.endswith(":children")}

    before = state()
    raws = [*({"dimensions": [name, "leaf"], "metrics": {"n": 5}} for name in others),
            {"dimensions": [big, "leaf"], "metrics": {"n": 10**12}}]
    batch = aggregate(events(settings, clock.now, *raws), settings.periods, settings.tz,
                      clock.now)
    assert len(store._operations(batch)) >= 3  # the others' parts come before big's
    for _ in range(3):
        with pytest.raises(CounterOverflow, match="nothing of the batch"):
            store.write(batch, "overflowing", record="r")
        assert state() == before  # no counter changed, no part marker left
    answer = count_batch(store, "overflowing", raws, clock.now)
    assert answer["counted"] == 2 and [r["index"] for r in answer["rejected"]] == [2]
    for name in others:
        assert read_total(store, clock.now, (name, "leaf"), metric="n").total == 5
    assert read_total(store, clock.now, metric="n").total == 10**12 + 10  # the first event
    assert count_batch(store, "overflowing", raws, clock.now)["duplicate"] is True
    assert read_total(store, clock.now, metric="n").total == 10**12 + 10


def test_a_batch_cut_off_between_its_parts_is_completed_exactly_by_its_retry(
        store, settings, clock, monkeypatch):
    """Whale dying between two parts of a batch: the retry under the same id applies the
    parts that were missed, and only those."""
    from hailwhale.aggregate import aggregate

    names = _names_in_parts(6)
    batch = aggregate(events(settings, clock.now, *({"dimensions": [name, "x"],
                                                     "metrics": {"v": "is_unique"},
                                                     "uid": name} for name in names)),
                      settings.periods, settings.tz, clock.now)
    parts = store._operations(batch)
    assert len(parts) >= 6

    def state():  # children sets apart: the cardinality guard scores them by the clock
        return {key: store.redis.dump(key) for key in store.redis.keys("*")
                if not key.startswith("hw:{%batch}") and not key.endswith(":children")}

    store.write(batch, "whole", record="r")
    whole = state()
    for cut in (1, 3, len(parts) - 1):
        store.redis.flushdb()
        real_apply, calls = store._apply, []

        def dying(*args, real_apply=real_apply, calls=calls, cut=cut, **kwargs):
            if len(calls) == cut:
                raise ConnectionError("Whale killed")
            calls.append(1)
            return real_apply(*args, **kwargs)

        monkeypatch.setattr(store, "_apply", dying)
        with pytest.raises(ConnectionError):
            store.write(batch, "cut", record="r")
        monkeypatch.setattr(store, "_apply", real_apply)
        assert {} != state() != whole  # some parts applied, not every one
        assert store.write(batch, "cut", record="r") == (True, "r")
        assert store.write(batch, "cut", record="again") == (False, "r")
        assert state() == whole
        # The id is remembered by one key; the parts' markers went with the last part.
        assert store.redis.keys("hw:{%batch}:*") == [keys.batch_done("cut")]
        assert read_total(store, clock.now).total == len(names)
        for name in names:
            assert read_total(store, clock.now, (name, "x")).total == 1
            assert read_total(store, clock.now, (name,), "v", "unique").total == 1


def test_a_batch_applied_by_two_workers_at_once_counts_once(store, settings, clock,
                                                            monkeypatch):
    """Two Whale workers with the same batch (a hailwail whose lease ran out sent it again):
    the second checked the id before the first recorded it, and the first then dropped its
    parts' markers. Each part also checks the id's own key, so nothing counts twice."""
    from hailwhale.aggregate import aggregate

    names = _names_in_parts(6)
    batch = aggregate(events(settings, clock.now, *({"dimensions": [name, "x"]}
                                                    for name in names)),
                      settings.periods, settings.tz, clock.now)
    assert store.write(batch, "twice", record="r") == (True, "r")  # the first worker
    monkeypatch.setattr(store.redis, "get", lambda key: None)  # the second's early check
    store.write(batch, "twice", record="r")
    monkeypatch.undo()
    assert read_total(store, clock.now).total == len(names)
    for name in names:
        assert read_total(store, clock.now, (name, "x")).total == 1


def test_a_million_dimes_add_up_without_drift(real_client, settings, clock):
    from hailwhale.store import Store

    store = Store(real_client, settings)
    dime = events(settings, clock.now, {"dimensions": "sales", "metrics": {"dollars": 0.10}})[0]
    for _ in range(100):  # a hundred batches of ten thousand: Redis adds 100 times
        count_events(store, [dime] * 10_000, clock.now)
    assert read_total(store, clock.now, metric="dollars").total == 100000
    assert repr(float(read_total(store, clock.now, metric="dollars").total)) == "100000.0"


def test_floats_negatives_and_mixed_ints(store, settings, clock):
    count_events(store, events(settings, clock.now,
                       {"metrics": {"x": 2}}, {"metrics": {"x": -0.25}},
                       {"metrics": {"x": 0.1}}, {"metrics": {"x": 1e-9}}), clock.now)
    assert read_total(store, clock.now, metric="x").total == pytest.approx(1.850000001, abs=0)


def test_uniques_merge_at_read_time(store, settings, clock):
    now = clock.now
    one = {"dimensions": "p", "metrics": {"v": "is_unique"}}
    count_events(store, events(settings, now, *[{**one, "uid": u} for u in "abcab"]), now)
    count_events(store, events(settings, now + 30, *[{**one, "uid": u} for u in "ad"]), now + 30)
    period = settings.periods[0]
    ordinals = period.ordinals(now - 15, now + 30, settings.tz)
    reading = store.read("", [("p",)], {"v": "unique"}, period, ordinals)[("p",)]["v"]
    assert [v for v in reading.values if v] == [3, 2]
    assert reading.total == 4


def test_retention_is_key_expiry(store, settings, clock):
    count_events(store, events(settings, clock.now, {"dimensions": "a",
                                             "metrics": {"v": "is_unique"}}), clock.now)
    counter_keys = store.redis.keys("hw:*:s:*")
    assert counter_keys
    for key in counter_keys + store.redis.keys("hw:*:u:*"):
        ttl = store.redis.ttl(key)
        code = key.split(":")[-2]
        period = next(p for p in settings.periods if p.code == code)
        # A bucket lives until it has been kept for the retention after its end.
        assert period.retention <= ttl <= period.retention + period.interval + 1


def test_backfilled_events_skip_periods_that_no_longer_keep_them(store, settings, clock):
    old = clock.now - 5 * 3600  # past 15s:3h, inside 1h:7d and 1d:1y
    count_events(store, events(settings, clock.now, {"dimensions": "a", "at": old}), clock.now)
    assert not store.redis.keys(f"*:{settings.periods[0].code}:*")
    assert store.redis.keys(f"*:{settings.periods[1].code}:*")


def test_children_share_their_parents_bucket_hash(store, settings, clock):
    period = settings.periods[0]
    count_events(store, events(settings, clock.now, *[
        {"dimensions": ["shop", f"p{i}"], "metrics": {"x": 0.5 + i}} for i in range(40)]),
        clock.now)
    [bucket] = store.redis.keys(f"hw:{{%|shop}}:s:x:{period.code}:*")
    fields = store.redis.hgetall(bucket)
    assert {name.removesuffix(keys.FRACTION) for name in fields} == \
        {f"p{i}" for i in range(40)}
    assert fields["p3"] == "3" and fields["p3" + keys.FRACTION] == "500000000"
    # One key per (parent, metric, period, bucket): the root's (root + shop), shop's (pages).
    assert len(store.redis.keys(f"hw:*:s:x:{period.code}:*")) == 2
    assert read_total(store, clock.now, ("shop", "p3"), metric="x", period=period).total == 3.5


def test_counter_hashes_keep_the_compact_encoding(real_client, settings, clock):
    from hailwhale.store import Store

    store = Store(real_client, settings)
    base = clock.now - 3 * 3600 + 60
    count_events(store, events(settings, clock.now, *[
        {"metrics": {"x": 0.5}, "at": base + 15 * i} for i in range(700)]), clock.now)
    for key in real_client.keys("hw:*:s:*"):
        assert real_client.object("encoding", key) == "listpack", key


def test_children_registry(store, settings, clock):
    count_events(store, events(settings, clock.now,
                       {"dimensions": {"sales": {"eu": "p1", "us": "p2"}}},
                       {"dimensions": ["sales", "asia"]}), clock.now)
    assert store.children("", ()) == ["sales"]
    assert store.children("", ("sales",)) == ["asia", "eu", "us"]
    assert store.children("", ("sales", "eu")) == ["p1"]
    assert store.children("", ("sales",), since=clock.now + 1) == []


def test_reset_deletes_one_pk_only(store, settings, clock):
    count_events(store, events(settings, clock.now,
                       {"pk": "a*", "dimensions": "x", "metrics": {"u": "is_unique"}},
                       {"pk": "a", "dimensions": "x"}, {"pk": "b", "dimensions": "x"}),
                clock.now)
    deleted = store.reset("a*")
    assert deleted > 0
    assert read_total(store, clock.now, pk="a*").total == 0
    assert read_total(store, clock.now, pk="a").total == 1
    assert read_total(store, clock.now, pk="b").total == 1
    assert store.pks() == ["a", "b"]


def test_tricky_names_never_share_a_series(store, settings, clock):
    count_events(store, events(settings, clock.now,
                       {"dimensions": ["a|b"]}, {"dimensions": ["a", "b"]},
                       {"dimensions": ["a", "b"]}, {"dimensions": ["a:b}"]},
                       {"pk": "a|b"}), clock.now)
    assert read_total(store, clock.now, ("a|b",)).total == 1
    assert read_total(store, clock.now, ("a", "b")).total == 2
    assert read_total(store, clock.now, ("a:b}",)).total == 1
    assert read_total(store, clock.now, pk="a|b").total == 1
    assert read_total(store, clock.now).total == 4


def test_two_periods_with_one_interval_keep_apart(client, clock):
    from hailwhale.config import load_settings
    from hailwhale.store import Store

    settings = load_settings(environ={"HAILWHALE_PERIODS": "1m:1h,1m:1d"})
    store = Store(client, settings)
    count_events(store, events(settings, clock.now, {"dimensions": "a"}), clock.now)
    short, long = settings.periods
    assert short.code != long.code
    assert read_total(store, clock.now, ("a",), period=short).total == 1
    assert read_total(store, clock.now, ("a",), period=long).total == 1
    assert isinstance(short, Period)


def test_uids_and_names_with_spaces_and_symbols_count_apart(store, settings, clock):
    uids = ["a b", "a  b", "a", "b", " a", "é|{x}:*"]
    count_events(store, events(settings, clock.now, *[
        {"dimensions": "p q", "metrics": {"v": "is_unique"}, "uid": uid} for uid in uids * 2
    ]), clock.now)
    assert read_total(store, clock.now, ("p q",), metric="v", kind="unique").total == len(uids)


def test_a_batch_apply_lua_cannot_read_whole_is_refused_before_any_of_it_applies(
        real_client, settings, clock):
    import redis

    from hailwhale.aggregate import aggregate
    from hailwhale.store import Store

    store = Store(real_client, settings)
    real_client.flushdb()
    batch = aggregate(events(settings, clock.now, {"dimensions": "page"}), settings.periods,
                      settings.tz, clock.now)
    parts = store._operations(batch)
    first_key, operations = parts[0].key, "".join(part.text for part in parts)
    # One line broken (a tab where the script expects its fields): the script must refuse
    # all of it rather than skip that line.
    broken = operations.replace("\t", "", 1)
    with pytest.raises(redis.ResponseError, match="operations readable"):
        store._apply(keys=[first_key], args=["", "", broken, operations.count("\n")])
    assert real_client.dbsize() == 0
    store._apply(keys=[first_key], args=["", "", operations, operations.count("\n")])
    assert read_total(store, clock.now, ("page",)).total == 1


def test_expiry_is_set_on_new_keys_and_kept_on_later_batches(real_client, settings, clock):
    from hailwhale.store import Store

    store = Store(real_client, settings)
    real_client.flushdb()
    count_events(store, events(settings, clock.now, {"dimensions": "page",
                                             "metrics": {"v": "is_unique"}, "uid": "a"}),
                clock.now)
    ttls = {key: real_client.ttl(key) for key in real_client.keys("hw:*")
            if key not in (keys.PKS, keys.LAYOUT_KEY)}
    assert ttls and all(ttl > 0 for ttl in ttls.values()), ttls
    # A later batch into the same keys (the script skips EXPIREAT for keys it did not
    # create): every key still expires.
    count_events(store, events(settings, clock.now, {"dimensions": "page",
                                             "metrics": {"v": "is_unique"}, "uid": "b"}),
                clock.now)
    assert all(real_client.ttl(key) > 0 for key in real_client.keys("hw:*")
               if key not in (keys.PKS, keys.LAYOUT_KEY))
    assert read_total(store, clock.now, ("page",)).total == 2


def test_a_totals_only_read_matches_the_full_read(store, settings, clock):
    count_events(store, events(settings, clock.now,
                       {"dimensions": ["a", "b"], "metrics": {"m": 0.25}, "at": clock.now - 600},
                       {"dimensions": ["a", "c"], "metrics": {"m": -2}, "at": clock.now}),
                clock.now)
    period = settings.periods[0]
    ordinals = period.ordinals(clock.now - 60, clock.now, settings.tz)  # leaves one event out
    paths = [(), ("a",), ("a", "b"), ("a", "c")]
    metrics = {"hits": "sum", "m": "sum"}
    full = store.read("", paths, metrics, period, ordinals)
    totals = store.read("", paths, metrics, period, ordinals, buckets=False)
    for path in paths:
        for metric in metrics:
            assert totals[path][metric].values == []
            assert totals[path][metric].total == full[path][metric].total, (path, metric)
    assert full[("a",)]["m"].total == -2 and full[("a", "b")]["hits"].total == 0


def test_a_batch_with_an_overflowing_event_counts_the_others_once(real_client, settings,
                                                                  clock):
    from hailwhale.batches import count_batch
    from hailwhale.store import Store

    store = Store(real_client, settings)
    count_events(store, events(settings, clock.now, {"dimensions": "big", "metrics": {"n": 1}}),
                clock.now)
    for key in real_client.keys("hw:{%}:s:n:*"):  # big's buckets, beside the root's
        real_client.hset(key, "big", 2**63 - 10)
    raws = [{"dimensions": "ok", "metrics": {"m": 1}, "at": clock.now},
            {"dimensions": "big", "metrics": {"n": 100}, "at": clock.now},
            {"dimensions": "ok", "metrics": {"m": 2}, "at": clock.now}]
    answer = count_batch(store, "b-overflow", raws, clock.now)
    assert answer["counted"] == 2 and [r["index"] for r in answer["rejected"]] == [1]
    assert "overflow" in answer["rejected"][0]["error"]
    again = count_batch(store, "b-overflow", raws, clock.now)
    assert again["duplicate"] and again["counted"] == 2
    assert read_total(store, clock.now, ("ok",), metric="m").total == 3


@pytest.mark.parametrize("pk", ["pks", "hail", "%pks", "%hail", "%batch"])
def test_pks_named_like_internal_keys_reach_none_of_them(store, settings, clock, pk):
    """Resetting any pk deletes that pk's series and nothing else: not /pks, not a Hail
    buffer or its dead letters sharing the database, not batch markers."""
    from hailwhale.buffer import Buffer

    buffer = Buffer(store.redis)
    buffer.push([{"dimensions": "waiting"}])
    buffer.dead_letter("batch-d", [('{"dimensions": "x"}', "a reason")])
    count_events(store, events(settings, clock.now, {"dimensions": "a"}), clock.now)
    store.write(aggregate_of(settings, clock, {"pk": pk, "dimensions": "b"}), "batch-p")
    assert store.pks() == sorted(["", pk])
    before = {key: store.redis.dump(key) for key in store.redis.keys("*")}
    own = set(store.redis.keys(keys.pk_pattern(pk)))
    assert own and all(key.startswith("hw:{" + keys.series_tag(pk, ())[1:-1]) for key in own)
    store.reset(pk)
    after = {key: store.redis.dump(key) for key in store.redis.keys("*")}
    assert store.pks() == [""]
    assert {k: v for k, v in after.items() if k != keys.PKS} == \
        {k: v for k, v in before.items() if k not in own and k != keys.PKS}
    assert buffer.stats().waiting == 1 and buffer.stats().dead == 1


def aggregate_of(settings, clock, *raws):
    from hailwhale.aggregate import aggregate

    return aggregate(events(settings, clock.now, *raws), settings.periods, settings.tz,
                     clock.now)


def test_keys_under_their_old_names_are_renamed_once(client):
    from hailwhale.legacy import rename_legacy_keys

    client.rpush("hw:{hail}:buffer", "e1", "e2")
    client.rpush(keys.BUFFER, "e0")  # a new process already wrote
    client.zadd("hw:{hail}:inflight", {"b1": 5})
    client.rpush("hw:{hail}:batch:b1", "e3")
    client.set("hw:{hail}:batch:w1", "a Whale marker of the pk hail: stays")
    client.sadd("hw:{pks}", "", "shop")
    assert rename_legacy_keys(client) == 4
    assert client.lrange(keys.BUFFER, 0, -1) == ["e1", "e2", "e0"]
    assert client.zrange(keys.INFLIGHT, 0, -1, withscores=True) == [("b1", 5.0)]
    assert client.lrange(keys.processing("b1"), 0, -1) == ["e3"]
    assert client.smembers(keys.PKS) == {"", "shop"}
    assert client.get("hw:{hail}:batch:w1")
    assert not client.exists("hw:{hail}:buffer", "hw:{pks}", "hw:{hail}:inflight")
    assert rename_legacy_keys(client) == 0  # safe to run again


def test_a_totals_only_read_of_many_children_is_summed_in_redis_exactly(store, settings, clock):
    """Past 32 children a parent's buckets are read whole, and for totals summed by
    read.lua: the same totals as the full read, fractions and negatives included."""
    period = settings.periods[0]
    count_events(store, events(settings, clock.now, *[
        {"dimensions": ["shop", f"p{i}"], "metrics": {"m": (-1) ** i * (i + 0.125)},
         "at": clock.now - 15 * (i % 7)} for i in range(40)]), clock.now)
    ordinals = period.ordinals(clock.now - 600, clock.now, settings.tz)
    paths = [("shop", f"p{i}") for i in range(40)] + [("shop", "never")]
    full = store.read("", paths, {"m": "sum", "hits": "sum"}, period, ordinals)
    totals = store.read("", paths, {"m": "sum", "hits": "sum"}, period, ordinals, buckets=False)
    for path in paths:
        assert totals[path]["m"].total == full[path]["m"].total
        assert totals[path]["hits"].total == full[path]["hits"].total
    assert totals[("shop", "p3")]["m"].total == -3.125 and totals[("shop", "never")]["m"].total == 0
