"""Counting rate and memory of the store, each beside a naive baseline run in the same process.

    .venv/bin/python benchmarks/bench_core.py [--events 20000]

The store alone, in-process, with no HTTP: a quick check while working on the counting core.
The figures of issue 5 (Hail and Whale under uWSGI, wrk, the real hailwail) come from
``hailwhale bench``, whose workload and naive baseline this reuses.

Starts a private redis-server on a free port (nothing else is touched), then prints:
- events per second counted into Redis by one pre-aggregated, pipelined batch, against a naive
  counter that sends one HINCRBY round trip per event, dimension prefix, period and metric;
- Redis bytes per stored bucket counter, against the same counters as one string key each.
Figures are ratios to their baseline: wall times differ from machine to machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from hailwhale_bench.bench import naive_count, workload

from hailwhale import keys
from hailwhale.aggregate import aggregate
from hailwhale.batches import count_events
from hailwhale.config import load_settings
from hailwhale.embedded import RedisServer
from hailwhale.event import parse_event
from hailwhale.store import Store, connect


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    settings = load_settings(environ={})
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(data, appendonly=False).start()
        client = connect(server.url)
        store = Store(client, settings)
        now = time.time()

        # -- speed: one batch, every event in the current minute -------------------------
        events = [parse_event(r, settings, now) for r in workload(args.events, now, 60)]
        client.flushdb()
        started = time.perf_counter()
        count_events(store, events, now)
        batch_rate = len(events) / (time.perf_counter() - started)
        sample = events[: max(200, args.events // 50)]
        client.flushdb()
        started = time.perf_counter()
        naive_count(client, sample, settings.periods, settings.tz)
        naive_rate = len(sample) / (time.perf_counter() - started)

        # -- memory: a dense series (every bucket of every period filled) and the workload
        # spread over three hours (many sparse series) ----------------------------------
        dense = [parse_event({"dimensions": f"page{page}", "at": now - offset}, settings, now)
                 for page in range(50)
                 for period in settings.periods
                 for offset in range(0, period.retention - period.interval, period.interval)]
        memory = {}
        for name, sample_events in (
            ("dense", dense),
            ("workload", [parse_event(r, settings, now)
                          for r in workload(args.events, now, 3 * 3600)]),
        ):
            client.flushdb()
            batch = aggregate(sample_events, settings.periods, settings.tz, now)
            # One counter per (cell, summed metric) with a non-zero sum; a cell is
            # (pk, path, period index, ordinal).
            counters = [(pk, path, metric, batch.periods[index], ordinal)
                        for (pk, path, index, ordinal), sums in batch.counters.items()
                        for metric, nanos in sums.items() if nanos]
            empty = used_memory(client)
            store.write(batch)
            # Uniques are HyperLogLogs, not counters: leave them out of the per-counter figure.
            for key in list(client.scan_iter(match="hw:*:u:*", count=1000)):
                client.delete(key)
            hailwhale_bytes = (used_memory(client) - empty) / len(counters)
            client.flushdb()
            empty = used_memory(client)
            pipe = client.pipeline(transaction=False)
            for pk, path, metric, period, ordinal in counters:
                pipe.set(keys.cells(pk, path, metric, period, ordinal), 1)
            pipe.execute()
            memory[name] = (hailwhale_bytes, (used_memory(client) - empty) / len(counters),
                            len(counters))
        server.stop()

    print(f"{'figure':<38}{'hailwhale':>14}{'naive':>14}{'ratio':>10}")
    print(f"{'events/s counted (one batch)':<38}{batch_rate:>14,.0f}{naive_rate:>14,.0f}"
          f"{batch_rate / naive_rate:>9.1f}x")
    for name, (ours, naive, count) in memory.items():
        title = f"Redis bytes/counter, {name} ({count})"
        print(f"{title:<38}{ours:>14.1f}{naive:>14.1f}{naive / ours:>9.1f}x")
    print(f"({args.events} events; naive memory: one string key per counter)")

if __name__ == "__main__":
    main()
