"""Production serving: ``uwsgi.ini`` run by the real uWSGI, as real processes over real HTTP.

Hail and Whale each run under their own uWSGI master on a free port (given through
``HAIL_PORT`` / ``WHALE_PORT``), on two databases of the harness's redis-server; events go in
through Hail, the real ``hailwail`` command moves them, and Whale must show each exactly once.
Every uWSGI is started in a process group of its own, stopped with SIGTERM (SIGKILL to the
whole group if that does not end it), and checked to have left no process behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hailwhale_bench.kit import process_group

from hailwhale import auth
from hailwhale.connection import connect
from hailwhale.embedded import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="uWSGI processes are inspected through /proc"),
]

REPO = Path(__file__).resolve().parent.parent
INI = REPO / "uwsgi.ini"
BIN = Path(sys.executable).parent
UWSGI = BIN / "uwsgi"
HAILWAIL = BIN / "hailwail"
PORT_VARIABLE = {"whale": "WHALE_PORT", "hail": "HAIL_PORT", "hail-behind-proxy": "HAIL_PORT",
                 None: "WHALE_PORT"}
# Variables that would change what the processes under test do: uWSGI takes any UWSGI_* as an
# option, and the HailWhale settings would leak from the machine into the test.
FOREIGN = ("UWSGI_", "HAILWHALE_", "WHALE_", "HAIL_", "CELERY_")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # uWSGI takes about a second; then SIGKILL


def clean_environ(**variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(FOREIGN)}
    return {**env, **variables}


@dataclass
class Uwsgi:
    """One uWSGI master with its workers, started from ``uwsgi.ini`` (``section`` None: the
    file's default section)."""

    section: str | None
    env: dict[str, str]
    log: Path
    extra: tuple[str, ...] = ()
    url: str = ""
    process: subprocess.Popen | None = None

    @property
    def ini(self) -> str:
        return f"{INI}:{self.section}" if self.section else str(INI)

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> Uwsgi:
        if not UWSGI.exists():
            pytest.fail(f"{UWSGI} is missing: install the test extras (pip install -e '.[test]')")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(UWSGI), "--ini", self.ini, *self.extra], env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.log.parent,  # not the checkout: the ini must not depend on it
                start_new_session=True)  # its own process group, to find every worker
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str) -> None:
        """Wait until ``url`` answers 200, failing with the log if it never does."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"uwsgi --ini {self.ini} exited with {self.process.returncode} "
                            f"before answering:\n{self.output()[-3000:]}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        pytest.fail(f"uwsgi --ini {self.ini} did not answer {url} within {START_TIMEOUT:.0f}s:"
                    f"\n{self.output()[-3000:]}")

    def loaded(self) -> set[int]:
        """The pids that have loaded the app, as uWSGI logs it."""
        return {int(pid) for pid in re.findall(r"WSGI app 0 .* ready .* pid: (\d+)",
                                               self.output())}

    def wait_loaded(self, workers: int) -> None:
        """Wait until ``workers`` processes have loaded the app."""
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.loaded()) < workers:
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"uwsgi --ini {self.ini}: {len(self.loaded())} of {workers} "
                            f"workers loaded the app:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def wait_all_loaded(self, workers: int) -> None:
        """Wait until every worker has loaded the app (lazy-apps: each loads its own, and a
        SIGTERM that lands while one is still loading ends uWSGI with status 22)."""
        deadline = time.monotonic() + START_TIMEOUT
        while self.output().count(") ready in ") < workers:
            if time.monotonic() > deadline:
                pytest.fail(f"not every worker loaded the app:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def workers(self) -> dict[int, str]:
        """The master's worker processes (not its mules)."""
        return {pid: cmd for pid, (ppid, cmd) in process_group(self.pid).items()
                if ppid == self.pid and "mule" not in cmd}

    def stop(self, sig: int = signal.SIGTERM) -> list[str]:
        """Stop the master with ``sig``, SIGKILL the group if it lingers; the processes of
        the group still alive afterwards (none, or it is a failure)."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(5)
        deadline = time.monotonic() + 5
        while process_group(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = process_group(self.pid)
        if left:  # never leave them running, even when the test fails
            os.killpg(self.pid, signal.SIGKILL)
        return [f"{pid}: {cmd}" for pid, (_ppid, cmd) in left.items()]


@dataclass
class Deployment:
    whale_url: str
    hail_url: str
    whale_redis_url: str
    hail_redis_url: str
    whale: Uwsgi
    hail: Uwsgi

    def hailwail(self) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(HAILWAIL)], capture_output=True, text=True, timeout=60,
            env=clean_environ(HAIL_REDIS_URL=self.hail_redis_url, WHALE_URL=self.whale_url))
        assert done.returncode == 0, done.stdout + done.stderr
        return done


@pytest.fixture(scope="module")
def redis_urls(redis_server):
    """(Whale's, Hail's) Redis URLs: databases 3 and 4 of the harness's server, emptied."""
    urls = tuple(f"redis://127.0.0.1:{redis_server.port}/{db}" for db in (3, 4))
    for url in urls:
        client = connect(url)
        client.flushdb()
        client.close()
    return urls


