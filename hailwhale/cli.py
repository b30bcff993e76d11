"""The ``hailwhale`` command: ``demo``, ``whale``, ``hail``, ``reset`` and ``bench``.

Failures print one line to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from .config import load_settings
from .errors import HailWhaleError
from .store import Store

DEMO_DATA = Path.home() / ".hailwhale" / "demo-redis"


def _serve(app, host: str, port: int, what: str) -> None:
    from .server import make

    server = make(app, host, port)
    print(f"{what} listening on http://{host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def cmd_demo(args, settings) -> None:
    from .demo import run

    configured = args.redis or settings.whale_redis_url
    run(settings, args.host, args.port, configured, Path(args.data_dir))


def cmd_whale(args, settings) -> None:
    from whale import create_app

    store = Store.from_settings(settings, args.redis)
    store.ping()
    print(f"store: {args.redis or settings.redis_url}", flush=True)
    _serve(create_app(store, settings), args.host, args.port, "whale")


def cmd_hail(args, settings) -> None:
    import dataclasses

    from hail.app import from_settings

    if args.redis:
        settings = dataclasses.replace(settings, hail_redis_url=args.redis)
    app = from_settings(settings)
    if settings.hail_backend == "celery":
        from kombu.utils.url import maybe_sanitize_url  # no password in the log

        where = maybe_sanitize_url(settings.celery_broker_url)
    else:
        where = settings.hail_redis_url
    print(f"buffer: {settings.hail_backend} at {where}", flush=True)
    _serve(app, args.host, args.port, "hail")


def cmd_reset(args, settings) -> None:
    store = Store.from_settings(settings, args.redis)
    deleted = store.reset(args.pk)
    print(f"deleted {deleted} keys of pk {args.pk!r}")


def cmd_bench(args, settings) -> None:
    from .bench import main

    try:
        main(args)
    except KeyboardInterrupt:
        # Every process the bench started is stopped by now (the bench unwinds first).
        print("hailwhale bench: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hailwhale", description=__doc__.splitlines()[0])
    top.add_argument("-v", "--verbose", action="store_true", help="log every request")
    commands = top.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="Whale, its dashboard, Hail and hailwail with sample traffic, in one "
                     "process, on an embedded store")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080,
                      help="Whale and the dashboard; Hail listens on the next port")
    demo.add_argument("--redis", help="use this Redis URL instead of the embedded store")
    demo.add_argument("--data-dir", default=str(DEMO_DATA),
                      help="where the embedded redis-server keeps its data (%(default)s)")
    demo.set_defaults(run=cmd_demo)

    whale = commands.add_parser("whale", help="the Whale counting and query service")
    whale.add_argument("--host", default="127.0.0.1")
    whale.add_argument("--port", type=int, default=8080)
    whale.add_argument("--redis", help="Redis URL (default: WHALE_REDIS_URL)")
    whale.set_defaults(run=cmd_whale)

    hail = commands.add_parser(
        "hail", help="a Hail collector node (buffering for hailwail, or handing to Celery)")
    hail.add_argument("--host", default="127.0.0.1")
    hail.add_argument("--port", type=int, default=8081)
    hail.add_argument("--redis", help="the buffer's Redis URL (default: HAIL_REDIS_URL)")
    hail.set_defaults(run=cmd_hail)

    reset = commands.add_parser("reset", help="delete every counter of one pk")
    reset.add_argument("--pk", required=True, help='the pk to delete ("" for the default)')
    reset.add_argument("--redis", help="Redis URL (default: WHALE_REDIS_URL)")
    reset.set_defaults(run=cmd_reset)

    bench = commands.add_parser(
        "bench", help="measure ingest, drain, query and memory figures against baselines, "
                      "with private redis-servers, uWSGI and wrk (takes minutes)")
    bench.add_argument("--quick", action="store_true",
                       help="small sizes, well under a minute: checks that the bench works")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--scale", type=int, metavar="K",
                       help="the scaling pass's factor (default 10, 2 with --quick)")
    bench.add_argument("--events", type=int, metavar="N",
                       help="events in the drain workload (default 100000, 4000 with --quick)")
    bench.add_argument("--ini", metavar="PATH",
                       help="the uwsgi.ini to run Hail and Whale with (default: the checkout's)")
    bench.set_defaults(run=cmd_bench)
    return top


def _exit_on_sigterm(signum, frame):
    # A plain SIGTERM would end the process without running atexit handlers, leaving the
    # demo's redis-server behind; SystemExit unwinds normally. Once: a second SIGTERM must
    # not interrupt that clean-up.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args.run(args, load_settings())
    except (HailWhaleError, OSError, RuntimeError) as exc:
        print(f"hailwhale {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
