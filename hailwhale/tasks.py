"""The Celery path: Hail hands events to RabbitMQ, Celery workers count them.

Instead of buffering in its local Redis for hailwail, a Hail node with ``HAIL_BACKEND=celery``
publishes each request's checked events as one ``count_events`` task. A worker counts them
through the same core as Whale's ``POST /batch`` (``hailwhale.batches.count_batch``), with
the task id as the batch id, so a task delivered twice is counted once.

    celery -A hailwhale.tasks worker          # counts events into WHALE_REDIS_URL
    celery -A hailwhale.tasks beat            # runs drain_buffer every HAILWAIL_INTERVAL s

Settings come from ``hailwhale.config.load_settings()`` when this module is imported:
``CELERY_BROKER_URL``, ``WHALE_REDIS_URL`` (where workers count), ``HAIL_REDIS_URL`` and
``WHALE_URL`` (for ``drain_buffer``), ``HAILWAIL_INTERVAL`` and ``CELERY_QUEUE``
(environment: ``HAILWHALE_CELERY_QUEUE``, default ``hailwhale``).
"""

from __future__ import annotations

import json
import time

import redis
from amqp.exceptions import AMQPError, MessageNacked, NotFound
from celery import Celery
from celery.exceptions import Reject
from celery.utils.log import get_task_logger
from kombu.exceptions import OperationalError

from . import keys
from .auth import ServiceToken
from .batches import check_batch_id, count_batch
from .buffer import Buffer
from .config import load_settings
from .drain import Report, WhaleClient, drain
from .errors import BadRequest, HailWhaleError, StoreUnavailable
from .store import Store, redis_errors

# Seconds Hail waits for RabbitMQ to take and confirm a message, per attempt (three at
# most, see the retry policy below) before it answers 503.
PUBLISH_TIMEOUT = 5.0
# A task that failed (Redis down) is retried after 1, 2, 4, ... seconds, at most this many
# seconds apart.
# Tries of a task that fails for a reason other than Redis being unavailable (a bug, an
# input the core cannot handle) before its events go to the dead letters.
MAX_UNEXPECTED_TRIES = 5
MAX_RETRY_DELAY = 60
# What publishing raises when the broker is away or refuses: kombu's wrapper, py-amqp's
# protocol errors and nack, and plain socket errors (a refused connection, a timeout).
BROKER_ERRORS = (OperationalError, AMQPError, MessageNacked, OSError)

settings = load_settings()
QUEUE = settings.celery_queue
log = get_task_logger(__name__)

app = Celery("hailwhale", broker=settings.celery_broker_url)
app.conf.update(
    # One queue of our own (its exchange and routing key take the same name), so that
    # several deployments, or a test run, can share a RabbitMQ without taking each other's
    # tasks. Celery declares it durable, and sends messages persistent.
    task_default_queue=QUEUE,
    # Remote control (``celery -A hailwhale.tasks inspect ...``) and monitoring events on
    # exchanges of the same name: a ``celery control shutdown`` meant for another app on the
    # same RabbitMQ does not reach HailWhale's workers.
    control_exchange=QUEUE,
    event_exchange=f"{QUEUE}.events",
    task_serializer="json",
    accept_content=["json"],
    # Nobody reads a task's return value: no result backend, and none is published. The
    # worker still logs it ("succeeded in 0.01s: {...}").
    task_ignore_result=True,
    broker_transport_options={
        # Every publish waits for RabbitMQ's ack, so Hail's 200 means the broker holds the
        # message; without it a publish "succeeds" before the broker has seen it.
        "confirm_publish": True,
        # kombu's connection for publishing retries forever by default: a Hail whose broker
        # is down would hang instead of answering 503. Three tries within a second or so.
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    broker_connection_timeout=2,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                               "interval_max": 0.5},
    # A worker waits for the broker at start-up rather than exiting.
    broker_connection_retry_on_startup=True,
    # With late acknowledgement each prefetched message is one more held unacknowledged by
    # a worker that may die; one at a time also spreads big batches over the workers.
    worker_prefetch_multiplier=1,
    # When the connection is lost, the messages of running tasks go back to the queue
    # anyway (they cannot be acknowledged any more): stop running them rather than finish
    # work that is redone (and then found already counted) elsewhere.
    worker_cancel_long_running_tasks_on_connection_loss=True,
    beat_schedule={
        "hailwail": {
            "task": "hailwhale.tasks.drain_buffer",
            "schedule": float(settings.hailwail_interval),
            # A pass queued while no worker ran is useless once the next one is due.
            "options": {"expires": float(settings.hailwail_interval)},
        },
    },
)

