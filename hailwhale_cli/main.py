"""The ``hailwhale`` command: ``demo``, ``whale``, ``hail``, ``token``, ``reset``, ``bench``.

Failures print one line to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from hailwhale import keys
from hailwhale.config import Settings, load_settings
from hailwhale.errors import ConfigurationError, HailWhaleError
from hailwhale.store import Store

DEMO_DATA = Path.home() / ".hailwhale" / "demo-redis"


def check_exposure(settings: Settings, host: str, what: str, allow_open: bool = False) -> None:
    """Refuses to serve with no SECRET on an address other machines can reach, unless told
    to (``--allow-open`` or ALLOW_OPEN)."""
    from hailwhale.auth import is_loopback

    if not settings.secret and not is_loopback(host) and not (allow_open or settings.allow_open):
        raise ConfigurationError(
            f"refusing to serve {what} with no SECRET on {host or 'every interface'}: anyone "
            "who can reach it could count and read every pk. Set HAILWHALE_SECRET (see "
            "README, Security), bind 127.0.0.1, or pass --allow-open (HAILWHALE_ALLOW_OPEN=1)")


def _serve(app, host: str, port: int, what: str, settings: Settings) -> None:
    from hailwhale_web.server import make

    server = make(app, host, port)
    print(f"{what} listening on http://{host}:{server.server_port}/", flush=True)
    if settings.secret:
        print(f"{what}: tokens required (SECRET is set)", flush=True)
    else:
        print(f"{what}: OPEN, no SECRET set: anyone who can reach it can count and read "
              "every pk", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for printing and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def cmd_demo(args, settings) -> None:
    from .demo import run

    check_exposure(settings, args.host, "the demo", args.allow_open)
    configured = args.redis or settings.whale_redis_url
    run(settings, args.host, args.port, configured, Path(args.data_dir))


def cmd_whale(args, settings) -> None:
    from whale import create_app

    check_exposure(settings, args.host, "whale", args.allow_open)
    store = Store.from_settings(settings, args.redis)
    store.ping()
    print(f"store: {redact(args.redis or settings.redis_url)}", flush=True)
    if store.layout() != keys.LAYOUT:
        print(f"whale: this store holds counters of storage layout {store.layout()}, which "
              f"are not shown until `hailwhale migrate` carries them into layout "
              f"{keys.LAYOUT} (see README, Upgrading)", flush=True)
    _serve(create_app(store, settings), args.host, args.port, "whale", settings)


def cmd_hail(args, settings) -> None:
    import dataclasses

    from hail.app import from_settings

    if args.redis:
        settings = dataclasses.replace(settings, hail_redis_url=args.redis)
    if args.statsd_port is not None:
        settings = dataclasses.replace(settings, statsd_port=args.statsd_port)
    check_exposure(settings, args.host, "hail", args.allow_open)
    app = from_settings(settings)
    if settings.hail_backend == "celery":
        from kombu.utils.url import maybe_sanitize_url  # no password in the log

        where = maybe_sanitize_url(settings.celery_broker_url)
    else:
        where = settings.hail_redis_url
    print(f"buffer: {settings.hail_backend} at {where}", flush=True)
    listener = _statsd(settings)
    try:
        _serve(app, args.host, args.port, "hail", settings)
    finally:
        if listener is not None:
            listener.stop()


def _statsd(settings: Settings):
    """Hail's StatsD listener, started, when STATSD_PORT is not 0 (and the buffer is Redis:
    the Celery path takes HTTP events only)."""
    if not settings.statsd_port:
        return None
    if settings.hail_backend == "celery":
        print("statsd: off (HAIL_BACKEND=celery takes HTTP events only)", flush=True)
        return None
    from hail.statsd import Listener
    from hailwhale.buffer import Buffer

    try:
        listener = Listener(settings, Buffer.from_url(settings.hail_redis_url))
    except OSError as exc:
        raise ConfigurationError(
            f"statsd: cannot listen on {settings.statsd_host}:{settings.statsd_port} "
            f"({exc.strerror or exc}); choose another with --statsd-port or "
            "HAILWHALE_STATSD_PORT (0 turns StatsD off)") from None
    print(f"statsd: listening on udp and tcp {settings.statsd_host}:{listener.port}, "
          f"counting into pk {settings.statsd_pk!r}", flush=True)
    return listener.start()


def cmd_token(args, settings) -> None:
    import json

    from hailwhale import auth
    from hailwhale.event import parse_dimensions

    if args.id:
        print(auth.token_id(args.id))
        return
    if not settings.secret:
        raise ConfigurationError("no SECRET is set: set HAILWHALE_SECRET (or SECRET in the "
                                 "settings file) to the secret the services share")
    if not args.can or not args.pk:
        raise ConfigurationError("--can and --pk are required")
    dims: tuple = ()
    if args.dimensions:
        try:
            branches = parse_dimensions(args.dimensions, settings, "--dimensions")
        except HailWhaleError as exc:
            raise ConfigurationError(str(exc)) from None
        if len(branches) != 1:
            raise ConfigurationError(f"--dimensions names one path, such as "
                                     f'\'["pageviews"]\' (got {json.dumps(args.dimensions)})')
        dims = branches[0]
    expires_in = auth.parse_duration(args.expires)
    print(auth.issue(settings.secret, args.can, args.pk, dims, expires_in))


def cmd_reset(args, settings) -> None:
    store = Store.from_settings(settings, args.redis)
    deleted = store.reset(args.pk)
    print(f"deleted {deleted} keys of pk {args.pk!r}")


def cmd_migrate(args, settings) -> None:
    from hailwhale.migrate import migrate

    store = Store.from_settings(settings, args.redis)
    print(f"store: {redact(args.redis or settings.redis_url)}", flush=True)
    report = migrate(store, say=lambda line: print(line, flush=True))
    print(report.line() + f"; the store is layout {store.layout()}")


def cmd_bench(args, settings) -> None:
    from hailwhale_bench.bench import main

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
    demo.add_argument("--allow-open", action="store_true",
                      help="serve with no SECRET on a non-loopback address")
    demo.set_defaults(run=cmd_demo)

    whale = commands.add_parser("whale", help="the Whale counting and query service")
    whale.add_argument("--host", default="127.0.0.1")
    whale.add_argument("--port", type=int, default=8080)
    whale.add_argument("--redis", help="Redis URL (default: WHALE_REDIS_URL)")
    whale.add_argument("--allow-open", action="store_true",
                       help="serve with no SECRET on a non-loopback address")
    whale.set_defaults(run=cmd_whale)

    hail = commands.add_parser(
        "hail", help="a Hail collector node (buffering for hailwail, or handing to Celery)")
    hail.add_argument("--host", default="127.0.0.1")
    hail.add_argument("--port", type=int, default=8081)
    hail.add_argument("--redis", help="the buffer's Redis URL (default: HAIL_REDIS_URL)")
    hail.add_argument("--statsd-port", type=int, metavar="PORT",
                      help="StatsD over UDP and TCP on this port (default: STATSD_PORT, "
                      "8125; 0: off)")
    hail.add_argument("--allow-open", action="store_true",
                      help="serve with no SECRET on a non-loopback address")
    hail.set_defaults(run=cmd_hail)

    token = commands.add_parser(
        "token", help="print a signed token (needs the SECRET): who may write, read or "
                      "administer which pks")
    token.add_argument("--can", choices=("write", "read", "admin"),
                       help="write: count events; read: query; admin: everything")
    token.add_argument("--pk", action="append", metavar="PK",
                       help="a pk the token covers (repeat for several; '*' for every pk)")
    token.add_argument("--dimensions", metavar="JSON",
                       help="confine the token to this dimension path and below, e.g. "
                            "'[\"pageviews\"]'")
    token.add_argument("--expires", default="365d", metavar="DURATION",
                       help="how long it works: 30d, 12h, 1y, or never (%(default)s)")
    token.add_argument("--id", metavar="TOKEN",
                       help="print the id of TOKEN instead (for REVOKED_TOKENS)")
    token.set_defaults(run=cmd_token)

    reset = commands.add_parser("reset", help="delete every counter of one pk")
    reset.add_argument("--pk", required=True, help='the pk to delete ("" for the default)')
    reset.add_argument("--redis", help="Redis URL (default: WHALE_REDIS_URL)")
    reset.set_defaults(run=cmd_reset)

    migrate = commands.add_parser(
        "migrate", help="carry counters of an earlier storage layout into today's (safe to "
                        "run again; Whale may keep counting meanwhile)")
    migrate.add_argument("--redis", help="Redis URL (default: WHALE_REDIS_URL)")
    migrate.set_defaults(run=cmd_migrate)

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
