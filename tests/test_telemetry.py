"""GET /prometheus in-process: what each fact moves, what is read from Redis at scrape time,
who may scrape, that no client string becomes a label, and that ``promtool check metrics``
accepts the text. (Under uWSGI, with a real Prometheus scraping: tests/test_prometheus.py.)

The metrics of one process are shared by every app it builds, so each test compares the
scrape after its requests with the scrape before them."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families

from hail.app import create_app as hail_app
from hailwhale import auth, keys, telemetry, wire
from hailwhale.buffer import Buffer
from hailwhale.event import parse_event
from hailwhale.store import Store, connect
from whale import create_app as whale_app

SECRET = "s" * 40
WIRE = {"Content-Type": wire.CONTENT_TYPE}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (name, labels) -> value."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class Scraper:
    """Scrapes one app, and tells how much a sample moved since the last scrape."""

    def __init__(self, app: webtest.TestApp, headers: dict | None = None):
        self.app, self.headers = app, headers or {}
        self.last = self.scrape()

    def scrape(self) -> dict:
        answer = self.app.get("/prometheus", headers=self.headers)
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return samples(answer.text)

    def moved(self) -> dict:
        now = self.scrape()
        moved = {key: value - self.last.get(key, 0) for key, value in now.items()}
        self.last = now
        return moved


def at(found: dict, name: str, **labels) -> float:
    return found.get((name, frozenset(labels.items())), 0)


def line(settings, now: float, **raw) -> str:
    return wire.encode(parse_event(raw, settings, now), now)


def hail_for(buffer: Buffer, settings, clock) -> webtest.TestApp:
    return webtest.TestApp(hail_app(
        buffer.push, settings, lambda: buffer.stats().as_dict(), clock,
        encode=lambda raw, event, received: wire.encode(event, received),
        facts=[telemetry.BufferFacts(buffer)]))


def test_whale_counts_batches_their_events_rejections_folds_and_duplicates(real_client,
                                                                           settings, clock):
    settings = dataclasses.replace(settings, max_children=2, max_pk_metrics=2)
    store = Store(real_client, settings)
    app = webtest.TestApp(whale_app(store, clock=clock))
    scraper = Scraper(app)
    # An event into a counter already near 2**63: the batch overflows whole, and then that
    # event alone.
    app.get("/count", {"dimensions": '["big", "leaf"]', "metrics": '{"n": 1000000000000}'})
    counter = next(key for key in real_client.keys("hw:*:s:n:*") if "big" in key)
    real_client.hset(counter, "leaf", 2**63 - 10**11)
    lines = [line(settings, clock.now, dimensions=["pages", page], metrics={"n": 1})
             for page in "abcd"]  # c and d find no room under pages: folded
    lines += [line(settings, clock.now, dimensions=["big", "leaf"], metrics={"n": 10**12}),
              line(settings, clock.now, dimensions=["x"], metrics={"extra": 1}),  # a 3rd name
              "2\tbroken"]
    body = "\n".join(lines).encode()
    answer = app.post(f"/batch?id=t1&count={len(lines)}", body, headers=WIRE).json
    assert (answer["counted"], len(answer["rejected"])) == (4, 3)
    assert app.post(f"/batch?id=t1&count={len(lines)}", body, headers=WIRE).json["duplicate"]
    moved = scraper.moved()
    assert at(moved, "hailwhale_events_accepted_total", app="whale") == 1
    assert at(moved, "hailwhale_events_counted_total") == 1 + 4
    assert at(moved, "hailwhale_batches_total", result="applied") == 1
    assert at(moved, "hailwhale_batches_total", result="duplicate") == 1
    for reason in ("invalid", "metric_cap", "overflow"):
        assert at(moved, "hailwhale_events_rejected_total", reason=reason) == 1, reason
    assert at(moved, "hailwhale_cardinality_folds_total") == 2
    assert at(moved, "hailwhale_batch_apply_duration_seconds_count") == 2
    assert at(moved, "hailwhale_http_requests_total", app="whale", route="/batch",
              method="POST", status="200") == 2
    assert at(moved, "hailwhale_http_request_duration_seconds_count", app="whale",
              route="/count") == 1
    # Read at scrape time: Whale's Redis answers, and holds the Celery path's dead letters.
    Buffer(real_client).dead_letter("b", [("e1", "why"), ("e2", "why")])
    found = scraper.scrape()
    assert at(found, "hailwhale_redis_up") == 1
    assert at(found, "hailwhale_dead_letters") == 2


def test_hail_counts_what_it_accepts_and_reads_its_buffer_at_scrape_time(client, settings,
                                                                         clock):
    buffer = Buffer(client)
    app = hail_for(buffer, settings, clock)
    scraper = Scraper(app)
    clock.now = time.time() - 30  # received half a minute ago
    for page in ("a", "b", "c"):
        app.get("/count", {"dimensions": f'["p", "{page}"]'})
    app.post("/count", '[{"dimensions": "q"}, {"dimensions": "r"}]')
    app.get("/count", {"metrics": "{nope"}, status=400)
    buffer.take(2)  # hailwail has taken a batch, not yet confirmed
    buffer.dead_letter("b1", [("e", "refused by Whale")])
    buffer.push([], {"packets": 5, "lines": 7, "events": 6, "refused": 1})  # the listener's
    moved = scraper.moved()
    assert at(moved, "hailwhale_events_accepted_total", app="hail") == 5
    assert at(moved, "hailwhale_http_requests_total", app="hail", route="/count",
              method="GET", status="200") == 3
    assert at(moved, "hailwhale_http_requests_total", app="hail", route="/count",
              method="POST", status="200") == 1
    assert at(moved, "hailwhale_http_requests_total", app="hail", route="/count",
              method="GET", status="400") == 1
    found = scraper.last
    assert at(found, "hailwhale_redis_up") == 1
    assert at(found, "hailwhale_buffer_events") == 3
    assert 29 < at(found, "hailwhale_buffer_oldest_age_seconds") < 60
    assert at(found, "hailwhale_buffer_batches_in_flight") == 1
    assert at(found, "hailwhale_dead_letters") == 1
    assert [at(found, f"hailwhale_statsd_{name}_total") for name in
            ("packets", "lines", "events", "refused_lines")] == [5, 7, 6, 1]
    assert at(found, "hailwhale_http_requests_in_progress", app="hail") == 1  # the scrape


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")  # webtest's lint, on BREW
def test_no_label_value_is_a_string_a_client_sent(real_client, settings, clock):
    buffer = Buffer(real_client)
    hail = hail_for(buffer, settings, clock)
    whale = webtest.TestApp(whale_app(Store(real_client, settings), clock=clock))
    hostile = "evil<script>"
    for app in (hail, whale):
        scraper = Scraper(app)
        app.get("/count", {"pk": hostile, "dimensions": f'["{hostile}x", "{hostile}y"]',
                           "metrics": '{"evil_metric": 1}'})
        app.get("/count", {"metrics": f'{{"{hostile}z": 1}}'}, status=400)
        app.get(f"/{hostile}", status=404)
        app.get(f"/static/{hostile}", status=404, expect_errors=True)
        app.request(f"/count?pk={hostile}", method="BREW", status=405, expect_errors=True)
        text = app.get("/prometheus").text
        assert "evil" not in text and "BREW" not in text
        # What these requests moved (the process's metrics also hold other tests' apps).
        moved = [dict(labels) for (_name, labels), value in scraper.moved().items() if value]
        routes = {route.rule for route in app.app.routes}
        assert {labels.get("route") for labels in moved} >= {"/count", telemetry.OTHER}
        for labels in moved:
            labels.pop("le", None)
            assert set(labels) <= {"app", "route", "method", "status"}, labels
            assert labels.get("app", app.app.service) == app.app.service
            assert labels.get("route", "/") in routes | {telemetry.OTHER}, labels
            assert labels.get("method", "GET") in {*telemetry.METHODS, telemetry.OTHER}
            assert labels.get("status", "200") in {"200", "400", "404", "405"}, labels


def test_redis_errors_are_counted_by_kind_and_a_scrape_still_answers(real_client, settings,
                                                                     clock):
    whale = webtest.TestApp(whale_app(Store(real_client, settings), clock=clock))
    scraper = Scraper(whale)
    # Hail's Redis unreachable: 503, and the scrape says its Redis did not answer.
    gone = Buffer.from_url("redis://127.0.0.1:1/0")
    hail = hail_for(gone, settings, clock)
    hail.get("/count", {"dimensions": "a"}, status=503)
    found = samples(hail.get("/prometheus").text)
    assert at(found, "hailwhale_redis_up") == 0
    assert at(found, "hailwhale_buffer_events") == 0 and \
        ("hailwhale_buffer_events", frozenset()) not in found
    # A command Redis refuses: the buffer's key holding a string.
    real_client.set(keys.BUFFER, "not a list")
    hail_for(Buffer(real_client), settings, clock).get("/count", {"dimensions": "a"},
                                                       status=503)
    moved = scraper.moved()
    assert at(moved, "hailwhale_redis_errors_total", kind="connection") == 2  # count, scrape
    assert at(moved, "hailwhale_redis_errors_total", kind="response") == 1
    dead = webtest.TestApp(whale_app(Store(connect("redis://127.0.0.1:1/0"), settings)))
    assert at(samples(dead.get("/prometheus").text), "hailwhale_redis_up") == 0


@pytest.mark.parametrize("which", ["whale", "hail"])
def test_with_a_secret_an_admin_or_every_pk_read_token_may_scrape(which, client, settings):
    settings = dataclasses.replace(settings, secret=SECRET)
    app = webtest.TestApp(whale_app(Store(client, settings), settings) if which == "whale"
                          else hail_app(Buffer(client).push, settings, dict))
    answer = app.get("/prometheus", status=401)
    assert answer.json["param"] == "token" and answer.headers["WWW-Authenticate"]
    for can, pks in (("write", ["*"]), ("read", ["shop"]), ("read", ["shop", "site"])):
        token = auth.issue(SECRET, can, pks)
        answer = app.get("/prometheus", headers={"Authorization": f"Bearer {token}"},
                         status=403)
        assert "admin token or a read token for every pk" in answer.json["error"]
    for can in ("read", "admin"):
        token = auth.issue(SECRET, can, ["*"])
        assert "hailwhale_http_requests_total" in app.get(
            "/prometheus", headers={"Authorization": f"Bearer {token}"}).text
        assert app.get("/prometheus", {"token": token}).status_int == 200


def test_promtool_accepts_both_apps_scrapes(real_client, settings, clock, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: install Debian's prometheus package "
                    "(apt-get install prometheus; ./run-tests does)")
    buffer = Buffer(real_client)
    hail = hail_for(buffer, settings, clock)
    whale = webtest.TestApp(whale_app(Store(real_client, settings), clock=clock))
    hail.get("/count", {"dimensions": "a"})
    hail.get("/count", {"metrics": "{"}, status=400)
    items = buffer.take(10)[1]
    whale.post(f"/batch?id=p1&count={len(items)}", "\n".join(items), headers=WIRE)
    whale.get("/plotpoints")
    for app in (whale, hail):
        done = subprocess.run([promtool, "check", "metrics"], input=app.get("/prometheus").body,
                              capture_output=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_nodes_directory_is_new_for_each_master_and_those_of_gone_masters_go(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names no process now
    base = tmp_path / f"hailwhale-{os.getuid()}"
    base.mkdir(mode=0o700)
    stale = base / f"prometheus-{gone.pid}-123"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"x")
    other = base / "slot-pid-1-0"  # another concept's file: left alone
    other.write_bytes(b"")
    mine = telemetry.node_directory(os.getpid(), str(tmp_path))
    assert mine.parent == base and mine.name.startswith(f"prometheus-{os.getpid()}-")
    assert mine.is_dir() and not any(mine.iterdir())
    assert not stale.exists() and other.exists()
    assert (mine.stat().st_mode & 0o777) == 0o700
    # Another master's, alive: kept; the same pid with another start time: a run gone.
    alive = base / f"prometheus-{os.getppid()}-0"
    alive.mkdir()
    reused = base / f"prometheus-{os.getppid()}-1"
    reused.mkdir()
    assert telemetry.node_directory(os.getpid(), str(tmp_path)) == mine
    assert alive.exists()
    assert reused.exists() == (not os.path.isdir("/proc/self"))


def test_the_in_progress_gauge_of_a_process_gone_is_dropped_at_scrape(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    for pid in (gone.pid, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{gone.pid}.db").write_bytes(b"")  # its counts stay
    telemetry._forget_gone_processes(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db"])
