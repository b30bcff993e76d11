"""StatsD into Hail (issue 11, part 1): the line protocol's mapping onto events, and real
StatsD clients (the `statsd` package from PyPI, hot-shots from npm) sending over UDP and TCP
to a real `hailwhale hail`, drained by a real hailwail into a real Whale: totals exact."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from processes import start, stop

from hailwhale.buffer import Buffer
from hailwhale.config import load_settings
from hailwhale.embedded import free_port
from hailwhale.errors import BadRequest
from hailwhale.statsd import metric_name, parse_line, parse_packet

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NOW = 1_790_000_000.0


@pytest.fixture
def settings():
    return load_settings(environ={})


def _one(line, settings, pk="shop"):
    event = parse_line(line, settings, NOW, pk)
    return event.branches, dict(event.metrics), event.uniques, event.uid, event.pk


# -- the mapping ---------------------------------------------------------------------------
def test_a_dotted_name_is_a_path_and_its_metric(settings):
    assert _one("shop.checkout.paid:1|c", settings) == (
        (("shop", "checkout"),), {"paid": 1, "hits": 1}, (), None, "shop")
    assert _one("paid:2.5|c", settings)[:2] == ((), {"paid": 2.5, "hits": 1})


def test_a_sample_rate_scales_a_counter(settings):
    assert _one("a.b:3|c|@0.1", settings)[1] == {"b": 30, "hits": 1}
    assert _one("a.b:1|c|@0.3", settings)[1] == {"b": 3.333333333, "hits": 1}
    assert _one("a.b:-4|c|@1", settings)[1] == {"b": -4, "hits": 1}


def test_a_set_counts_its_member_as_a_unique(settings):
    assert _one("web.visitors:u42|s", settings) == (
        (("web",),), {"hits": 1}, ("visitors",), "u42", "shop")


def test_dogstatsd_tags_are_branches_and_its_timestamp_the_time(settings):
    event = parse_line("shop.paid:5|c|#country:uk,beta|T1789999000", settings, NOW)
    assert event.branches == (("shop",), ("country", "uk"), ("beta",))
    assert event.at == 1_789_999_000
    # A container id (DogStatsD 1.2) has nothing to count by.
    assert parse_line("x:1|c|c:abc123", settings, NOW).metrics == {"x": 1, "hits": 1}


def test_gauges_are_set_or_moved_and_timings_are_samples(settings):
    assert parse_line("host.cpu:50|g", settings, NOW).gauges == (("cpu", "=", 50.0),)
    assert parse_line("host.conns:+3|g", settings, NOW).gauges == (("conns", "+", 3.0),)
    assert parse_line("host.conns:-2|g", settings, NOW).gauges == (("conns", "+", -2.0),)
    for kind in ("ms", "h", "d"):
        event = parse_line(f"api.latency:320|{kind}|@0.5", settings, NOW)
        assert event.timings == (("latency", (320.0,)),)
        assert event.branches == (("api",),) and dict(event.metrics) == {"hits": 1}
    assert parse_line("api.latency:1:2.5:3|ms", settings, NOW).timings == \
        (("latency", (1.0, 2.5, 3.0)),)


def test_metric_names_are_made_hailwhale_names():
    assert metric_name("response-time") == "response_time"
    assert metric_name("2xx") == "_2xx"
    assert _one("http.status.2xx:1|c", load_settings(environ={}))[1] == {"_2xx": 1, "hits": 1}


@pytest.mark.parametrize("line, reason", [
    ("no_value", "name:value|type"),
    ("x:1", "name:value|type"),
    (":1|c", "name:value|type"),
    ("x:1|q", "unknown type 'q'"),
    ("x:abc|c", "a counter's value is a number"),
    ("x:inf|c", "must be finite"),
    ("x:1|c|@0", "sample rate"),
    ("x:1|c|@1.5", "sample rate"),
    ("x:1|c|@often", "a sample rate is a number"),
    ("x:1|c|!what", "unknown section"),
    ("a..b:1|c", "dotted parts cannot be empty"),
    ("a.:1|c", "dotted parts cannot be empty"),
    ("x:|s", "a set's value"),
    ("cpu:x|g", "a gauge's value is a number"),
    ("lat:320:|ms", "a timing's value is a number"),
    ("lat:nan|h", "must be finite"),
    ("x:1e13|c", "at most"),
    ("a\x01b.c:1|c", "control characters"),
    ("x:1|c|T12", "at"),
    ("x" * 9000 + ":1|c", "at most 8192 characters"),
    ("hits:u1|s", "hits counts every event"),
])
def test_a_bad_line_is_refused_with_its_reason(settings, line, reason):
    events, refused = parse_packet(f"ok.a:1|c\n{line}\nok.b:1|c\n".encode(), settings, NOW)
    assert [dict(e.metrics) for e in events] == [{"a": 1, "hits": 1}, {"b": 1, "hits": 1}]
    assert len(refused) == 1 and reason in refused[0].reason, refused


def test_empty_lines_and_crlf_are_nothing(settings):
    events, refused = parse_packet(b"\n\na.b:1|c\r\n\r\n", settings, NOW)
    assert len(events) == 1 and not refused


@given(st.binary(max_size=300))
def test_any_packet_parses_into_events_and_refusals_never_an_error(data):
    settings = load_settings(environ={})
    events, refused = parse_packet(data, settings, NOW)
    lines = [line for line in data.decode("utf-8", "replace").split("\n")
             if line.rstrip("\r").strip()]
    assert len(events) + len(refused) == len(lines)


# -- real clients, real processes ------------------------------------------------------------
@pytest.fixture
def deployment(redis_server, real_client):
    """A real Whale, a real Hail with StatsD on a free port, and a way to drain it."""
    real_client.flushall()
    whale_port, hail_port, statsd_port = free_port(), free_port(), free_port()
    env = {"WHALE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
           "HAIL_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/1",
           "WHALE_URL": f"http://127.0.0.1:{whale_port}", "HAILWHALE_STATSD_PK": "apps"}
    whale, _ = start(["whale", "--port", str(whale_port)], env)
    hail, _ = start(["hail", "--port", str(hail_port), "--statsd-port", str(statsd_port)], env,
                    ready="hail listening on")
    buffer = Buffer.from_url(env["HAIL_REDIS_URL"])

    def drained(lines: int) -> dict:
        """Waits until the listener took ``lines`` lines, drains them into Whale with a real
        hailwail, and returns the listener's tallies."""
        deadline = time.monotonic() + 30
        while buffer.statsd_counts().get("lines", 0) < lines:
            assert time.monotonic() < deadline, buffer.statsd_counts()
            time.sleep(0.05)
        done = subprocess.run([str(BIN / "hailwail"), "-q"], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return buffer.statsd_counts()

    def totals(dimensions, metrics: str) -> dict:
        answer = requests.get(f"http://127.0.0.1:{whale_port}/totals", timeout=10, params={
            "pk": "apps", "dimensions": json.dumps(dimensions), "metrics": metrics})
        answer.raise_for_status()
        return answer.json()["totals"][0]["totals"]

    yield statsd_port, drained, totals
    stop(hail)
    stop(whale)


def test_the_statsd_package_over_udp_and_tcp(deployment):
    import statsd

    port, drained, totals = deployment
    udp = statsd.StatsClient("127.0.0.1", port, maxudpsize=8192)
    for _ in range(20):  # 20 packets of 50 lines each: a pipeline sends one packet
        with udp.pipeline() as pipe:
            for i in range(25):
                pipe.incr("py.orders.placed")
                pipe.set("py.visitors", f"v{i}")
    tcp = statsd.TCPStatsClient("127.0.0.1", port)
    tcp.connect()
    for _ in range(300):
        tcp.incr("py.orders.placed", 2)
    for millis in range(1, 101):
        tcp.timing("py.latency", millis)
    tcp.gauge("py.queue", 40)
    tcp.gauge("py.queue", 2, delta=True)
    tcp.gauge("py.queue", -5, delta=True)
    tcp._send("py.queue:bad|g")  # refused, alone (the client sends what it is given)
    tcp.close()
    counts = drained(1000 + 300 + 100 + 4)
    assert counts["packets"] == 20
    assert counts["refused"] == 1
    assert totals(["py", "orders"], "placed")["placed"] == 500 + 600
    assert totals(["py"], "visitors")["visitors"] == 25
    assert totals([], "hits")["hits"] == counts["events"]
    latency = totals(["py"], "latency:count,latency:sum,latency:min,latency:max,latency:p50,"
                             "latency:p99,latency:mean")
    assert latency["latency:count"] == 100 and latency["latency:sum"] == 5050
    assert (latency["latency:min"], latency["latency:max"]) == (1, 100)
    assert latency["latency:mean"] == 50.5
    assert latency["latency:p50"] == pytest.approx(50, rel=0.01)  # rank 49 of 0..99
    assert latency["latency:p99"] == pytest.approx(99, rel=0.01)
    assert totals(["py"], "queue")["queue"] == 37


def test_hot_shots_from_npm_over_udp_and_tcp(deployment):
    node = shutil.which("node")
    script = ROOT / "tests" / "clients" / "hot_shots.js"
    if node is None or not (ROOT / "node_modules" / "hot-shots").is_dir():
        pytest.fail("node and `npm ci` (hot-shots) are needed: ./run-tests installs them")
    port, drained, totals = deployment
    for protocol in ("udp", "tcp"):
        done = subprocess.run([node, str(script), protocol, str(port), "200"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    counts = drained(2 * (3 * 200 + 2))
    assert counts["refused"] == 0
    assert totals(["node", "orders"], "placed")["placed"] == 400
    assert totals(["region", "eu"], "placed")["placed"] == 400
    assert totals(["node"], "visitors")["visitors"] == 100
    # 400 samples of 1..100 ms (each value 4 times): exact count, sum and extremes, and
    # percentiles within the sketch's 1%.
    latency = totals(["node"], "latency:count,latency:sum,latency:max,latency:p90")
    assert (latency["latency:count"], latency["latency:sum"]) == (400, 4 * 5050)
    assert latency["latency:max"] == 100
    assert latency["latency:p90"] == pytest.approx(90, rel=0.01)  # rank 359 of 0..399
    # Each run set the gauge to 200 and moved it by -1: the last value counted.
    assert totals(["node"], "queue:last")["queue:last"] == 199


_lines = st.builds(
    lambda name, value, kind, extra: f"{name}:{value}|{kind}{extra}",
    st.sampled_from(["a.b", "shop.checkout.paid", "x", "a..b", "web.visitors", "r-t.2xx"]),
    st.sampled_from(["1", "2.5", "-3", "+4", "u1", "abc", "", "1:2:3"]),
    st.sampled_from(["c", "s", "g", "ms", "h", "d", "q"]),
    st.sampled_from(["", "|@0.5", "|#country:uk,beta", "|T1789999000", "|@2", "|!x"]))


@given(lines=st.lists(_lines, max_size=6), now=st.floats(1.7e9, 1.8e9))
def test_the_listeners_encoder_makes_what_parsing_and_encoding_make(lines, now):
    """The listener's remembered encodings (hailwhale.statsd.Encoder) give every line the
    wire line, or the refusal, that parsing it afresh at that time gives."""
    from hailwhale import wire
    from hailwhale.statsd import Encoder

    settings = load_settings(environ={})
    encoder = Encoder(settings, "shop")
    for when in (NOW, now):  # the second time from the cache
        expected, reasons = [], []
        for line in lines:
            try:
                expected.append(wire.encode(parse_line(line, settings, when, "shop"), when))
            except BadRequest as exc:
                reasons.append(str(exc))
        items, refused = encoder.encode(lines, when)
        assert items == expected
        assert [r.reason for r in refused] == reasons


def test_the_statsd_daemons_repeater_forwards_into_hail(deployment, tmp_path):
    """A StatsD daemon already in place (npm's statsd) keeps serving its own backends and
    repeats every packet to Hail: its repeater backend, pointed at Hail's StatsD port."""
    import statsd

    node = shutil.which("node")
    daemon_js = ROOT / "node_modules" / "statsd" / "stats.js"
    if node is None or not daemon_js.is_file():
        pytest.fail("node and `npm ci` (statsd) are needed: ./run-tests installs them")
    port, drained, totals = deployment
    daemon_port, management = free_port(), free_port()
    config = tmp_path / "statsd-config.js"
    config.write_text(json.dumps({
        "port": daemon_port, "mgmt_port": management, "flushInterval": 3_600_000,
        "backends": ["./backends/repeater"],
        "repeater": [{"host": "127.0.0.1", "port": port}], "repeaterProtocol": "udp4"}))
    daemon = subprocess.Popen([node, str(daemon_js), str(config)], cwd=daemon_js.parent,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:  # up once its management interface answers
            try:
                socket.create_connection(("127.0.0.1", management), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and daemon.poll() is None, daemon.stdout
                time.sleep(0.2)
        client = statsd.StatsClient("127.0.0.1", daemon_port)
        for i in range(300):
            client.incr("repeated.signups")
            client.set("repeated.visitors", f"v{i % 30}")
            if i % 20 == 19:  # paced: the daemon's socket keeps the kernel's default buffer
                time.sleep(0.01)
        counts = drained(600)
    finally:
        stop(daemon)
    assert counts["refused"] == 0
    assert totals(["repeated"], "signups,visitors") == {"signups": 300, "visitors": 30}
