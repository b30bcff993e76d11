"""Drain rate: events per second from a Hail buffer into Whale's counters, with real processes.

    .venv/bin/python benchmarks/bench_drain.py [--events 50000]

Starts a private redis-server (buffer and counters in two databases) and a real
``hailwhale whale`` process, fills the buffer, runs the real ``hailwail`` command and times it
until every event is counted. The baseline, run in the same process against the same Whale,
is what a site without Hail does: one ``GET /count`` per event.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import workload  # noqa: E402

from hailwhale.buffer import Buffer  # noqa: E402
from hailwhale.embedded import RedisServer, free_port  # noqa: E402

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(Path(data), appendonly=False).start()
        base = server.url.rsplit("/", 1)[0]
        port = free_port()
        env = {**os.environ, "WHALE_REDIS_URL": f"{base}/0", "HAIL_REDIS_URL": f"{base}/1",
               "WHALE_URL": f"http://127.0.0.1:{port}"}
        whale = subprocess.Popen([str(BIN / "hailwhale"), "whale", "--port", str(port)],
                                 env=env, stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    requests.get(env["WHALE_URL"] + "/health", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            rows = []
            now = time.time()
            simple = [{"dimensions": ["pageviews", f"page{n % 20}"], "at": now}
                      for n in range(args.events)]
            for name, events in (("2-level paths, hits", simple),
                                 ("3-level Zipf, float, unique", workload(args.events, now, 60))):
                Buffer.from_url(env["HAIL_REDIS_URL"]).push(events)
                started = time.perf_counter()
                done = subprocess.run([str(BIN / "hailwail"), "--batch", str(args.batch), "-q"],
                                      env=env, capture_output=True, text=True)
                drain_rate = len(events) / (time.perf_counter() - started)
                assert done.returncode == 0, done.stderr
                sample = events[:1000]
                session = requests.Session()
                started = time.perf_counter()
                for event in sample:
                    session.get(env["WHALE_URL"] + "/count", params={
                        k: (v if isinstance(v, str) else json.dumps(v))
                        for k, v in event.items()}).raise_for_status()
                naive_rate = len(sample) / (time.perf_counter() - started)
                rows.append((name, drain_rate, naive_rate))
        finally:
            whale.terminate()
            whale.wait(10)
            server.stop()
    print(f"{'workload':<32}{'hailwail ev/s':>15}{'GET /count ev/s':>17}{'ratio':>9}")
    for name, drain_rate, naive_rate in rows:
        print(f"{name:<32}{drain_rate:>15,.0f}{naive_rate:>17,.0f}"
              f"{drain_rate / naive_rate:>8.1f}x")
    print(f"({args.events} events per workload, batches of {args.batch}, one hailwail, "
          "Whale on the threaded development server)")


if __name__ == "__main__":
    main()
