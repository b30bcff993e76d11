"""End to end: the installed ``hailwhale`` command as real processes, over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from processes import HAILWHALE, start, stop

from hailwhale.embedded import free_port

pytestmark = pytest.mark.e2e
@pytest.fixture
def whale_process(redis_server, real_client):
    port = free_port()
    process, _ = start(["whale", "--port", str(port)], {"WHALE_REDIS_URL": redis_server.url})
    yield f"http://127.0.0.1:{port}"
    stop(process)


def test_whale_counts_and_answers_over_http(whale_process):
    url = whale_process
    for query in ('dimension=services&metric={"dollars": 200}',
                  'dimension=advertising&metric={"dollars": -2000}',
                  'dimensions={"sales": "p123"}&metric={"dollars": 500}'):
        assert requests.get(f"{url}/count?{query}", timeout=5).json()["ok"]
    batch = "\n".join(json.dumps({"dimensions": ["sales", f"p{i % 3}"],
                                  "metrics": {"dollars": 1.5}}) for i in range(300))
    assert requests.post(f"{url}/count", data=batch, timeout=5).json()["counted"] == 300
    answer = requests.get(f"{url}/plotpoints", params={
        "metrics": "dollars,dollars/hits", "dimensions": "sales", "depth": 1}, timeout=5).json()
    totals = {(s["label"]): s["total"] for s in answer["series"]}
    assert totals["sales: dollars"] == 950
    assert totals["sales: dollars/hits"] == pytest.approx(950 / 301)
    assert totals["sales / p123: dollars"] == 500
    bad = requests.get(f"{url}/count", params={"metrics": '{"x": "y"}'}, timeout=5)
    assert bad.status_code == 400 and bad.json()["param"] == "metrics.x"
    assert requests.get(f"{url}/health", timeout=5).json()["ok"]


def test_demo_serves_sample_traffic_on_an_embedded_redis(tmp_path):
    port = free_port(pair=True)
    env = {"WHALE_REDIS_URL": "", "HOME": str(tmp_path)}
    process, lines = start(["demo", "--port", str(port)], env)
    try:
        assert any(line.startswith("store: embedded redis-server") and str(tmp_path) in line
                   for line in lines), lines
        url = f"http://127.0.0.1:{port}"
        first = requests.get(f"{url}/totals", params={"since": "1h"}, timeout=5).json()
        hits = first["totals"][0]["totals"]["hits"]
        assert hits >= 3000  # the backfilled hour
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # live traffic keeps arriving
            time.sleep(0.5)
            now = requests.get(f"{url}/totals", params={"since": "1h"}, timeout=5).json()
            if now["totals"][0]["totals"]["hits"] > hits:
                break
        else:
            pytest.fail("the demo's sample traffic did not move the counters")
        # The live events came through the demo's Hail node and hailwail.
        hail = requests.get(f"http://127.0.0.1:{port + 1}/health", timeout=5).json()
        assert hail["ok"] and hail["in_flight"] + hail["waiting"] < 100
        assert f"dashboard: {url}/" in lines
        page = requests.get(f"{url}/", timeout=5)
        assert "jquery.hailwhale.js" in page.text
        for script in ("static/vendor/jquery.min.js", "static/vendor/jquery.flot.js",
                       "static/jquery.hailwhale.js", "static/dashboard.js"):
            assert requests.get(f"{url}/{script}", timeout=5).ok, script
        plot = requests.get(f"{url}/plotpoints", params={
            "metrics": "dollars", "depth": 1}, timeout=5).json()
        assert {tuple(s["dimension"]) for s in plot["series"]} >= {(), ("sales",),
                                                                   ("services",)}
    finally:
        stop(process)
    # The embedded redis-server stops with the demo.
    store_line = next(line for line in lines if line.startswith("store:"))
    redis_port = int(store_line.split("127.0.0.1:")[1].split(",")[0])
    deadline = time.monotonic() + 10
    while _listening(redis_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(redis_port), "the demo left its redis-server running"


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_demo_falls_back_to_fakeredis_without_redis_server(tmp_path):
    port = free_port(pair=True)
    env = {"WHALE_REDIS_URL": "", "HOME": str(tmp_path),
           "PATH": str(Path(sys.executable).parent)}  # no redis-server on it
    process, lines = start(["demo", "--port", str(port)], env)
    try:
        assert any(line.startswith("store: in-process fakeredis") for line in lines), lines
        totals = requests.get(f"http://127.0.0.1:{port}/totals", timeout=5).json()
        assert totals["totals"][0]["totals"]["hits"] >= 3000
    finally:
        stop(process)


def test_whale_with_unreachable_redis_fails_with_one_line():
    done = subprocess.run([HAILWHALE, "whale", "--redis", "redis://127.0.0.1:1/0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.startswith("hailwhale whale: Redis is unavailable")
    assert len(done.stderr.strip().splitlines()) == 1