def start_uwsgi(section: str | None, tmp_path: Path, redis_urls, extra=(), **env) -> Uwsgi:
    """A uWSGI of ``section`` on a free port of 127.0.0.1 (``.url``); a variable given as
    None is left unset."""
    port = free_port()
    # No StatsD (its default port would be shared by every Hail) unless a test asks.
    environ = clean_environ(**{"WHALE_REDIS_URL": redis_urls[0],
                               "HAIL_REDIS_URL": redis_urls[1], "HAILWHALE_HOST": "127.0.0.1",
                               "HAILWHALE_STATSD_PORT": "0",
                               PORT_VARIABLE[section]: str(port), **env})
    environ = {name: value for name, value in environ.items() if value is not None}
    log = tmp_path / f"uwsgi-{section or 'default'}.log"
    return Uwsgi(section, environ, log, extra, f"http://127.0.0.1:{port}").start()


@pytest.fixture
def stopped_at_teardown():
    """Collects the uWSGIs a test starts and stops each at teardown, whatever happened."""
    started: list[Uwsgi] = []
    yield started
    left = [line for server in started for line in server.stop()]
    assert not left, f"uWSGI processes left running: {left}"


@pytest.fixture(scope="module")
def deployment(redis_urls, tmp_path_factory):
    """Whale (``uwsgi.ini:whale``) and a Hail node (``uwsgi.ini:hail``), running."""
    tmp_path = tmp_path_factory.mktemp("uwsgi")
    whale = hail = None
    try:
        whale = start_uwsgi("whale", tmp_path, redis_urls)
        hail = start_uwsgi("hail", tmp_path, redis_urls)
        whale.wait_ready(f"{whale.url}/health")
        hail.wait_ready(f"{hail.url}/health")
        whale.wait_loaded(4)
        hail.wait_loaded(4)
        yield Deployment(whale.url, hail.url, *redis_urls, whale, hail)
    finally:
        left = [line for server in (whale, hail) if server for line in server.stop()]
        assert not left, f"uWSGI processes left running: {left}"


def totals(url: str, **params) -> dict:
    answer = requests.get(f"{url}/totals", params={"metrics": "hits,dollars", **params},
                          timeout=10)
    assert answer.status_code == 200, answer.text
    return {tuple(row["dimension"]): row["totals"] for row in answer.json()["totals"]}


def test_events_through_hail_and_hailwail_are_counted_once_by_whale(deployment):
    hail, whale, pk = deployment.hail_url, deployment.whale_url, "uwsgi-flow"
    waiting = requests.get(f"{hail}/health", timeout=10).json()["waiting"]
    # The README's seed events, URL-encoded by requests (?dimension=services&metric=%7B...).
    for params in ({"dimension": "services", "metric": '{"dollars": 200}'},
                   {"dimension": "advertising", "metric": '{"dollars": -2000}'},
                   {"dimensions": '{"sales": "p123"}', "metric": '{"dollars": 500}'}):
        answer = requests.get(f"{hail}/count", params={**params, "pk": pk}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"ok": True, "accepted": 1}
    beacon = requests.get(f"{hail}/count.gif", params={"dimension": "newsletter", "pk": pk},
                          timeout=10)
    assert beacon.status_code == 200, beacon.text
    assert beacon.headers["Content-Type"] == "image/gif" and beacon.content.startswith(b"GIF8")
    batch = [{"pk": pk, "dimensions": ["sales", f"p{i % 4}"], "metrics": {"dollars": 1.5}}
             for i in range(100)]
    answer = requests.post(f"{hail}/count", data=json.dumps(batch), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "accepted": 100}

    def one_event(i: int) -> int:  # concurrent requests spread over Hail's workers and threads
        return requests.get(f"{hail}/count", timeout=10, params={
            "dimension": "services", "metric": '{"dollars": 10}', "pk": pk}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one_event, range(40))) == {200}
    sent = 3 + 1 + 100 + 40

    # Buffered by Hail, not counted yet.
    assert requests.get(f"{hail}/health", timeout=10).json()["waiting"] == waiting + sent
    assert totals(whale, pk=pk)[()] == {"hits": 0, "dollars": 0}

    moved = deployment.hailwail()
    assert f"moved {waiting + sent} events" in moved.stdout, moved.stdout
    expected = {
        (): {"hits": sent, "dollars": 200 - 2000 + 500 + 150 + 400},
        ("services",): {"hits": 41, "dollars": 600},
        ("advertising",): {"hits": 1, "dollars": -2000},
        ("sales",): {"hits": 101, "dollars": 650},
        ("newsletter",): {"hits": 1, "dollars": 0},
    }
    counted = totals(whale, pk=pk, depth=1, threshold=0)
    assert counted == expected

    # A second run finds nothing to move, and nothing is counted twice.
    again = deployment.hailwail()
    assert "moved 0 events" in again.stdout, again.stdout
    assert totals(whale, pk=pk, depth=1, threshold=0) == expected
    health = requests.get(f"{hail}/health", timeout=10).json()
    assert (health["waiting"], health["in_flight"], health["dead"]) == (0, 0, 0)

    # A query, through Whale's uWSGI.
    answer = requests.get(f"{whale}/plotpoints", timeout=10, params={
        "pk": pk, "dimensions": "sales", "metrics": "dollars,dollars/hits", "depth": 1,
        "since": "1h"})
    assert answer.status_code == 200, answer.text
    series = {s["label"]: s for s in answer.json()["series"]}
    assert series["sales: dollars"]["total"] == 650
    assert series["sales: dollars/hits"]["total"] == pytest.approx(650 / 101)
    assert series["sales / p123: dollars"]["total"] == 500
    assert sum(value for _ms, value in series["sales: dollars"]["data"]) == 650
    assert len(series["sales: dollars"]["data"]) >= 3600 // 15  # every bucket of the hour


