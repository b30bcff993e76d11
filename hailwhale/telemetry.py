"""Prometheus metrics about HailWhale itself, through the ``prometheus-client`` library.

Two kinds of facts, kept apart:

- What a process sees happen (requests, events accepted, batches applied, Redis errors,
  children folded into ``__other__``): counters and histograms kept here, each moved by a
  one-line call in the place that knows the fact.
- What lives in Redis (a Hail node's buffer and the age of its oldest event, the dead
  letters, the StatsD listener's tallies): read when Prometheus scrapes, by a collector
  (``BufferFacts``, ``StoreFacts``), never counted in a process, since other processes
  (hailwail, the StatsD mule, Celery workers) are the ones that change them.

Label values come from fixed lists only (``app``, ``route``, ``method``, ``status``,
``result``, ``reason``, ``kind``): no pk, dimension or metric name ever becomes a label, so no
client can create series in Prometheus.

Under uWSGI a node is several processes (workers, the StatsD mule), each with its own
counters; a scrape reaches one worker, which must answer for all. prometheus-client's
multiprocess mode does that: every process writes its values into files of one directory,
and a scrape sums them. The directory is chosen here, before prometheus-client is imported
(it reads ``PROMETHEUS_MULTIPROC_DIR`` then): ``prometheus-<master pid>-<master start time>``
in the node's private ``$TMPDIR/hailwhale-<uid>`` (hailwhale.admission), so each start of a
master has a new, empty directory with nothing to wipe, and those of masters that are gone
are removed as a node starts. A worker that exits gives back its in-progress gauge
(``mark_process_dead``, from uWSGI's atexit); one killed outright is found gone at the next
scrape. A ``PROMETHEUS_MULTIPROC_DIR`` set by the operator is used as it is. Elsewhere (the
development server, hailwail, tests) one process holds its own metrics in a plain registry.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

from .admission import alive, private_directory
from .errors import StoreUnavailable

ENV = "PROMETHEUS_MULTIPROC_DIR"
_NODE_DIR = re.compile(r"prometheus-(\d+)-(\d+)")


def _uwsgi_master() -> int:
    """The uWSGI master's pid when this process is one of its workers or mules, else 0."""
    try:
        import uwsgi  # type: ignore[import-not-found]  # only inside uWSGI
    except ImportError:
        return 0
    return int(uwsgi.masterpid() or 0)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 is the first), or
    None when there is no such process (or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _started(pid: int) -> int:
    """When ``pid`` started (clock ticks since boot, Linux), 0 when unknown: with the pid,
    it names one run of a process, whose pid may later be someone else's."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else 0


def node_directory(master: int, parent: str | None = None) -> Path:
    """The multiprocess directory of the node whose uWSGI master is ``master``: made, empty
    when new; those of masters that are gone (or whose pid is now another process's) are
    removed first."""
    base = private_directory(parent)
    mine = f"prometheus-{master}-{_started(master)}"
    for path in base.iterdir():
        found = _NODE_DIR.fullmatch(path.name)
        if found and path.name != mine:
            pid, started = int(found.group(1)), int(found.group(2))
            if not alive(pid) or (started and _started(pid) not in (0, started)):
                shutil.rmtree(path, ignore_errors=True)  # another worker may be at it too
    directory = base / mine
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _choose_directory(master: int) -> Path | None:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    if not master:
        return None
    directory = node_directory(master)
    os.environ[ENV] = str(directory)
    return directory


_MASTER = _uwsgi_master()
DIRECTORY = _choose_directory(_MASTER)  # None: this process keeps its metrics to itself

# Imported only now: prometheus-client picks its value class from the environment.
from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402

# Had anything imported prometheus-client before the directory was set, its values would be
# per process: pick again (a no-op otherwise).
values.ValueClass = values.get_value_class()

APPS = ("whale", "hail")
METHODS = ("GET", "POST", "HEAD", "OPTIONS")
OTHER = "other"  # a method outside METHODS, a request that matched no route
REJECTED = ("invalid", "metric_cap", "overflow")
REDIS_ERRORS = ("connection", "response", "other")
# From a fast Hail GET /count (about 1 ms) to a slow query or a large batch.
LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Every metric this module keeps is in _OWN, never in prometheus-client's default registry
# (an application embedding HailWhale keeps its own); under multiprocess mode _OWN is not
# exposed, the files are.
_OWN = CollectorRegistry()
REQUESTS = Counter("hailwhale_http_requests", "HTTP requests answered, by app, route, "
                   "method and status", ["app", "route", "method", "status"], registry=_OWN)
DURATION = Histogram("hailwhale_http_request_duration_seconds", "Time to answer an HTTP "
                     "request (the body's transfer excluded), by app and route",
                     ["app", "route"], buckets=LATENCY, registry=_OWN)
IN_PROGRESS = Gauge("hailwhale_http_requests_in_progress", "HTTP requests being answered",
                    ["app"], multiprocess_mode="livesum", registry=_OWN)
ACCEPTED = Counter("hailwhale_events_accepted", "Events answered 200 by /count and "
                   "/count.gif: buffered or queued on Hail, counted on Whale", ["app"],
                   registry=_OWN)
COUNTED = Counter("hailwhale_events_counted", "Events counted into Whale's Redis (batches "
                  "applied, and Whale's own /count)", registry=_OWN)
EVENTS_REJECTED = Counter("hailwhale_events_rejected", "Events of applied batches that Whale "
                          "refused, by reason (the sender dead-letters them)", ["reason"],
                          registry=_OWN)
BATCHES = Counter("hailwhale_batches", "Batches with an id (POST /batch, Celery tasks), by "
                  "result: applied, or a duplicate of one already applied", ["result"],
                  registry=_OWN)
APPLY = Histogram("hailwhale_batch_apply_duration_seconds", "Time to write a checked, folded "
                  "batch into Redis (the cardinality guard and every apply part)",
                  buckets=LATENCY, registry=_OWN)
FOLDS = Counter("hailwhale_cardinality_folds", "New children refused room under a parent "
                "at MAX_CHILDREN and counted under __other__ (each child once a write)",
                registry=_OWN)
REDIS = Counter("hailwhale_redis_errors", "Redis failures met, by kind: connection (lost or "
                "timed out), response (a command refused), other", ["kind"], registry=_OWN)
for _result in ("applied", "duplicate"):
    BATCHES.labels(_result)
for _reason in REJECTED:
    EVENTS_REJECTED.labels(_reason)
for _kind in REDIS_ERRORS:
    REDIS.labels(_kind)


@cache  # label values come from fixed lists: the children are few
def _child(metric, *labels: str):
    """``metric.labels(*labels)``, looked up once (it costs a lock and a microsecond)."""
    return metric.labels(*labels)


def serving(app: str) -> None:
    """Start the series of an app this process serves at zero, so they exist before the
    first event."""
    ACCEPTED.labels(app)


def request(app: str, route: str, method: str, status: str, seconds: float) -> None:
    """One HTTP request answered. ``route`` is the rule of the app's route it matched ("" or
    None for none); ``method`` and ``status`` outside their fixed lists count as "other"."""
    route = route or OTHER
    method = method if method in METHODS else OTHER
    status = status if len(status) == 3 and status.isdigit() else OTHER
    _child(REQUESTS, app, route, method, status).inc()
    _child(DURATION, app, route).observe(seconds)


def in_progress(app: str):
    """A context manager counting a request in ``hailwhale_http_requests_in_progress``."""
    return _child(IN_PROGRESS, app).track_inprogress()


def accepted(app: str, events: int) -> None:
    """``events`` taken in by ``app``'s /count."""
    _child(ACCEPTED, app).inc(events)


def counted(events: int) -> None:
    """``events`` counted by Whale's own /count (no batch id)."""
    COUNTED.inc(events)


def batch(applied: bool, counted: int, invalid: int, capped: int, overflow: int,
          seconds: float) -> None:
    """One batch with an id written in ``seconds``: applied (``counted`` events, and those
    refused as ``invalid``, ``capped`` by MAX_PK_METRICS, or by an ``overflow``), or a
    duplicate, which counted nothing."""
    APPLY.observe(seconds)
    if not applied:
        BATCHES.labels("duplicate").inc()
        return
    BATCHES.labels("applied").inc()
    COUNTED.inc(counted)
    for reason, amount in zip(REJECTED, (invalid, capped, overflow), strict=True):
        if amount:
            EVENTS_REJECTED.labels(reason).inc(amount)


def folded(refused: dict) -> None:
    """The children the cardinality guard refused room in one write (parent -> names)."""
    count = sum(len(names) for names in refused.values())
    if count:
        FOLDS.inc(count)


def redis_error(kind: str) -> None:
    """A Redis failure of ``kind`` (one of REDIS_ERRORS)."""
    REDIS.labels(kind if kind in REDIS_ERRORS else "other").inc()


class BufferFacts:
    """A Hail node's facts in its Redis, read at each scrape: the buffer's depth, the age of
    its oldest event (when Hail received it: the wire form's field 2), batches in flight,
    dead letters, and the StatsD listener's tallies (counters since that Redis began)."""

    STATSD = {"packets": "UDP packets received", "lines": "lines received (UDP and TCP)",
              "events": "lines buffered as events", "refused": "lines refused (bad lines)"}

    def __init__(self, buffer):
        self.buffer = buffer

    def collect(self) -> Iterator:
        try:
            stats, tallies = self.buffer.stats(), self.buffer.statsd_counts()
        except StoreUnavailable:
            yield _gauge("hailwhale_redis_up", "Whether the node's Redis answered this "
                         "scrape", 0)
            return
        yield _gauge("hailwhale_redis_up", "Whether the node's Redis answered this scrape", 1)
        yield _gauge("hailwhale_buffer_events", "Events waiting in the buffer", stats.waiting)
        yield _gauge("hailwhale_buffer_oldest_age_seconds", "How long the oldest waiting "
                     "event has waited since Hail received it (0: none waits)",
                     stats.oldest_age or 0.0)
        yield _gauge("hailwhale_buffer_batches_in_flight", "Batches taken by hailwail, not "
                     "yet confirmed by Whale", stats.in_flight)
        yield _gauge("hailwhale_dead_letters", "Events in the dead-letter list "
                     "(hw:{%hail}:dead)", stats.dead)
        for name, meaning in self.STATSD.items():
            family = "refused_lines" if name == "refused" else name
            metric = CounterMetricFamily(f"hailwhale_statsd_{family}", f"StatsD: {meaning}")
            metric.add_metric([], tallies.get(name, 0))
            yield metric


class StoreFacts:
    """Whale's facts in its Redis, read at each scrape: whether it answers, and the dead
    letters the Celery path keeps there (a Buffer on Whale's Redis, as hailwhale.tasks
    writes them)."""

    def __init__(self, dead_letters):
        self.dead_letters = dead_letters

    def collect(self) -> Iterator:
        try:
            dead = self.dead_letters.dead_count()
        except StoreUnavailable:
            yield _gauge("hailwhale_redis_up", "Whether Whale's Redis answered this scrape", 0)
            return
        yield _gauge("hailwhale_redis_up", "Whether Whale's Redis answered this scrape", 1)
        yield _gauge("hailwhale_dead_letters", "Events in the dead-letter list "
                     "(hw:{%hail}:dead; the Celery path's)", dead)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class _Own:
    """This process's metrics, for a scrape outside multiprocess mode, without the
    ``_created`` sample of each series (multiprocess mode has none: the same metrics either
    way)."""

    def collect(self) -> Iterator:
        for metric in _OWN.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


# What generate_latest writes, the text format every Prometheus 2 reads (prometheus-client
# 0.22 and later name a newer version as their latest, with the same text).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(collectors: Iterable = ()) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape, in Prometheus' text format: every metric of the
    node (of every process under uWSGI) and those ``collectors`` read now."""
    registry = CollectorRegistry()
    if DIRECTORY is not None:
        _forget_gone_processes(DIRECTORY)
        multiprocess.MultiProcessCollector(registry, path=str(DIRECTORY))
    else:
        registry.register(_Own())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE


_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def _forget_gone_processes(directory: Path) -> None:
    """Drop the in-progress gauges of processes that ended without saying so (SIGKILL,
    harakiri): their counters stay, a gauge of a process that is gone would stay up."""
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        found = _LIVE_FILE.fullmatch(os.path.basename(path))
        if found and not _running(int(found.group(1))):
            multiprocess.mark_process_dead(int(found.group(1)), str(directory))


def _running(pid: int) -> bool:
    """Whether ``pid`` is still a process of this node: alive and, where /proc tells, a
    child of the same master (a pid reused by another program is not; a killed worker the
    master has not reaped yet, a zombie, is gone)."""
    if pid == os.getpid():
        return True
    if _MASTER and os.path.isdir("/proc/self"):
        fields = _proc_stat(pid)
        return fields is not None and fields[0] != "Z" and int(fields[1]) == _MASTER
    return alive(pid)


def _at_exit() -> None:
    """Under uWSGI, a worker leaving gives back its in-progress gauge (then the one uWSGI
    atexit hook set before, if any)."""
    import uwsgi  # type: ignore[import-not-found]

    previous = getattr(uwsgi, "atexit", None)

    def leave() -> None:
        multiprocess.mark_process_dead(os.getpid(), str(DIRECTORY))
        if previous is not None:
            previous()

    uwsgi.atexit = leave


if DIRECTORY is not None and _MASTER:
    _at_exit()