_store: Store | None = None


def store() -> Store:
    """Whale's store (``WHALE_REDIS_URL``), created on first use: in the worker process
    (after any fork), not in every process that imports this module to publish."""
    global _store
    if _store is None:
        _store = Store.from_settings(settings)
    return _store


# -- publishing (Hail) -------------------------------------------------------------------

def enqueue(items: list[dict]) -> None:
    """Publish ``items`` (one request's checked, stamped events) as one ``count_events``
    task, returning once RabbitMQ confirmed it holds the message.

    Raises StoreUnavailable when the broker cannot be reached, refuses the message or does
    not confirm it within ``PUBLISH_TIMEOUT`` seconds (Hail then answers 503)."""
    if not items:
        return
    try:
        count_events.apply_async(args=(items,), timeout=PUBLISH_TIMEOUT,
                                 confirm_timeout=PUBLISH_TIMEOUT)
    except BROKER_ERRORS as exc:
        raise StoreUnavailable(f"the Celery broker did not take the events: "
                               f"{_describe(exc)}") from exc


def health() -> dict:
    """The broker's state for Hail's ``/health``: ``{"backend": "celery", "broker": "up",
    "queue": name, "declared": whether the queue exists, "waiting": messages ready,
    "consumers": workers consuming}``.

    Raises StoreUnavailable when the broker cannot be reached."""
    try:
        # A connection of its own: a pooled one may look connected after the broker left.
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            try:
                _, waiting, consumers = channel.queue_declare(QUEUE, passive=True)
                declared = True
            except NotFound:  # no worker started and nothing published yet, or deleted
                declared, waiting, consumers = False, 0, 0
    except BROKER_ERRORS as exc:
        raise StoreUnavailable(f"the Celery broker is unavailable: {_describe(exc)}") from exc
    return {"backend": "celery", "broker": "up", "queue": QUEUE, "declared": declared,
            "waiting": waiting, "consumers": consumers}


def _describe(exc: BaseException) -> str:
    """What went wrong, from the chain of exceptions: kombu's wrappers often say nothing."""
    chain = []
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    if any(isinstance(link, MessageNacked) for link in chain):
        return "RabbitMQ refused the message (a full queue, or a broker short of resources)"
    return next((str(link) for link in chain if str(link)), type(chain[0]).__name__)


# -- counting (workers) ------------------------------------------------------------------

@app.task(bind=True, name="hailwhale.tasks.count_events", acks_late=True,
          reject_on_worker_lost=True, max_retries=None)