def test_gauges_and_timings_through_hail_and_hailwail_under_uwsgi(deployment):
    """Issue 11, part 2, as a user sends them: events with timings and gauges into Hail's
    uWSGI (GET and a POST batch), drained by a real hailwail, read from Whale's uWSGI."""
    hail, whale, pk = deployment.hail_url, deployment.whale_url, "uwsgi-kinds"
    samples = [float(ms) for ms in range(1, 201)]
    batch = [{"pk": pk, "dimensions": ["eu", "de" if ms % 2 else "fr"],
              "metrics": {"latency": {"timing": ms}}} for ms in samples]
    answer = requests.post(f"{hail}/count", data=json.dumps(batch), timeout=10)
    assert answer.json() == {"ok": True, "accepted": 200}, answer.text
    for change in ('{"queue": {"gauge": 40}}', '{"queue": {"delta": -3}}'):
        answer = requests.get(f"{hail}/count", timeout=10, params={
            "pk": pk, "dimensions": '["eu", "de"]', "metrics": change})
        assert answer.status_code == 200, answer.text
    moved = deployment.hailwail()
    assert moved.returncode == 0, moved.stderr
    answer = requests.get(f"{whale}/totals", timeout=10, params={
        "pk": pk, "dimensions": "eu", "depth": 1, "threshold": 0,
        "metrics": "latency:count,latency:max,latency:p50,latency:p99,queue"})
    assert answer.status_code == 200, answer.text
    rows = {tuple(row["dimension"]): row["totals"] for row in answer.json()["totals"]}
    assert rows[("eu",)]["latency:count"] == 200 and rows[("eu",)]["latency:max"] == 200
    assert rows[("eu",)]["latency:p50"] == pytest.approx(100, rel=0.01)  # rank 99 of 0..199
    assert rows[("eu",)]["latency:p99"] == pytest.approx(198, rel=0.01)  # rank 197
    assert rows[("eu", "de")]["latency:count"] == 100
    assert rows[("eu", "de")]["queue"] == 37 and rows[("eu", "fr")]["queue"] is None


def test_decisions_and_a_zones_days_under_uwsgi(deployment):
    """Issue 12 through Whale's uWSGI: outcomes counted, /decide's classes and choice (the
    original's basic case), and days in a viewer's zone folded from hours."""
    whale, pk = deployment.whale_url, "uwsgi-decide"
    for option, dollars, visitors in (("a", 5000, 1000), ("b", 0, 2000), ("c", 0, 2000),
                                      ("d", 50, 10)):
        answer = requests.get(f"{whale}/count_decision", timeout=10, params={
            "pk": pk, "decision": "slogan", "option": option,
            "metrics": json.dumps({"dollars": dollars, "visitors": visitors})})
        assert answer.json() == {"ok": True, "counted": 1}, answer.text
    answer = requests.get(f"{whale}/decide", timeout=10, params={
        "pk": pk, "decision": "slogan", "options": '["a", "b", "c", "d"]',
        "metrics": "dollars/visitors", "test_idea_threshold": 0, "bad_idea_threshold": 0})
    decided = answer.json()
    assert (decided["option"], decided["good"], decided["bad"], decided["test"]) == (
        "a", ["a"], ["b", "c"], ["d"]), decided
    assert requests.get(f"{whale}/decisions", params={"pk": pk}, timeout=10).json() == {
        "pk": pk, "decisions": {"slogan": ["a", "b", "c", "d"]}}
    requests.get(f"{whale}/count", timeout=10, params={
        "pk": pk, "dimensions": "shop", "metrics": '{"dollars": 3}'}).raise_for_status()
    days = requests.get(f"{whale}/totals", timeout=10, params={
        "pk": pk, "dimensions": "shop", "metrics": "dollars", "period": "1d:1y",
        "since": "today", "tz": "Asia/Tokyo"}).json()
    assert days["tz"] == "Asia/Tokyo" and days["totals"][0]["totals"] == {"dollars": 3}


