"""One pass of ``hailwhale bench``: every figure at one size, with its own processes.

A pass starts two private ``redis-server``s (Hail's buffer, Whale's counters; append-only, as
the README recommends for both), Whale and Hail under ``uwsgi.ini``'s ``[whale]`` and
``[hail]`` sections (and, for ``ingest_ratio``, a bare Bottle app under the ``[hail]``
section too), then measures through them with wrk, the real ``hailwail`` and plain HTTP.
Every figure is checked against what was counted before it is reported.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import redis
import requests

from hailwhale.buffer import Buffer
from hailwhale.config import Settings, load_settings
from hailwhale.drain import DEFAULT_BATCH
from hailwhale.embedded import RedisServer, free_port
from hailwhale.event import parse_event
from hailwhale.keys import BUFFER
from hailwhale.periods import format_duration

from .bench import REPO, Sizes, counter_cells, naive_count
from .kit import (
    BenchError,
    Monitor,
    Uwsgi,
    calls_between,
    chunks,
    clean_environ,
    commandstats,
    group_cpu_seconds,
    percentile,
    seconds_between,
    spawn,
    stop_group,
    tool,
    wrk,
    zipf,
)

# Packets/s sent to each StatsD server in turn: single-line counters, the same line.
STATSD_RATES = (25_000, 50_000, 100_000, 200_000)
STEADY_RATE = 2_800  # events/s: the rate of the soak that found batches of 20 events

BARE_APP = '''"""The baseline of ingest_ratio: a bare Bottle route answering "OK"."""
import bottle

application = bottle.Bottle()


@application.get("/count")
def count():
    return "OK"


@application.post("/count")
def count_post():
    bottle.request.body.read()  # take the batch in, as Hail does, and drop it
    return "OK"
'''


def _median(runs) -> float:
    return statistics.median(run.rate for run in runs)


# -- one pass ---------------------------------------------------------------------------------
class Pass:
    """Private Redis servers, Whale and Hail (and the bare app) under uWSGI, and the
    measurements over them; ``with Pass(...)`` stops every process at the end."""

    def __init__(self, sizes: Sizes, work: Path, ini: Path, name: str, bare: bool, say):
        self.sizes, self.work, self.ini, self.name, self.say = sizes, work, ini, name, say
        self.bare_wanted = bare
        self.stack = contextlib.ExitStack()
        base = load_settings(environ={})
        self.periods_text = ",".join(
            f"{format_duration(p.interval)}:{format_duration(p.retention * sizes.retention)}"
            for p in base.periods)
        self.settings: Settings = load_settings(environ={"HAILWHALE_PERIODS": self.periods_text})
        self.figures: dict = {}
        self.details: dict = {}

    def __enter__(self) -> Pass:
        self.stack.__enter__()
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None and issubclass(kind, Exception):
            for log in sorted(self.work.glob("*.log")):  # what the servers said, if anything
                lines = [line for line in log.read_text(errors="replace").splitlines()
                         if "Traceback" in line or "Error" in line or "=>" in line]
                if lines:
                    self.say(f"{self.name}: {log.name}: " + "\n  ".join(lines[-10:]))
        self.stack.__exit__(kind, value, traceback)

    def _redis(self, name: str) -> tuple[RedisServer, redis.Redis]:
        server = RedisServer(self.work / name)  # append-only, as in production
        self.stack.callback(server.stop)
        server.start()
        client = redis.Redis(port=server.port, decode_responses=True, socket_timeout=120)
        self.stack.callback(client.close)
        return server, client

    def _uwsgi(self, section: str, variable: str, name: str, extra=(), **more: str) -> Uwsgi:
        port = free_port()
        env = {**self.env, variable: str(port), **more}
        server = Uwsgi(f"{self.ini}:{section}", port, env, self.work / f"{name}.log", extra)
        self.stack.callback(server.stop)
        return server.start()

    def _start(self) -> None:
        self.say(f"{self.name}: starting redis-servers, Whale and Hail under uWSGI "
                 f"(periods {self.periods_text})")
        self.store_server, self.store = self._redis("store")
        self.buffer_server, self.buffer = self._redis("buffer")
        self.env = clean_environ(
            WHALE_REDIS_URL=f"redis://127.0.0.1:{self.store_server.port}/0",
            HAIL_REDIS_URL=f"redis://127.0.0.1:{self.buffer_server.port}/0",
            HAILWHALE_HOST="127.0.0.1", HAILWHALE_PERIODS=self.periods_text,
            # The scaling pass ranks 10,000 children of one dimension over 2,400 buckets:
            # past the cardinality guard's default cap, which would fold most of them into
            # __other__, and past the default bound on a query's cost (24M cells, not 1M).
            HAILWHALE_MAX_CHILDREN="100000", HAILWHALE_MAX_QUERY_CELLS="100000000",
            HAILWHALE_STATSD_PORT="0")
        self.whale = self._uwsgi("whale", "WHALE_PORT", "whale")
        # The base pass measures Hail's StatsD listener (its uWSGI mule) on a port of its own.
        self.statsd_port = free_port() if self.bare_wanted else 0
        self.hail = self._uwsgi("hail", "HAIL_PORT", "hail",
                                HAILWHALE_STATSD_PORT=str(self.statsd_port))
        self.bare = None
        if self.bare_wanted:
            (self.work / "hailwhale_bench_bare.py").write_text(BARE_APP)
            self.bare = self._uwsgi("hail", "HAIL_PORT", "bare", extra=(
                "--module", "hailwhale_bench_bare:application", "--pythonpath", str(self.work),
                "--procname-prefix-spaced", "hailwhale-bench-bare"))
        self.whale.wait_ready("/health", 4)
        self.hail.wait_ready("/health", 4)
        if self.bare:
            self.bare.wait_ready("/count", 4)
        self.env["WHALE_URL"] = self.whale.url

    # -- ingest ----------------------------------------------------------------------------
    def _buffered(self) -> int:
        """Events in Hail's buffer, once requests still in flight after wrk stopped have
        landed (the length holds still for 0.3 s)."""
        length = self.buffer.llen(BUFFER)
        while True:
            time.sleep(0.3)
            now = self.buffer.llen(BUFFER)
            if now == length:
                return length
            length = now

    def ingest_ratio(self, raws: list[dict]) -> None:
        """Hail's GET /count against the bare route, alternating, wrk at 16 connections."""
        event = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
                 for k, v in raws[0].items() if k != "at"}
        path = "/count?" + urlencode(event)
        self.say(f"{self.name}: ingest_ratio: wrk GET {path[:60]}... on Hail and bare Bottle")
        waiting = self.buffer.llen(BUFFER)
        hail, bare = [], []
        for rounds in (0, self.sizes.wrk_rounds):  # the first is a one-second warm-up
            for _ in range(max(1, rounds)):
                seconds = self.sizes.wrk_seconds if rounds else 1
                bare.append(wrk(self.bare.url + path, seconds, 16))
                hail.append(wrk(self.hail.url + path, seconds, 16))
        answered = sum(run.requests - run.non_2xx for run in hail)
        buffered = self._buffered() - waiting
        if any(run.non_2xx for run in hail + bare) or buffered < answered:
            raise BenchError(f"ingest: {answered} GET /count answered, {buffered} buffered, "
                             f"{sum(r.non_2xx for r in hail + bare)} not 2xx")
        hail, bare = hail[1:], bare[1:]
        self.figures["ingest_ratio"] = _median(hail) / _median(bare)
        self.say(f"{self.name}: ingest_ratio: Hail {_median(hail):,.0f} req/s, bare "
                 f"{_median(bare):,.0f} req/s")
        self.details["ingest_get"] = {
            "hail_requests_per_s": _median(hail), "bare_requests_per_s": _median(bare),
            "rounds": len(hail), "seconds_each": self.sizes.wrk_seconds, "connections": 16,
            "buffered": buffered, "answered": answered}
        self.buffer.flushdb()

    def ingest_batch(self, raws: list[dict]) -> None:
        """POST /count batches of ``post_batch`` events, wrk posting one fixed body."""
        size = self.sizes.post_batch
        events = [{k: v for k, v in raw.items() if k != "at"} for raw in raws[:size]]
        while len(events) < size:
            events += events[: size - len(events)]
        body = self.work / f"batch-{size}.json"
        body.write_text(json.dumps(events, separators=(",", ":")))
        script = self.work / f"post-{size}.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"local f = assert(io.open({json.dumps(str(body))}, \"rb\"))\n"
            "wrk.body = f:read(\"*a\")\nf:close()\n")
        self.say(f"{self.name}: ingest_batch: wrk POST /count, {size:,} events a request")
        targets = [("hail", self.hail)] + ([("bare", self.bare)] if self.bare else [])
        runs: dict[str, list] = {name: [] for name, _ in targets}
        for rounds in (0, self.sizes.wrk_rounds):
            for _ in range(max(1, rounds)):
                for name, server in targets:
                    waiting = self.buffer.llen(BUFFER)
                    run = wrk(server.url + "/count", self.sizes.wrk_seconds if rounds else 1,
                              8, script)
                    buffered = self._buffered() - waiting
                    if run.non_2xx or (name == "hail" and buffered < run.requests * size):
                        raise BenchError(f"ingest_batch: {run.requests} POSTs answered "
                                         f"({run.non_2xx} not 2xx), {buffered} events "
                                         "buffered")
                    runs[name].append(run)
                    self.buffer.flushdb()  # keep the buffer (and its AOF) small
        hail = _median(runs["hail"][1:]) * size
        self.figures["ingest_batch_events_per_s"] = hail
        self.say(f"{self.name}: ingest_batch: Hail {hail:,.0f} events/s")
        self.details["ingest_batch"] = {"events_per_request": size, "connections": 8,
                                        "hail_events_per_s": hail}
        if self.bare:
            bare = _median(runs["bare"][1:]) * size
            self.details["ingest_batch"].update(bare_events_per_s=bare,
                                                ratio_to_bare=hail / bare)

    # -- drain -----------------------------------------------------------------------------
    def _fill(self, raws: list[dict]) -> None:
        """Put events into the buffer the way applications do: POST /count to Hail."""
        chunks = [raws[i:i + 1000] for i in range(0, len(raws), 1000)]

        def post(chunk: list[dict]) -> None:
            answer = requests.post(self.hail.url + "/count", timeout=60,
                                   data=json.dumps(chunk, separators=(",", ":")))
            if answer.status_code != 200:
                raise BenchError(f"Hail refused a batch: {answer.status_code} {answer.text}")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, chunks))

    def _hailwail(self) -> tuple[float, list[str]]:
        """Run the real hailwail until the buffer is empty: ``(seconds, failures)``.

        A run that ends with Whale unreachable is run again at once, as cron or ``--loop``
        would later: its batch stays in flight, released, and is sent again under the same
        id. Each such failure is reported, and its time counts."""
        failures: list[str] = []
        started = time.perf_counter()
        while True:
            # hailwail as installed: its default batch size and parallelism.
            done = subprocess.run([tool("hailwail"), "-q"], env=self.env,
                                  capture_output=True, text=True, timeout=3600)
            if done.returncode == 0:
                return time.perf_counter() - started, failures
            said = (done.stdout + done.stderr).strip()
            if "cannot be reached" not in said or len(failures) >= 20:
                raise BenchError(f"hailwail failed: {said}")
            failures.append(said)

    def drain(self, raws: list[dict], now: float) -> None:
        """drain_events_per_s, whale_cpu_us_per_event, commands_per_cell and bytes_per_counter,
        from one real drain
        of the workload through Whale under uWSGI."""
        warm = [{"pk": "bench-warmup", "dimensions": ["warm", f"p{i % 50}"]}
                for i in range(4000)]  # no uniques: the memory figure leaves HLLs out
        self._fill(warm)
        self._hailwail()
        self.say(f"{self.name}: drain: {len(raws):,} events into Hail's buffer")
        started = time.perf_counter()
        self._fill(raws)
        self.say(f"{self.name}: drain: buffered in {time.perf_counter() - started:.1f} s; "
                 "running hailwail")
        settled = self._used_memory()
        store_before, buffer_before = commandstats(self.store), commandstats(self.buffer)
        whale_cpu = group_cpu_seconds(self.whale.process.pid)
        seconds, failures = self._hailwail()
        whale_cpu = group_cpu_seconds(self.whale.process.pid) - whale_cpu
        store_after, buffer_after = commandstats(self.store), commandstats(self.buffer)
        store_calls = calls_between(store_before, store_after)
        buffer_calls = calls_between(buffer_before, buffer_after)
        scripts = seconds_between(store_before, store_after, ("evalsha", "eval"))
        health = requests.get(self.hail.url + "/health", timeout=60).json()
        if (health["waiting"], health["in_flight"], health["dead"]) != (0, 0, 0):
            raise BenchError(f"hailwail left events behind: {health}")
        self._check_counted(raws)
        n = len(raws)
        self.figures["drain_events_per_s"] = n / seconds
        self.figures["whale_cpu_us_per_event"] = whale_cpu / n * 1e6
        total = sum(store_calls.values())
        # A written cell: one counter or HyperLogLog bucket, (series, metric, period, bucket),
        # written by one batch (a cell that two batches write is written twice). Every
        # (series, period, bucket) cell of the workload holds two counters (hits and
        # seconds) and one HyperLogLog (visitors); hailwail takes the batches in buffer
        # order, DEFAULT_BATCH events each.
        written = 3 * sum(counter_cells(raws[start:start + DEFAULT_BATCH],
                                        self.settings.periods, self.settings.tz, now)
                          for start in range(0, len(raws), DEFAULT_BATCH))
        self.figures["commands_per_cell"] = total / written
        self.details["drain"] = {
            "events": n, "hailwail_seconds": seconds, "hailwail_failures": len(failures),
            "written_cells": written, "whale_cpu_seconds": whale_cpu,
            "whale_redis_script_seconds": scripts,
            "failures": failures[:3],
            "store_commands": store_calls, "store_commands_per_event": total / n,
            "buffer_commands_per_event": sum(buffer_calls.values()) / n,
            "buffer_commands": buffer_calls}
        self.say(f"{self.name}: drain: {n / seconds:,.0f} events/s, Whale's CPU "
                 f"{whale_cpu / n * 1e6:.1f} us an event, {total / written:.2f} commands per "
                 f"written cell in Whale's Redis; {len(failures)} hailwail failures")
        self._memory(raws, now, settled)

    def steady(self) -> None:
        """Steady traffic (STEADY_RATE events/s to Hail for ``steady_seconds``) followed by
        a real ``hailwail --loop``: events per batch with its default linger, and with
        ``--linger 0`` in the same run, each event counted exactly once."""
        self.say(f"{self.name}: steady: {STEADY_RATE:,} events/s for "
                 f"{self.sizes.steady_seconds:g} s, followed by hailwail --loop")
        lingering = self._steady_run("bench-steady-linger", [])
        eager = self._steady_run("bench-steady-eager", ["--linger", "0"])
        self.details["steady"] = {"rate": STEADY_RATE, "seconds": self.sizes.steady_seconds,
                                  "lingering": lingering, "eager": eager}
        self.say(f"{self.name}: steady: {lingering['events_per_batch']:,.0f} events a batch "
                 f"lingering, {eager['events_per_batch']:,.0f} with --linger 0")

    def _batches_remembered(self) -> int:
        # The batch ids (hw:{%batch}:<id>), not the markers of a batch's parts (<id>:<n>)
        # that a batch cut off between its parts may leave.
        return sum(1 for key in self.store.scan_iter(match="hw:{%batch}:*", count=1000)
                   if key.count(":") == 2)

    def _steady_run(self, pk: str, options: list[str]) -> dict:
        before = self._batches_remembered()
        follower = subprocess.Popen([tool("hailwail"), "--loop", "0.05", "-q", *options],
                                    env=self.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        sent, tick = 0, 0.01
        per_tick = max(1, round(STEADY_RATE * tick))
        try:
            started = time.monotonic()
            while time.monotonic() - started < self.sizes.steady_seconds:
                events = [{"pk": pk, "dimensions": ["steady", f"p{(sent + i) % 20}"]}
                          for i in range(per_tick)]
                answer = requests.post(self.hail.url + "/count", data=json.dumps(events),
                                       timeout=60)
                if answer.status_code != 200:
                    raise BenchError(f"Hail refused steady events: {answer.text}")
                sent += per_tick
                time.sleep(max(0.0, started + sent / STEADY_RATE - time.monotonic()))
            deadline = time.monotonic() + 30
            while True:
                health = requests.get(self.hail.url + "/health", timeout=60).json()
                if (health["waiting"], health["in_flight"]) == (0, 0):
                    break
                if time.monotonic() > deadline or follower.poll() is not None:
                    raise BenchError(f"hailwail --loop {' '.join(options)} left {health}")
                time.sleep(0.1)
        finally:
            follower.terminate()
            _out, err = follower.communicate(timeout=30)
        counted = requests.get(self.whale.url + "/totals", timeout=60,
                               params={"pk": pk, "metrics": "hits"}).json()
        hits = counted["totals"][0]["totals"]["hits"]
        if hits != sent:
            raise BenchError(f"steady: Whale counted {hits} of {sent} events ({err[-300:]})")
        batches = self._batches_remembered() - before
        return {"events": sent, "batches": batches,
                "events_per_batch": sent / max(1, batches)}

    def _check_counted(self, raws: list[dict]) -> None:
        """Whale's totals must hold every event, exactly."""
        period = self.settings.periods[0]
        answer = requests.get(self.whale.url + "/totals", timeout=60, params={
            "metrics": "hits,seconds", "period": period.name,
            "since": min(raw["at"] for raw in raws) - period.interval})
        answer.raise_for_status()
        totals = answer.json()["totals"][0]["totals"]
        cents = sum(round(raw["metrics"]["seconds"] * 100) for raw in raws)
        if totals["hits"] != len(raws) or round(totals["seconds"] * 100) != cents:
            raise BenchError(f"Whale counted {totals} for {len(raws)} events "
                             f"(seconds {cents / 100})")

    def _used_memory(self) -> int:
        """Whale's Redis' used_memory once it holds still (0.2 s apart, 5 s at most): Redis
        grows its key tables by rehashing them incrementally, keeping both the old and the
        new one meanwhile."""
        deadline = time.monotonic() + 5
        used = self.store.info("memory")["used_memory"]
        while time.monotonic() < deadline:
            time.sleep(0.2)
            again = self.store.info("memory")["used_memory"]
            if again == used:
                break
            used = again
        return used

    def _memory(self, raws: list[dict], now: float, before: int) -> None:
        """bytes_per_counter: Redis' used_memory grown by the drain, HyperLogLogs taken out,
        per counter (a (series, metric, period, bucket) cell with a non-zero sum)."""
        cells = counter_cells(raws, self.settings.periods, self.settings.tz, now)
        counters = 2 * cells
        after = self._used_memory()
        hlls = []
        for batch in chunks(self.store.scan_iter(count=5000), 5000):
            pipe = self.store.pipeline(transaction=False)
            for key in batch:
                pipe.type(key)
            strings = [key for key, kind in zip(batch, pipe.execute(), strict=True)
                       if kind == "string"]
            pipe = self.store.pipeline(transaction=False)
            for key in strings:
                pipe.getrange(key, 0, 3)
            hlls += [key for key, head in zip(strings, pipe.execute(), strict=True)
                     if head == "HYLL"]
        for batch in chunks(iter(hlls), 5000):
            self.store.delete(*batch)
        without = self._used_memory()
        self.figures["bytes_per_counter"] = (without - before) / counters
        self.say(f"{self.name}: memory: {self.figures['bytes_per_counter']:.1f} bytes per "
                 f"counter ({counters:,} counters)")
        self.details["memory"] = {
            "counters": counters, "cells": cells, "hyperloglogs": len(hlls),
            "used_memory_growth": after - before, "hll_bytes": after - without,
            "bytes_per_hll": (after - without) / max(1, len(hlls)),
            "bytes_per_counter_with_hlls": (after - before) / counters}

    def client_calls(self, raws: list[dict]) -> None:
        """Client calls vs commands run inside scripts, from MONITOR over an untimed drain of
        the workload's first events (under another pk)."""
        sample = [{**raw, "pk": "bench-monitor"} for raw in raws[: self.sizes.monitor_events]]
        self.say(f"{self.name}: writes: MONITOR over an untimed drain of {len(sample):,} events")
        self._fill(sample)
        monitor = Monitor(self.store_server.port)
        try:
            self._hailwail()
        finally:
            monitor.close()
        client, script = (sum(monitor.client_calls.values()),
                          sum(monitor.script_calls.values()))
        self.details["writes"] = {
            "sample_events": len(sample),
            "client_calls_per_event": client / len(sample),
            "script_commands_per_event": script / len(sample),
            "commands_per_event": (client + script) / len(sample),
            "client_calls": monitor.client_calls, "script_commands": monitor.script_calls}

    def naive(self, raws: list[dict], now: float) -> None:
        """drain_vs_naive: the drain rate over naive_count's, on db 2 of Whale's Redis."""
        events = [parse_event(raw, self.settings, now) for raw in raws[: self.sizes.naive_events]]
        self.say(f"{self.name}: naive: one round trip per counter, {len(events):,} events")
        client = redis.Redis(port=self.store_server.port, db=2, decode_responses=True)
        try:
            before = commandstats(client)
            started = time.perf_counter()
            naive_count(client, events, self.settings.periods, self.settings.tz)
            rate = len(events) / (time.perf_counter() - started)
            calls = sum(calls_between(before, commandstats(client)).values())
            client.flushdb()
        finally:
            client.close()
        self.figures["drain_vs_naive"] = self.figures["drain_events_per_s"] / rate
        self.say(f"{self.name}: naive: {rate:,.0f} events/s")
        self.details["naive"] = {"events": len(events), "events_per_s": rate,
                                 "commands_per_event": calls / len(events)}

    # -- queries ---------------------------------------------------------------------------
    def _post_whale(self, events: list[dict]) -> None:
        for i in range(0, len(events), 10_000):
            answer = requests.post(self.whale.url + "/count", timeout=120,
                                   data=json.dumps(events[i:i + 10_000]))
            if answer.status_code != 200:
                raise BenchError(f"Whale refused events: {answer.status_code} {answer.text}")

    def _latencies(self, params: dict, count: int, path="/plotpoints", warm: int = 5
                   ) -> list[float]:
        """Client-side milliseconds of ``count`` sequential GETs (after ``warm`` untimed), each
        on a new connection: uWSGI's http-socket closes every connection after its answer
        (without saying so, so a pooling client may race it and get a reset)."""
        target = f"{path}?{urlencode(params)}" if params else path
        times = []
        for i in range(count + warm):
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", self.whale.port, timeout=120)
            try:
                connection.request("GET", target)
                answer = connection.getresponse()
                body = answer.read()
            finally:
                connection.close()
            elapsed = (time.perf_counter() - started) * 1000
            if answer.status != 200:
                raise BenchError(f"{path} answered {answer.status}: {body[:300]!r}")
            if i >= warm:
                times.append(elapsed)
        return times

    def queries(self) -> None:
        """plot_p50_ms, plot_p99_ms and depth_p50_ms, against GET /health as the floor."""
        period, tz = self.settings.periods[0], self.settings.tz
        buckets, children = self.sizes.plot_buckets, self.sizes.depth_children
        current = period.ordinal(time.time(), tz)
        first = current - buckets + 1
        window = {"period": period.name, "since": int(period.start(first, tz)),
                  "until": int(period.start(current, tz)) + period.interval - 1,
                  "metrics": "hits"}
        self.say(f"{self.name}: queries: one series over {buckets:,} buckets, depth=1 over "
                 f"{children:,} children")
        plot = [{"pk": "bench-plot", "dimensions": "plot", "at": period.start(o, tz) + 1}
                for o in range(first, current + 1) for _ in range(1 + o % 5)]
        rng = random.Random(11)
        names = [f"child{i}" for i in range(children)]
        depth = [{"pk": "bench-depth", "dimensions": ["depth", name]} for name in names]
        depth += [{"pk": "bench-depth", "dimensions": ["depth", name]}
                  for name in rng.choices(names, cum_weights=zipf(children), k=9 * children)]
        for event in depth:
            event["at"] = period.start(rng.randrange(first, current + 1), tz) + 1
        self._post_whale(plot + depth)

        plot_params = {**window, "pk": "bench-plot", "dimensions": "plot"}
        shown = requests.get(self.whale.url + "/plotpoints", params=plot_params,
                             timeout=60).json()["series"]
        if len(shown) != 1 or len(shown[0]["data"]) != buckets or \
                shown[0]["total"] != len(plot):
            raise BenchError(f"/plotpoints did not answer one series of {buckets} buckets "
                             f"holding {len(plot)} hits")
        plot_ms = self._latencies(plot_params, self.sizes.plot_requests)
        depth_params = {**window, "pk": "bench-depth", "dimensions": "depth", "depth": 1}
        depth_answer = requests.get(self.whale.url + "/plotpoints", params=depth_params,
                                    timeout=120).json()  # also the warm-up
        depth_ms = self._latencies(depth_params, self.sizes.depth_requests, warm=0)
        health_ms = self._latencies({}, self.sizes.plot_requests, "/health")
        floor = statistics.median(health_ms)
        self.figures.update(plot_p50_ms=statistics.median(plot_ms),
                            plot_p99_ms=percentile(plot_ms, 0.99),
                            depth_p50_ms=statistics.median(depth_ms))
        self.say(f"{self.name}: queries: plot p50 {self.figures['plot_p50_ms']:.1f} ms, "
                 f"depth p50 {self.figures['depth_p50_ms']:.1f} ms")
        self.details["queries"] = {
            "buckets": buckets, "plot_requests": len(plot_ms), "children": children,
            "depth_requests": len(depth_ms), "depth_series_shown": len(depth_answer["series"]),
            "health_p50_ms": floor, "plot_p50_over_health": self.figures["plot_p50_ms"] / floor,
            "depth_p50_over_health": self.figures["depth_p50_ms"] / floor}

    def run(self, raws: list[dict], now: float) -> tuple[dict, dict]:
        """Every figure at this pass's sizes, ``raws`` (made at ``now``) the drain workload:
        ``(figures, details)``."""
        if self.bare:
            self.ingest_ratio(raws)
        self.ingest_batch(raws)
        self.drain(raws, now)
        if self.bare:  # the base pass only: steady traffic does not scale with the workload
            self.steady()
        self.client_calls(raws)
        self.naive(raws, now)
        self.queries()
        if self.bare:  # the base pass only, and last: it leaves Hail's buffer full
            self.statsd()
        return self.figures, self.details

    # -- StatsD ----------------------------------------------------------------------------
    def statsd(self) -> None:
        """UDP StatsD into this Hail node (the mule of uwsgi.ini's [hail]) and into the StatsD
        daemon from npm, the same ladder of rates of single-line packets, each for
        ``statsd_seconds``: per rate the packets each counted; Hail's are in its buffer."""
        self.say(f"{self.name}: statsd: "
                 f"{', '.join(f'{rate:,}' for rate in STATSD_RATES)} packets/s, "
                 f"{self.sizes.statsd_seconds:g} s each, into Hail and the StatsD daemon")
        tallies = Buffer(self.buffer)
        deadline = time.monotonic() + 30
        while "statsd: listening on" not in self.hail.output():
            if time.monotonic() > deadline:
                raise BenchError("Hail's StatsD mule did not start listening")
            time.sleep(0.1)

        def hail_counted() -> int:
            return tallies.statsd_counts().get("packets", 0)

        hail = [self._ladder_step(self.statsd_port, rate, hail_counted)
                for rate in STATSD_RATES]
        self.buffer.delete(BUFFER)  # StatsD's events are not the next passes' to drain
        daemon = self._statsd_daemon()
        self.details["statsd"] = {"seconds": self.sizes.statsd_seconds, "hail": hail,
                                  "daemon": daemon}
        self.say(f"{self.name}: statsd: Hail " + ", ".join(
            f"{step['rate']:,}/s {step['lost']:.2%} lost" for step in hail))

    def _ladder_step(self, port: int, rate: int, counted: Callable[[], int]) -> dict:
        before = counted()
        sent = _send_udp(port, rate, self.sizes.statsd_seconds)
        deadline = time.monotonic() + 5  # what the server still holds, read
        got = counted() - before
        while got < sent and time.monotonic() < deadline:
            time.sleep(0.2)
            now = counted() - before
            if now == got:
                break
            got = now
        return {"rate": rate, "sent": sent, "counted": got, "lost": 1 - got / sent}

    def _statsd_daemon(self) -> list[dict] | str:
        """The ladder against the StatsD daemon (npm's statsd, no backend), counted by its
        management interface; or why it was not measured."""
        node, script = shutil.which("node"), REPO / "node_modules" / "statsd" / "stats.js"
        if node is None or not script.is_file():
            return "not measured: node, or the statsd package from `npm ci`, is missing"
        port, management = free_port(), free_port()
        config = self.work / "statsd-config.js"
        config.write_text(json.dumps({"port": port, "mgmt_port": management, "backends": [],
                                      "flushInterval": 3_600_000}))
        daemon = spawn([node, str(script), str(config)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.stack.callback(stop_group, daemon)
        deadline = time.monotonic() + 30
        while True:  # ready once its management interface answers
            try:
                _daemon_packets(management)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("the StatsD daemon did not start") from None
                time.sleep(0.2)
        return [self._ladder_step(port, rate, lambda: _daemon_packets(management))
                for rate in STATSD_RATES]


def _send_udp(port: int, rate: int, seconds: float) -> int:
    """Single-line StatsD counters to 127.0.0.1:``port`` at ``rate`` packets/s for
    ``seconds`` (paced every few hundred microseconds); how many were sent."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packet, target = b"bench.statsd.orders:1|c", ("127.0.0.1", port)
    total, sent, started = int(rate * seconds), 0, time.perf_counter()
    try:
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate))
            for _ in range(due - sent):
                sender.sendto(packet, target)
            if due == sent:
                time.sleep(0.0002)
            sent = due
    finally:
        sender.close()
    return sent


def _daemon_packets(management: int) -> int:
    """The StatsD daemon's count of packets received (its management interface's
    ``counters``, with a flush interval longer than the measurement)."""
    with socket.create_connection(("127.0.0.1", management), timeout=5) as connection:
        connection.sendall(b"counters\n")
        data = b""
        while b"END" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    found = re.search(rb"'statsd\.packets_received': (\d+)", data)
    return int(found.group(1)) if found else 0
