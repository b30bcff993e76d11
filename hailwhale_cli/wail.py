"""The ``hailwail`` command (see ``hailwail.py``)."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from hailwhale.auth import ServiceToken
from hailwhale.buffer import Buffer
from hailwhale.config import load_settings
from hailwhale.drain import (
    DEFAULT_BATCH,
    DEFAULT_LEASE,
    DEFAULT_LINGER,
    DEFAULT_PARALLEL,
    WhaleClient,
    drain_parallel,
)
from hailwhale.errors import HailWhaleError


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hailwail",
                                  description="Drain a Hail buffer into Whale, exactly once.")
    top.add_argument("--loop", type=float, metavar="SECONDS",
                     help="keep draining, pausing SECONDS between passes")
    top.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                     help="events per batch (%(default)s)")
    top.add_argument("--linger", type=float, default=DEFAULT_LINGER, metavar="SECONDS",
                     help="with --loop, how long a partial batch may wait to fill: steady "
                          "traffic then folds like a backlog (%(default)s; 0: never)")
    top.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL, metavar="N",
                     help="batches in flight at once (%(default)s)")
    top.add_argument("--lease", type=float, default=DEFAULT_LEASE,
                     help="seconds before a batch whose sender vanished is sent again "
                          "(%(default)s)")
    top.add_argument("--hail-redis", help="the buffer's Redis URL (default: HAIL_REDIS_URL)")
    top.add_argument("--whale", help="Whale's URL (default: WHALE_URL)")
    top.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return top


def _stop(signum, frame):
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    try:
        settings = load_settings()
        buffer = Buffer.from_url(args.hail_redis or settings.hail_redis_url)
        if args.batch < 1 or args.parallel < 1:
            raise HailWhaleError("--batch and --parallel must be at least 1")
        if not 0 <= args.linger <= 10:
            raise HailWhaleError("--linger must be between 0 and 10 seconds")
        # A single pass moves what is there now; a loop follows traffic, and lingers.
        linger_for = args.linger if args.loop is not None else 0.0
        token = ServiceToken(settings.secret, settings.token)
        whales = [WhaleClient(args.whale or settings.whale_url, token=token)
                  for _ in range(args.parallel)]
        while True:
            try:
                report = drain_parallel(buffer, [w.send_items for w in whales], args.batch,
                                        args.lease, linger_for=linger_for)
            except HailWhaleError as exc:  # Whale or the buffer's Redis is down
                if args.loop is None:
                    raise
                print(f"hailwail: {exc}; retrying in {args.loop}s", file=sys.stderr,
                      flush=True)
            else:
                if not args.quiet and (report.batches or args.loop is None):
                    print(f"hailwail: {report.line(buffer.stats())}", flush=True)
            if args.loop is None:
                return 0
            time.sleep(args.loop)
    except HailWhaleError as exc:
        print(f"hailwail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