def test_bad_input_is_a_400_through_uwsgi(deployment):
    hail, whale = deployment.hail_url, deployment.whale_url
    waiting = requests.get(f"{hail}/health", timeout=10).json()["waiting"]
    bad_event = requests.get(f"{hail}/count", params={"metrics": '{"x": "y"}'}, timeout=10)
    assert bad_event.status_code == 400
    assert bad_event.json()["param"] == "metrics.x"
    bad_batch = requests.post(f"{hail}/count", data='[{"metrics": {"x": 1}}, {"metrics": 5}]',
                              timeout=10)
    assert bad_batch.status_code == 400
    assert bad_batch.json()["error"].startswith("event 1: ")
    assert requests.get(f"{hail}/health", timeout=10).json()["waiting"] == waiting

    bad_query = requests.get(f"{whale}/plotpoints", params={"metrics": "dollars/("},
                             timeout=10)
    assert bad_query.status_code == 400
    assert bad_query.json()["param"] == "metrics"
    bad_period = requests.get(f"{whale}/totals", params={"period": "2m:1y"}, timeout=10)
    assert bad_period.status_code == 400 and bad_period.json()["param"] == "period"
    bad_count = requests.get(f"{whale}/count", params={"metric": '{"dollars": "lots"}'},
                             timeout=10)
    assert bad_count.status_code == 400 and bad_count.json()["param"] == "metrics.dollars"


def test_long_query_strings_fit_the_request_buffer(deployment):
    """A GET event far past uWSGI's default 4 KiB request buffer (buffer-size is 64 KiB)."""
    pk = "uwsgi-long"
    branches = {f"branch{b}": [f"{b}-{level}-" + "x" * 150 for level in range(7)]
                for b in range(16)}
    params = {"pk": pk, "dimensions": json.dumps(branches), "metrics": '{"dollars": 1}'}
    url = requests.Request("GET", f"{deployment.hail_url}/count", params=params).prepare().url
    assert len(url) > 16 * 1024  # four times the default
    for base in (deployment.hail_url, deployment.whale_url):
        answer = requests.get(f"{base}/count", params=params, timeout=10)
        assert answer.status_code == 200, answer.text
    deployment.hailwail()
    deepest = requests.get(f"{deployment.whale_url}/totals", timeout=10, params={
        "pk": pk, "metrics": "hits", "dimensions": json.dumps(["branch7", *branches["branch7"]])})
    assert deepest.status_code == 200, deepest.text
    assert deepest.json()["totals"][0]["totals"] == {"hits": 2}  # once by Whale, once via Hail


def test_a_query_string_too_long_for_uwsgi_is_refused_not_counted_empty(deployment):
    """Between about 32 and 64 KiB, uWSGI logs "unable to add QUERY_STRING" and calls the
    app without it: it must be refused, not counted as a root-only event with no metrics."""
    branches = {f"b{b}": [f"{b}{level}" + "é" * 60 for level in range(7)] for b in range(16)}
    params = {"pk": "uwsgi-too-long", "dimensions": json.dumps(branches, ensure_ascii=False),
              "metrics": '{"dollars": 1}'}
    url = requests.Request("GET", f"{deployment.whale_url}/count", params=params).prepare().url
    assert 34 * 1024 < len(url) < 60 * 1024
    answer = requests.get(f"{deployment.whale_url}/count", params=params, timeout=10)
    assert answer.status_code == 400, answer.text


def test_each_worker_loads_its_own_app(deployment):
    """lazy-apps: the app (and its Redis clients) is built in every worker after the fork,
    never in the master, so no connection is shared between processes."""
    for server, processes in ((deployment.whale, 4), (deployment.hail, 4)):
        workers = server.workers()
        assert len(workers) == processes, workers
        assert all("hailwhale-" in cmd and "uWSGI worker" in cmd for cmd in workers.values())
        assert server.loaded() == set(workers), (server.loaded(), workers)


def test_default_section_serves_whale(redis_urls, tmp_path, stopped_at_teardown):
    """``uwsgi --ini uwsgi.ini`` is Whale; options after --ini override the file's."""
    whale = start_uwsgi(None, tmp_path, redis_urls, extra=("--processes", "2"))
    stopped_at_teardown.append(whale)
    whale.wait_ready(f"{whale.url}/health")
    assert requests.get(f"{whale.url}/api", timeout=10).json()["service"] == "whale"
    counted = requests.get(f"{whale.url}/count", timeout=10, params={
        "pk": "uwsgi-default", "dimension": "services", "metric": '{"dollars": 200}'})
    assert counted.json() == {"ok": True, "counted": 1}
    assert totals(whale.url, pk="uwsgi-default")[()] == {"hits": 1, "dollars": 200}
    assert len(whale.workers()) == 2
    whale.wait_all_loaded(2)
    assert whale.stop() == []
    assert whale.process.returncode == 0, whale.output()[-3000:]


