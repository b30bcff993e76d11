"""Writes tests/data/layout1.json.gz: a store written by HailWhale's first storage layout (one
hash per series, metric, period and 60-bucket chunk), and the answers that code gave.

It was run once, on the first layout (commit f6ccfd3 with this file added), to give
tests/test_migrate.py a store that today's ``hailwhale migrate`` must carry over; it does
not run against later code. Every key is kept as its type, contents (strings base64, so
HyperLogLogs stay byte-exact) and remaining time to live.

    git worktree add /tmp/layout1 f6ccfd3 && cd /tmp/layout1 &&
    ../main/.venv/bin/python tests/data/make_layout1.py | gzip -9n > tests/data/layout1.json.gz
"""

import base64
import json
import random
import sys
import tempfile

import redis

from hailwhale.config import load_settings
from hailwhale.embedded import RedisServer
from hailwhale.event import parse_event
from hailwhale.query import parse_query, plotpoints, totals
from hailwhale.store import Store

NOW = 1_796_310_000  # 2026-12-03 15:00 UTC: the answers are those at this moment
SPAN = {"15s:3h": 3 * 3600, "1h:7d": 7 * 86400, "1d:1y": 60 * 86400}  # windows asked
HOSTILE = ["a:b", "x|y", "{t}", "100%", "<img src=x onerror=alert(1)>", "ünï", "sp ace", "*?[]"]


def events() -> list[dict]:
    rng = random.Random(11)
    raws = []
    for _ in range(1500):
        site = f"site{rng.randrange(4)}"
        section = rng.choice(["news", "shop", *HOSTILE[:3]])
        age = rng.choice([0, 5, 40, 600, 3 * 3600 - 30, 5 * 3600, 3 * 86400, 40 * 86400])
        raws.append({
            "pk": rng.choice(["", "shop", "a|b", "100%"]),
            "dimensions": [site, section, f"p{rng.randrange(6)}"],
            "metrics": {"seconds": round(rng.uniform(-1, 30), rng.choice([0, 2, 9])),
                        "dollars": rng.randrange(-50, 500), "visitors": "is_unique"},
            "uid": f"u{rng.randrange(300)}",
            "at": NOW - age - rng.randrange(15),
        })
    for name in HOSTILE:  # hostile names at every level, and several branches
        raws.append({"dimensions": {name: {name: name}, "other": name},
                     "metrics": {"odd_name": 1.5, "hits": 3}, "at": NOW - 20})
    raws.append({"dimensions": "big", "metrics": {"n": 10**12}, "at": NOW - 1})
    raws += [{"dimensions": "big", "metrics": {"n": 10**12}, "at": NOW - 1}] * 9
    raws.append({"dimensions": "tenth", "metrics": {"x": 0.1}, "at": NOW - 2})
    raws += [{"dimensions": "tenth", "metrics": {"x": 0.1}, "at": NOW - 2}] * 999
    return raws


def queries() -> list[dict]:
    asked = []
    for pk in ["", "shop", "a|b", "100%"]:
        for period in ["15s:3h", "1h:7d", "1d:1y"]:
            for dims, depth in ([[], 2], [["site1"], 2], [["site2", "shop"], 1],
                                [["site0", "a:b", "p3"], 0]):
                asked.append({"pk": pk, "period": period, "dimensions": json.dumps(dims),
                              "depth": depth, "threshold": 0,
                              "metrics": "hits,seconds,dollars,visitors,dollars/hits",
                              "since": NOW - SPAN[period], "until": NOW})
    for dims in (HOSTILE[:2], ["big"], ["tenth"], ["other"]):
        asked.append({"dimensions": json.dumps(dims), "depth": 2, "threshold": 0,
                      "metrics": "hits,n,x,odd_name", "since": NOW - 3600, "until": NOW})
    return asked


def shown(answer: dict) -> list[dict]:
    """A plotpoints answer's series with their non-zero buckets only (the file stays small;
    every other bucket of the window was 0)."""
    return [{**series, "data": [point for point in series["data"] if point[1]]}
            for series in answer["series"]]


def main() -> None:
    settings = load_settings(environ={})
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(data, appendonly=False).start()
        store = Store.from_settings(settings, server.url)
        store.count([parse_event(raw, settings, NOW) for raw in events()], NOW)
        raw = redis.Redis.from_url(server.url)
        stored = {}
        for key in sorted(raw.scan_iter(count=1000)):
            kind = raw.type(key).decode()
            if kind == "hash":
                value = {k.decode(): v.decode() for k, v in raw.hgetall(key).items()}
            elif kind == "zset":
                value = [[m.decode(), s] for m, s in raw.zrange(key, 0, -1, withscores=True)]
            elif kind == "set":
                value = sorted(m.decode() for m in raw.smembers(key))
            else:
                value = base64.b64encode(raw.get(key)).decode()
            stored[key.decode()] = {"type": kind, "value": value, "pttl": raw.pttl(key)}
        answers = []
        for params in queries():
            query = parse_query(params, settings, NOW)
            answers.append({"params": params, "series": shown(plotpoints(store, query)),
                            "totals": totals(store, query)["totals"]})
        server.stop()
    json.dump({"now": NOW, "keys": stored, "answers": answers}, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
