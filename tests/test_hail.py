"""The Hail app, the buffer and the drain, in-process, on real Redis and on fakeredis."""

from __future__ import annotations

import json

import pytest
import webtest

from hail.app import create_app
from hailwhale import keys
from hailwhale.buffer import Buffer
from hailwhale.drain import DeliveryFailed, drain
from hailwhale.store import Store, connect


@pytest.fixture
def buffer(client):
    return Buffer(client)


@pytest.fixture
def hail(buffer, settings, clock):
    return webtest.TestApp(create_app(buffer.push, settings,
                                      lambda: buffer.stats().as_dict(), clock))


@pytest.fixture
def whale_store(redis_server, settings):
    """Whale's store: a second database of the real server, so it never shares keys with
    the buffer under test."""
    client = connect(redis_server.url.rsplit("/", 1)[0] + "/5")
    client.flushdb()
    yield Store(client, settings)
    client.close()


def sender(store, clock):
    """Whale's side of a delivery, in-process: what ``POST /batch`` does with the buffered
    items (wire lines, or JSON texts of the first wire form) hailwail sends as they are."""
    from hailwhale.batches import count_lines

    sent = []

    def send_items(batch_id, items):
        sent.append(batch_id)
        return count_lines(store, batch_id, items, clock.now)

    send_items.sent = sent
    return send_items


def total(store, clock, path=(), metric="hits"):
    period = store.settings.periods[0]
    ordinals = period.ordinals(clock.now - 600, clock.now, store.settings.tz)
    return store.read("", [path], {metric: "sum"}, period, ordinals)[path][metric].total


def test_hail_buffers_checked_events_with_their_time(hail, buffer, clock):
    answer = hail.get('/count?dimension=services&metric={"dollars": 200}')
    assert answer.json == {"ok": True, "accepted": 1}
    hail.post_json("/count", [{"dimensions": {"sales": "p1"}, "metrics": {"dollars": 5},
                               "pk": "shop", "at": clock.now - 60, "_cb": 1}])
    items = [json.loads(i) for i in buffer.redis.lrange(keys.BUFFER, 0, -1)]
    assert items[0] == {"dimensions": "services", "metrics": '{"dollars": 200}',
                        "at": clock.now, "_received": clock.now}
    assert items[1] == {"dimensions": {"sales": "p1"}, "metrics": {"dollars": 5}, "pk": "shop",
                        "at": clock.now - 60, "_received": clock.now}
    assert buffer.stats(clock.now).as_dict() == {"waiting": 2, "oldest_age": 0.0,
                                                 "in_flight": 0, "dead": 0}


def test_hail_refuses_bad_input_and_buffers_nothing(hail, buffer):
    answer = hail.get("/count", {"metric": '{"dollars": "lots"}'}, status=400)
    assert answer.json["param"] == "metrics.dollars"
    hail.post_json("/count", [{"dimensions": "ok"}, {"dimensions": [""]}], status=400)
    hail.get("/count", {"dimenssions": "typo"}, status=400)
    assert buffer.redis.llen(keys.BUFFER) == 0


def test_hail_gif_beacon_and_health(hail, buffer):
    gif = hail.get("/count.gif", {"dimensions": "newsletter"})
    assert gif.content_type == "image/gif" and "no-store" in gif.headers["Cache-Control"]
    assert gif.headers["Access-Control-Allow-Origin"] == "*"
    assert hail.get("/health").json["waiting"] == 1


def test_hail_answers_503_when_its_redis_is_down(settings, clock):
    buffer = Buffer.from_url("redis://127.0.0.1:1/0")
    app = webtest.TestApp(create_app(buffer.push, settings, lambda: buffer.stats().as_dict(),
                                     clock))
    answer = app.get("/count", {"dimensions": "a"}, status=503)
    assert answer.headers["Retry-After"] == "1"
    assert app.get("/health", status=503).json["error"]


def test_take_claim_release_ack(buffer, clock):
    buffer.push([{"dimensions": str(n), "_received": clock.now} for n in range(5)])
    batch_id, items = buffer.take(3, clock.now)
    assert [json.loads(i)["dimensions"] for i in items] == ["0", "1", "2"]
    assert buffer.stats(clock.now).as_dict()["waiting"] == 2
    assert buffer.stats(clock.now).as_dict()["in_flight"] == 1
    # A live lease is not claimed; a lapsed one is, once.
    assert buffer.stale(lease=60, now=clock.now) == []
    assert buffer.claim(batch_id, lease=60, now=clock.now) == []
    assert buffer.stale(lease=60, now=clock.now + 61) == [batch_id]
    assert buffer.claim(batch_id, lease=60, now=clock.now + 61) == items
    assert buffer.claim(batch_id, lease=60, now=clock.now + 62) == []
    buffer.release(batch_id)
    assert buffer.stale(lease=60, now=clock.now + 62) == [batch_id]
    buffer.ack(batch_id, [(items[1], "because")])
    assert buffer.stats().as_dict()["in_flight"] == 0
    assert not buffer.redis.exists(keys.processing(batch_id))
    (dead,) = buffer.dead_letters()
    assert dead["event"] == items[1] and dead["reason"] == "because"
    assert dead["batch"] == batch_id


def test_drain_moves_everything_once(buffer, whale_store, clock):
    buffer.push([{"dimensions": "page", "at": clock.now}] * 2500)
    send = sender(whale_store, clock)
    report = drain(buffer, send, batch_size=1000)
    assert (report.events, report.batches, report.dead) == (2500, 3, 0)
    assert total(whale_store, clock, ("page",)) == 2500
    assert buffer.stats().as_dict() == {"waiting": 0, "oldest_age": None, "in_flight": 0,
                                        "dead": 0}


def test_rejected_events_are_dead_lettered_and_the_queue_moves(buffer, whale_store, clock):
    buffer.push([{"dimensions": "good", "at": clock.now},
                 {"dimensions": "bad", "metrics": {"x": "y"}, "at": clock.now},
                 {"dimensions": "good", "at": clock.now}])
    buffer.redis.rpush(keys.BUFFER, "{not json")
    report = drain(buffer, sender(whale_store, clock), batch_size=10)
    assert (report.events, report.dead) == (2, 2)
    assert total(whale_store, clock, ("good",)) == 2
    assert total(whale_store, clock, ("bad",)) == 0
    reasons = {json.loads(d["event"]).get("dimensions") if d["event"].startswith("{\"")
               else d["event"]: d["reason"] for d in buffer.dead_letters()}
    assert reasons["bad"].startswith("metrics.x: a metric is a number")
    assert reasons["{not json"].startswith("not JSON")
    assert buffer.redis.llen(keys.BUFFER) == 0


def test_a_failed_delivery_stays_in_flight_and_is_sent_again(buffer, whale_store, clock):
    buffer.push([{"dimensions": "page", "at": clock.now}] * 10)
    real_send = sender(whale_store, clock)

    def lost_answer(batch_id, events):
        real_send(batch_id, events)  # Whale counted it, but the answer never arrived
        raise DeliveryFailed("connection reset")

    with pytest.raises(DeliveryFailed):
        drain(buffer, lost_answer, batch_size=10)
    assert buffer.stats().as_dict()["in_flight"] == 1
    report = drain(buffer, real_send, batch_size=10)
    assert (report.recovered, report.duplicates, report.events) == (1, 1, 10)
    assert real_send.sent[0] == real_send.sent[1]  # the same batch id, sent again
    assert total(whale_store, clock, ("page",)) == 10