def count_events(self, items: list) -> dict:
    """Count ``items`` (raw events, as Hail stamps them) at most once, under the task id.

    The message is acknowledged only after the counters are written (``acks_late``), and is
    given back to the queue if the worker process dies (``reject_on_worker_lost``); a task
    that runs again finds its id already applied and counts nothing. Events the core refuses
    go to the dead-letter list with their reason, once. When the counting fails (Redis is
    unavailable, above all) the task is retried, under the same id, after 1, 2, 4, ...
    seconds, at most a minute apart, until it succeeds: nothing is acknowledged that is not
    counted or dead-lettered. A failure that retrying cannot fix (anything but an
    unavailable or refusing Redis) is tried MAX_UNEXPECTED_TRIES times, then the task's
    events go to the dead letters with the reason, so one bad task never retries forever."""
    batch_id = self.request.id
    try:
        current = store()
        refused = _refused(items, batch_id)
        if refused:
            _dead_letter_once(current, batch_id, [(json.dumps(items), refused)])
            return {"batch": batch_id, "counted": 0, "rejected": 1, "duplicate": False}
        answer = count_batch(current, batch_id=batch_id, raw_events=items, now=time.time())
        # A repeat returns the first run's answer, rejections included: they are recorded
        # below under a marker of their own, so a crash between the two steps loses none
        # and a repeat adds none.
        dead = [(json.dumps(items[r["index"]], separators=(",", ":")), r["error"])
                for r in answer["rejected"]]
        _dead_letter_once(current, batch_id, dead)
    except Exception as exc:
        # Running a task again is always safe (its id is applied at most once), so a
        # failure is retried rather than acknowledged: as hailwail keeps a batch that Whale
        # did not confirm. An unexpected one is logged with its traceback, to be fixed, and
        # after a few tries its events are dead-lettered instead.
        delay = min(2 ** self.request.retries, MAX_RETRY_DELAY)
        if isinstance(exc, StoreUnavailable):
            log.warning("batch %s: %s; retrying in %ss", batch_id, exc, delay)
        elif self.request.retries + 1 >= MAX_UNEXPECTED_TRIES:
            log.exception("batch %s could not be counted in %d tries; dead-lettering it",
                          batch_id, MAX_UNEXPECTED_TRIES)
            reason = f"could not be counted in {MAX_UNEXPECTED_TRIES} tries: {_describe(exc)}"
            try:
                _dead_letter_once(store(), batch_id, [(json.dumps(items), reason)])
            except StoreUnavailable as dead_exc:
                raise self.retry(exc=dead_exc, countdown=delay) from exc
            return {"batch": batch_id, "counted": 0, "rejected": 1, "duplicate": False}
        else:
            log.exception("batch %s could not be counted; retrying in %ss", batch_id, delay)
        try:
            raise self.retry(exc=exc, countdown=delay) from exc
        except BROKER_ERRORS as publish_error:
            # The retry could not be published: give the message itself back to the queue
            # (failing would acknowledge it, and its events would be lost).
            raise Reject(publish_error, requeue=True) from exc
    return {"batch": batch_id, "counted": answer["counted"], "rejected": len(dead),
            "duplicate": answer["duplicate"]}


def _refused(items, batch_id: str) -> str | None:
    """Why a task cannot be counted at all (then its whole payload is dead-lettered)."""
    if not isinstance(items, list):
        return "a count_events task takes a list of events"
    try:
        check_batch_id(batch_id)
    except BadRequest as exc:  # a task id longer than a batch id may be (published by hand)
        return f"task id: {exc.reason}"
    return None


def _dead_letter_once(current: Store, batch_id: str, dead: list[tuple[str, str]]) -> None:
    """Append a batch's ``(event, reason)`` pairs to the dead-letter list unless they were
    appended before: the list and a marker change in one transaction."""
    if not dead:
        return
    # The marker sits in the dead-letter list's hash slot, so the transaction also runs on
    # Redis Cluster.
    marker = keys.dead_marker(batch_id)
    with redis_errors(), current.redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(marker)
            if pipe.exists(marker):
                return
            pipe.multi()
            Buffer(current.redis).dead_letter(batch_id, dead, pipe=pipe)
            pipe.set(marker, "1", ex=current.settings.batch_memory)
            pipe.execute()
        except redis.WatchError:
            pass  # another delivery of the same task recorded them meanwhile


# -- hailwail as a beat task -------------------------------------------------------------

_wail: tuple[Buffer, WhaleClient] | None = None


@app.task(name="hailwhale.tasks.drain_buffer")
def drain_buffer() -> dict:
    """One hailwail pass: move the Hail buffer in ``HAIL_REDIS_URL`` (as this worker is
    configured) to Whale at ``WHALE_URL``, batch by batch, each exactly once. Celery beat
    runs it every ``HAILWAIL_INTERVAL`` seconds.

    Returns what the pass did; when Whale or the buffer's Redis cannot be reached it logs
    a warning and the next pass carries on (a batch in flight is sent again after its
    lease, under the same id)."""
    global _wail
    if _wail is None:
        token = ServiceToken(settings.secret, settings.token)
        _wail = (Buffer.from_url(settings.hail_redis_url),
                 WhaleClient(settings.whale_url, token=token))
    buffer, whale = _wail
    report = Report()
    summary: dict = {}
    try:
        drain(buffer, whale.send_items, report=report)
    except HailWhaleError as exc:
        log.warning("hailwail: %s; the next pass retries", exc)
        summary["error"] = str(exc)
    return {"events": report.events, "batches": report.batches, "dead": report.dead,
            "recovered": report.recovered, "duplicates": report.duplicates, **summary}