def test_hail_behind_a_proxy_runs_plain_workers(redis_urls, tmp_path, stopped_at_teardown):
    """``uwsgi.ini:hail-behind-proxy``: the same app in one-request-at-a-time workers, with
    harakiri, for a node whose proxy buffers requests (its events reach Hail's buffer)."""
    hail = start_uwsgi("hail-behind-proxy", tmp_path, redis_urls)
    stopped_at_teardown.append(hail)
    hail.wait_ready(f"{hail.url}/health")
    waiting = requests.get(f"{hail.url}/health", timeout=10).json()["waiting"]
    answer = requests.get(f"{hail.url}/count", timeout=10, params={"pk": "uwsgi-proxied"})
    assert answer.json() == {"ok": True, "accepted": 1}
    assert requests.get(f"{hail.url}/health", timeout=10).json()["waiting"] == waiting + 1
    hail.wait_all_loaded(4)
    assert "gevent" not in hail.output() and "async cores" not in hail.output()
    assert len(hail.workers()) == 4
    assert hail.stop() == []


@pytest.mark.parametrize("section, env, bound", [
    (None, {}, "8080"),
    ("whale", {}, "8080"),
    ("hail", {}, "8081"),
    (None, {"WHALE_PORT": "9090", "HAIL_PORT": "9191"}, "9090"),
    ("whale", {"WHALE_PORT": "9090", "HAIL_PORT": "9191"}, "9090"),
    ("hail", {"WHALE_PORT": "9090", "HAIL_PORT": "9191"}, "9191"),
    (None, {"WHALE_PORT": ""}, "8080"),  # empty is unset (uWSGI would pick a random port)
    ("hail", {"HAIL_PORT": ""}, "8081"),
    ("hail-behind-proxy", {"WHALE_PORT": "9090", "HAIL_PORT": "9191"}, "9191"),
])
def test_ports_come_from_the_environment_with_defaults(section, env, bound, tmp_path):
    """The address each section binds, read from uWSGI's own --show-config. The host is
    TEST-NET-3 (RFC 5737), never a local address, so the bind fails and nothing serves."""
    ini = f"{INI}:{section}" if section else str(INI)
    environ = clean_environ(HAILWHALE_HOST="203.0.113.1", **env)
    done = subprocess.run([str(UWSGI), "--ini", ini, "--show-config"], env=environ,
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert re.findall(r"^http-socket = (.*)$", output, re.MULTILINE) == [f"203.0.113.1:{bound}"]
    assert "Cannot assign requested address" in output


def test_a_bad_setting_stops_uwsgi_instead_of_serving(redis_urls, tmp_path,
                                                      stopped_at_teardown):
    """need-app: a worker that cannot build the app takes the instance down (exit 22), rather
    than a master respawning broken workers forever."""
    whale = start_uwsgi("whale", tmp_path, redis_urls, HAILWHALE_PERIODS="every now and then")
    stopped_at_teardown.append(whale)
    try:
        whale.process.wait(START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"uwsgi kept running with a bad setting:\n{whale.output()[-3000:]}")
    assert whale.process.returncode != 0
    assert "ConfigurationError: a period is INTERVAL:RETENTION" in whale.output()


def test_sigterm_stops_master_and_workers_even_while_they_start(redis_urls, tmp_path,
                                                               stopped_at_teardown):
    """die-on-term: SIGTERM stops uWSGI (2.0 would reload), master and every worker, also
    at the moment the first worker answers while the others may still be loading the app:
    the moment uWSGI's graceful-shutdown hook would hang forever."""
    servers = [start_uwsgi(section, tmp_path, redis_urls) for section in ("whale", "hail")]
    stopped_at_teardown.extend(servers)
    for server in servers:
        server.wait_ready(f"{server.url}/health")
        server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            # 0, or 22 when a worker was still importing the app: the interrupted import
            # fails it, and need-app ends the instance.
            assert server.process.wait(STOP_TIMEOUT) in (0, 22), server.output()[-3000:]
        except subprocess.TimeoutExpired:
            pytest.fail(f"uwsgi --ini {server.ini} ignored SIGTERM:\n{server.output()[-3000:]}")
        assert server.stop() == []


def test_workers_die_with_their_master(redis_urls, tmp_path, stopped_at_teardown):
    """no-orphans: a master killed outright (SIGKILL, the OOM killer) takes its workers along,
    so none keeps serving, or holding the port, unsupervised."""
    whale = start_uwsgi("whale", tmp_path, redis_urls)
    stopped_at_teardown.append(whale)
    whale.wait_ready(f"{whale.url}/health")
    workers = set(whale.workers())
    assert len(workers) == 4
    whale.process.kill()
    whale.process.wait(10)
    deadline = time.monotonic() + 10
    while set(process_group(whale.pid)) & workers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(process_group(whale.pid)) & workers, process_group(whale.pid)


SECRET = "uwsgi-test-secret-0123456789-abcdefghij"


def test_with_a_secret_beacons_hailwail_and_reads_carry_tokens(redis_server, tmp_path,
                                                               stopped_at_teardown):
    """A guarded deployment under uwsgi.ini: a page's write token counts below its prefix
    only, hailwail makes its own admin token from the secret, reads need a read token."""
    urls = tuple(f"redis://127.0.0.1:{redis_server.port}/{db}" for db in (5, 6))
    for url in urls:
        connect(url).flushdb()
    whale = start_uwsgi("whale", tmp_path, urls, HAILWHALE_SECRET=SECRET)
    hail = start_uwsgi("hail", tmp_path, urls, HAILWHALE_SECRET=SECRET)
    stopped_at_teardown.extend([whale, hail])
    whale.wait_ready(f"{whale.url}/health")
    hail.wait_ready(f"{hail.url}/health")
    assert requests.get(f"{hail.url}/health", timeout=10).json()["auth"] == "tokens"
    token = subprocess.run([str(BIN / "hailwhale"), "token", "--can", "write", "--pk", "shop",
                            "--dimensions", '["pageviews"]'], capture_output=True, text=True,
                           env=clean_environ(HAILWHALE_SECRET=SECRET), timeout=30)
    beacon = token.stdout.strip()
    params = {"pk": "shop", "dimensions": '["pageviews", "home"]', "token": beacon}
    for _ in range(3):
        assert requests.get(f"{hail.url}/count.gif", params=params, timeout=10).ok
    refused = requests.get(f"{hail.url}/count.gif",
                           params={**params, "dimensions": '["admin"]'}, timeout=10)
    assert refused.status_code == 403 and refused.json()["param"] == "token"
    assert requests.get(f"{hail.url}/count", params={"pk": "shop"}, timeout=10)\
        .status_code == 401
    # Whale refuses a batch from anyone without an admin token...
    forged = requests.post(f"{whale.url}/batch", data=json.dumps({"id": "x", "events": []}),
                           timeout=10)
    assert forged.status_code == 401
    # ...and takes hailwail's, made from the same secret.
    done = subprocess.run([str(HAILWAIL)], capture_output=True, text=True, timeout=60,
                          env=clean_environ(HAIL_REDIS_URL=urls[1], WHALE_URL=whale.url,
                                            HAILWHALE_SECRET=SECRET))
    assert done.returncode == 0 and "moved 3 events" in done.stdout, done.stdout + done.stderr
    read = auth.issue(SECRET, "read", ["shop"])
    assert requests.get(f"{whale.url}/totals", params={"pk": "shop"}, timeout=10)\
        .status_code == 401
    answer = requests.get(f"{whale.url}/totals", params={"pk": "shop"}, timeout=10,
                          headers={"Authorization": f"Bearer {read}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["totals"][0]["totals"]["hits"] == 3


@pytest.mark.parametrize("section", ["whale", "hail"])
def test_uwsgi_refuses_to_serve_open_on_every_interface(section, redis_urls, tmp_path,
                                                        stopped_at_teardown):
    """No SECRET and uwsgi.ini's default bind (every IPv4 interface): the app refuses to
    load, and need-app stops uWSGI, saying why; HAILWHALE_ALLOW_OPEN=1 lets it serve."""
    server = start_uwsgi(section, tmp_path, redis_urls, HAILWHALE_HOST=None)
    stopped_at_teardown.append(server)
    try:
        server.process.wait(START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"uwsgi served open on every interface:\n{server.output()[-3000:]}")
    assert server.process.returncode != 0
    assert "refusing to serve" in server.output() and "HAILWHALE_ALLOW_OPEN" in server.output()
    allowed = start_uwsgi(section, tmp_path, redis_urls, HAILWHALE_HOST=None,
                          HAILWHALE_ALLOW_OPEN="1")
    stopped_at_teardown.append(allowed)
    allowed.wait_ready(allowed.url + "/health")
    assert requests.get(allowed.url + "/health", timeout=10).json()["auth"] == "open"


def raw_exchange(url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send ``request`` as bytes on a new connection, close our side, read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


RAW_REQUESTS = {
    "no HTTP version": (b"GET /count\r\n\r\n", "request line"),
    "not HTTP at all": (b"\x00\x01\x02 garbage\r\n\r\n", "request line"),
    "Content-Length not a number": (
        b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "Content-Length"),
    "body shorter than Content-Length": (
        b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{\"pk\":", "body"),
    "escape that is not UTF-8": (b"GET /count?pk=%ff HTTP/1.0\r\n\r\n", "query"),
}


@pytest.mark.parametrize("case", sorted(RAW_REQUESTS))
@pytest.mark.parametrize("app", ["hail", "whale"])
def test_malformed_requests_are_json_400s_through_uwsgi(deployment, app, case):
    """Bytes no HTTP client would send, straight onto uWSGI's socket: a JSON 400 naming what
    is wrong, never uWSGI's or Python's HTML, and nothing buffered or counted."""
    url = deployment.hail_url if app == "hail" else deployment.whale_url
    waiting = requests.get(f"{deployment.hail_url}/health", timeout=10).json()["waiting"]
    request, named = RAW_REQUESTS[case]
    answer = raw_exchange(url, request)
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0]
    assert status_line.split()[1:2] == [b"400"], answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(content)["error"].startswith(named), content
    assert requests.get(f"{deployment.hail_url}/health", timeout=10).json()["waiting"] == waiting


class SlowClients:
    """``heads`` connections that send a request head, and ``bodies`` that send a POST's
    head and then its body, each a few bytes every ``every`` seconds, never finishing."""

    def __init__(self, url: str, heads: int, bodies: int, every: float = 1.0):
        host, port = url.removeprefix("http://").split(":")
        self.every, self.sockets, self.closed = every, [], threading.Event()
        for i in range(heads + bodies):
            conn = socket.create_connection((host, int(port)), timeout=10)
            conn.setblocking(False)
            if i < heads:
                conn.sendall(b"GET /count?pk=slow HTTP/1.1\r\nHost: x\r\n")
            else:
                conn.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                             b"x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\npk=slow&")
            self.sockets.append(conn)
        self.dripper = threading.Thread(target=self._drip, daemon=True)
        self.dripper.start()

    def _drip(self) -> None:
        while not self.closed.wait(self.every):
            for i, conn in enumerate(self.sockets):
                try:
                    conn.send(b"X-Slow: 1\r\n" if i % 2 else b"x")  # a header line, or body
                except OSError:
                    pass

    def still_open(self) -> int:
        """How many of the connections the server has not closed."""
        alive = 0
        for conn in self.sockets:
            try:
                alive += conn.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        self.closed.set()
        self.dripper.join()
        for conn in self.sockets:
            conn.close()


def test_a_thousand_slow_clients_do_not_stop_a_hail_node(deployment):
    """1,000 connections dripping their head or their body (the slowloris attack) hold none
    of the node's workers: others are answered at once, and their events are counted."""
    hail, pk = deployment.hail_url, "uwsgi-slowloris"
    slow = SlowClients(hail, heads=500, bodies=500)
    try:
        time.sleep(2)  # every slow connection accepted, its head or body started
        assert slow.still_open() == 1000  # the node did not just drop them
        answers = []
        for i in range(40):
            started = time.monotonic()
            answer = requests.get(f"{hail}/count", timeout=5, params={
                "pk": pk, "dimension": "fast", "metric": json.dumps({"dollars": i})})
            answers.append((answer.status_code, time.monotonic() - started))
        assert {status for status, _ in answers} == {200}
        assert max(seconds for _, seconds in answers) < 2.0, answers
        assert slow.still_open() == 1000
    finally:
        slow.close()
    deployment.hailwail()
    assert totals(deployment.whale_url, pk=pk)[()] == {"hits": 40, "dollars": sum(range(40))}


def test_heavy_queries_share_the_nodes_slots_across_workers(deployment):
    """The slots are the node's, not a worker's: with both taken (here by this test, as two
    busy workers would), a heavy query on any worker is a 503 at once, while counting and
    light queries are answered; freed, the heavy query runs."""
    from hailwhale.admission import Slots

    whale, pk = deployment.whale_url, "uwsgi-heavy"
    events = "\n".join(json.dumps({"pk": pk, "dimensions": ["wide", f"c{i}"]})
                       for i in range(600))
    assert requests.post(f"{whale}/count", data=events, timeout=30).status_code == 200
    heavy = {"pk": pk, "dimensions": "wide", "depth": 1, "threshold": 0, "since": "3h"}
    node = Slots(2, f"uwsgi-{deployment.whale.pid}")
    held = [node.acquire(), node.acquire()]
    try:
        for _ in range(8):  # whichever worker takes it
            refused = requests.get(f"{whale}/plotpoints", params=heavy, timeout=10)
            assert refused.status_code == 503, refused.text
            assert "heavy queries are running" in refused.json()["error"]
        counted = requests.get(f"{whale}/count", params={"pk": pk, "dimension": "wide"},
                               timeout=10)
        assert counted.json() == {"ok": True, "counted": 1}
        light = requests.get(f"{whale}/totals", params={"pk": pk, "dimensions": "wide"},
                             timeout=10)
        assert light.json()["totals"][0]["totals"]["hits"] == 601
    finally:
        for fd in held:
            Slots.release(fd)
    answer = requests.get(f"{whale}/plotpoints", params=heavy, timeout=30)
    assert answer.status_code == 200 and len(answer.json()["series"]) == 601


def test_statsd_into_a_hail_node_under_uwsgi(redis_urls, tmp_path, stopped_at_teardown):
    """``uwsgi.ini:hail`` runs the StatsD listener in a mule beside the gevent workers: the
    `statsd` client's lines over UDP and TCP reach the node's buffer, and a mule killed is
    started again by the master."""
    import statsd

    from hailwhale.buffer import Buffer

    port = free_port()
    hail = start_uwsgi("hail", tmp_path, redis_urls, HAILWHALE_STATSD_PORT=str(port),
                       HAILWHALE_STATSD_PK="uwsgi-statsd")
    stopped_at_teardown.append(hail)
    hail.wait_ready(f"{hail.url}/health")
    buffer = Buffer(connect(redis_urls[1]))
    before = buffer.statsd_counts().get("events", 0)

    def sent(count: int) -> None:
        deadline = time.monotonic() + 30
        while buffer.statsd_counts().get("events", 0) < before + count:
            assert time.monotonic() < deadline, (buffer.statsd_counts(), hail.output()[-2000:])
            time.sleep(0.1)

    deadline = time.monotonic() + 30
    while "statsd: listening on" not in hail.output():
        assert time.monotonic() < deadline, hail.output()[-2000:]
        time.sleep(0.1)
    statsd.StatsClient("127.0.0.1", port).incr("mule.orders")
    tcp = statsd.TCPStatsClient("127.0.0.1", port)
    tcp.connect()
    tcp.incr("mule.orders", 4)
    tcp.close()
    sent(2)
    statsd_health = requests.get(f"{hail.url}/health", timeout=10).json()["statsd"]
    assert statsd_health["port"] == port and statsd_health["events"] >= before + 2
    lines = [line for line in buffer.redis.lrange("hw:{%hail}:buffer", 0, -1)
             if "uwsgi-statsd" in line]
    assert len(lines) == 2
    # The mule, killed, is started again by the master, and listens again.
    mules = [pid for pid, (_ppid, name) in process_group(hail.process.pid).items()
             if "mule" in name]
    assert len(mules) == 1, process_group(hail.process.pid)
    os.kill(mules[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        statsd.StatsClient("127.0.0.1", port).incr("mule.after")
        if buffer.statsd_counts().get("events", 0) >= before + 3:
            break
        assert time.monotonic() < deadline, hail.output()[-2000:]
        time.sleep(0.5)
    assert hail.stop() == []


def test_rank_through_hail_hailwail_and_whale_under_uwsgi(deployment):
    """Issue 12, part 2, as a user runs it: the original suite's two ranking cases sent to
    Hail's uWSGI, drained by a real hailwail, ranked by Whale's uWSGI (tests/test_rank.py
    has the rule itself; here each value is spread over 20 events, as there)."""
    hail, whale = deployment.hail_url, deployment.whale_url
    scalar = {("t", "a", "asub1"): 1, ("t", "a", "asub2"): 30, ("t", "b"): 80, ("t", "c"): 10}
    ratio = {("t", "a", "asub1"): (54989, 4999), ("t", "a", "asub2"): (375000, 25000),
             ("t", "b"): (100000, 20000), ("t", "c"): (5, 1)}
    events = [{"pk": "uwsgi-rank", "dimensions": list(path), "metrics": {"value": value / 20}}
              for path, value in scalar.items() for _ in range(20)]
    events += [{"pk": "uwsgi-ratio", "dimensions": list(path),
                "metrics": {"value": value, "visitors": visitors}}
               for path, (value, visitors) in ratio.items()]
    answer = requests.post(f"{hail}/count", data=json.dumps(events), timeout=10)
    assert answer.json() == {"ok": True, "accepted": len(events)}, answer.text
    deployment.hailwail()

    def important(**params) -> dict:
        answer = requests.get(f"{whale}/rank", params={"dimensions": '["t"]', **params},
                              timeout=10)
        assert answer.status_code == 200, answer.text
        return {key: row["important"] for key, row in answer.json()["ranked"].items()}

    assert important(pk="uwsgi-rank", value="value") == {
        '["t","b"]': True, '["t","a","asub2"]': True, '["t","a"]': False,
        '["t","c"]': False, '["t","a","asub1"]': False}
    assert important(pk="uwsgi-ratio", value="value/visitors") == {
        '["t","b"]': True, '["t","a","asub2"]': True, '["t","a"]': False,
        '["t","a","asub1"]': False, '["t","c"]': False}
    one = important(pk="uwsgi-ratio", value="value/visitors", recursive="false")
    assert '["t","a","asub1"]' not in one and one['["t","a"]'] is True
    refused = requests.get(f"{whale}/rank", params={"value": "value,visitors"}, timeout=10)
    assert refused.status_code == 400 and refused.json()["param"] == "value"
