"""A real Prometheus (Debian's ``prometheus``) scraping Whale and a Hail node under
``uwsgi.ini``, as the README's scrape configuration says: ``metrics_path: /prometheus`` and a
read token for every pk in a credentials file. Events go in through Hail's four gevent
workers and its StatsD mule, the real ``hailwail`` moves them, Whale's four workers count and
answer queries; Prometheus' HTTP API must then show exactly what was sent, summed over every
worker. The scraped text passes ``promtool check metrics``; a worker killed keeps its counts;
a node started again starts from zero in a directory of its own.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from test_uwsgi import BIN, clean_environ, start_uwsgi

from hailwhale import auth
from hailwhale.buffer import Buffer
from hailwhale.connection import connect
from hailwhale.embedded import free_port

pytestmark = pytest.mark.e2e

SECRET = "p" * 40
HAILED, POSTED, STATSD_GOOD, STATSD_BAD, PLOTS = 200, 100, 5, 2, 12
WAIT = 30.0  # seconds for Prometheus to show a value (it scrapes every second)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: install Debian's prometheus package "
                    "(apt-get install prometheus; ./run-tests does)")
    return found


class Prometheus:
    """A private Prometheus on a free port of 127.0.0.1, its data in a temporary folder,
    scraping ``targets`` (job -> host:port) every second with the README's settings."""

    def __init__(self, tmp_path: Path, targets: dict[str, str], token: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp_path / "token").write_text(token)  # as `hailwhale token ... > file` writes it
        jobs = "".join(f"""
  - job_name: {job}
    metrics_path: /prometheus
    authorization:
      credentials_file: {tmp_path / "token"}
    static_configs:
      - targets: ["{target}"]
""" for job, target in targets.items())
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          f"scrape_configs:{jobs}")
        check = subprocess.run([_binary("promtool"), "check", "config", str(config)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = tmp_path / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [_binary("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=tmp_path)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prometheus did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def query(self, promql: str) -> float | None:
        """The sum of an instant query's values, None when it has none."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql},
                              timeout=10).json()
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        return sum(float(item["value"][1]) for item in result) if result else None

    def wait_for(self, promql: str, expected: float) -> None:
        """Wait until ``promql`` reads ``expected`` (the next scrapes), failing with what it
        read and the targets' state if it never does."""
        deadline = time.monotonic() + WAIT
        while (found := self.query(promql)) != expected:
            if time.monotonic() > deadline:
                targets = requests.get(f"{self.url}/api/v1/targets", timeout=10).json()
                health = [(t["labels"]["job"], t["health"], t["lastError"])
                          for t in targets["data"]["activeTargets"]]
                pytest.fail(f"{promql} = {found}, not {expected}; targets {health}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def node_directories(tmpdir: Path, master: int) -> list[Path]:
    """The multiprocess directories of the uWSGI master ``master`` (one expected)."""
    return [Path(p) for p in glob.glob(str(tmpdir / f"hailwhale-{os.getuid()}" /
                                           f"prometheus-{master}-*"))]


def accepted_by_process(directory: Path) -> dict[int, float]:
    """Each process's own count of events Hail accepted, from its file in the node's
    directory: what the scrape sums."""
    found = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "hailwhale_events_accepted_total" and sample.value:
                    found[int(path.stem.split("_")[1])] = sample.value
    return found


def scrape(url: str, token: str) -> str:
    answer = requests.get(f"{url}/prometheus", timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return answer.text


def sample(text: str, name: str, **labels) -> float:
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_real_prometheus_scrapes_whale_and_hail_under_uwsgi(redis_server, tmp_path):
    urls = tuple(f"redis://127.0.0.1:{redis_server.port}/{db}" for db in (8, 9))
    for url in urls:
        connect(url).flushdb()
    tmpdir = tmp_path / "tmp"  # the nodes' $TMPDIR, where their hailwhale-<uid> goes
    tmpdir.mkdir()
    statsd_port = free_port()
    env = {"HAILWHALE_SECRET": SECRET, "TMPDIR": str(tmpdir)}
    whale = start_uwsgi("whale", tmp_path, urls, **env)
    hail = start_uwsgi("hail", tmp_path, urls, HAILWHALE_STATSD_PORT=str(statsd_port), **env)
    servers, prometheus = [whale, hail], None
    try:
        for server in servers:
            server.wait_ready(f"{server.url}/health")
            server.wait_loaded(4)
        # The README's token for Prometheus, from the command it gives.
        made = subprocess.run([str(BIN / "hailwhale"), "token", "--can", "read", "--pk", "*",
                               "--expires", "never"], capture_output=True, text=True,
                              env=clean_environ(HAILWHALE_SECRET=SECRET), timeout=30)
        assert made.returncode == 0, made.stderr
        reader = made.stdout.strip()
        prometheus = Prometheus(tmp_path, {"whale": whale.url[len("http://"):],
                                           "hail": hail.url[len("http://"):]}, made.stdout)
        assert requests.get(f"{hail.url}/prometheus", timeout=10).status_code == 401
        writer = {"Authorization": f"Bearer {auth.issue(SECRET, 'write', ['*'])}"}

        def hailed(i: int) -> int:  # a new connection each, spread over the four workers
            return requests.get(f"{hail.url}/count", headers=writer, timeout=10, params={
                "dimensions": f'["site", "p{i % 7}"]', "metrics": '{"n": 2}'}).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(hailed, range(HAILED))) == {200}
        batch = [{"dimensions": ["posted"], "metrics": {"n": 1}}] * POSTED
        assert requests.post(f"{hail.url}/count", json=batch, headers=writer,
                             timeout=10).json() == {"ok": True, "accepted": POSTED}
        for _ in range(3):
            assert requests.get(f"{hail.url}/count", params={"metrics": "{"}, headers=writer,
                                timeout=10).status_code == 400
        # StatsD into the mule: good lines and bad ones, a packet each.
        while "statsd: listening on" not in hail.output():
            time.sleep(0.05)
        buffer = Buffer(connect(urls[1]))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for n in range(STATSD_GOOD):
                udp.sendto(f"mule.n{n}:1|c".encode(), ("127.0.0.1", statsd_port))
            for _ in range(STATSD_BAD):
                udp.sendto(b"no value here", ("127.0.0.1", statsd_port))
        deadline = time.monotonic() + WAIT
        while buffer.statsd_counts().get("lines", 0) < STATSD_GOOD + STATSD_BAD:
            assert time.monotonic() < deadline, buffer.statsd_counts()
            time.sleep(0.05)
        # Each worker counted its own share; the scrape sums them.
        [directory] = node_directories(tmpdir, hail.pid)
        shares = accepted_by_process(directory)
        assert sum(shares.values()) == HAILED + POSTED
        assert len(shares) >= 2, shares  # the requests reached several workers
        print(f"\nHail workers' shares of {HAILED + POSTED} events: {shares}")
        assert set(shares) <= set(hail.workers())

        done = subprocess.run([str(BIN / "hailwail")], capture_output=True, text=True,
                              timeout=60, env=clean_environ(HAIL_REDIS_URL=urls[1],
                                                            WHALE_URL=whale.url, **env))
        events = HAILED + POSTED + STATSD_GOOD
        moved = re.search(r"moved (\d+) events in (\d+) batches", done.stdout)
        assert done.returncode == 0 and moved and int(moved.group(1)) == events, \
            (done.stdout, done.stderr, buffer.dead_letters(3), whale.output()[-3000:])
        buffer.dead_letter("by-hand", [("e1", "why"), ("e2", "why")])
        read = {"Authorization": f"Bearer {reader}"}

        def plotted(i: int) -> int:
            return requests.get(f"{whale.url}/plotpoints", headers=read, timeout=10, params={
                "dimensions": "site", "depth": 1, "since": "10m"}).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(plotted, range(PLOTS))) == {200}

        expected = {
            'up{job="whale"}': 1, 'up{job="hail"}': 1,
            'hailwhale_redis_up{job="whale"}': 1, 'hailwhale_redis_up{job="hail"}': 1,
            'hailwhale_events_accepted_total{job="hail", app="hail"}': HAILED + POSTED,
            'hailwhale_http_requests_total{job="hail", route="/count", method="GET", '
            'status="200"}': HAILED,
            'hailwhale_http_requests_total{job="hail", route="/count", method="POST", '
            'status="200"}': 1,
            'hailwhale_http_requests_total{job="hail", route="/count", status="400"}': 3,
            'hailwhale_http_request_duration_seconds_count{job="hail", route="/count"}':
                HAILED + 1 + 3,
            'hailwhale_statsd_packets_total{job="hail"}': STATSD_GOOD + STATSD_BAD,
            'hailwhale_statsd_events_total{job="hail"}': STATSD_GOOD,
            'hailwhale_statsd_refused_lines_total{job="hail"}': STATSD_BAD,
            'hailwhale_buffer_events{job="hail"}': 0,
            'hailwhale_buffer_batches_in_flight{job="hail"}': 0,
            'hailwhale_buffer_oldest_age_seconds{job="hail"}': 0,
            'hailwhale_dead_letters{job="hail"}': 2,
            'hailwhale_events_counted_total{job="whale"}': events,
            'hailwhale_batches_total{job="whale", result="applied"}': int(moved.group(2)),
            'hailwhale_batches_total{job="whale", result="duplicate"}': 0,
            'hailwhale_batch_apply_duration_seconds_count{job="whale"}': int(moved.group(2)),
            'hailwhale_events_rejected_total{job="whale"}': 0,
            'hailwhale_http_request_duration_seconds_count{job="whale", '
            'route="/plotpoints"}': PLOTS,
            'hailwhale_redis_errors_total': 0,
            # Only the scrape itself is in progress when Prometheus asks.
            'hailwhale_http_requests_in_progress{job="whale"}': 1,
        }
        for promql, value in expected.items():
            prometheus.wait_for(promql, value)
        print(f"\nPrometheus read: {', '.join(f'{q} = {v}' for q, v in expected.items())}")

        # What Prometheus read passes promtool's checks too.
        promtool = _binary("promtool")
        for server in servers:
            check = subprocess.run([promtool, "check", "metrics"], timeout=30,
                                   input=scrape(server.url, reader).encode(),
                                   capture_output=True)
            assert check.returncode == 0, check.stdout + check.stderr

        # A worker killed outright: its counts stay in the sum, its in-progress gauge goes.
        victim = next(pid for pid in shares if pid in hail.workers())
        os.kill(victim, signal.SIGKILL)
        text = scrape(hail.url, reader)
        assert sample(text, "hailwhale_events_accepted_total") == HAILED + POSTED
        assert sample(text, "hailwhale_http_requests_in_progress") == 1

        # A node started again has a new, empty directory; the one of the run gone goes.
        hail.stop()
        hail = start_uwsgi("hail", tmp_path, urls, **env)
        servers[1] = hail
        hail.wait_ready(f"{hail.url}/health")
        [fresh] = node_directories(tmpdir, hail.pid)
        assert fresh != directory and not directory.exists()
        assert sample(scrape(hail.url, reader), "hailwhale_events_accepted_total") == 0
    finally:
        if prometheus is not None:
            prometheus.stop()
        left = [line for server in servers for line in server.stop()]
        assert not left, f"uWSGI processes left running: {left}"
