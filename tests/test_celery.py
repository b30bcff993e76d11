"""The Celery path against the real RabbitMQ of this machine, with real worker, beat, Hail
and Whale processes.

The tests use queues of their own (``HAILWHALE_CELERY_QUEUE=hailwhale-test-<random>``),
deleted afterwards with their exchanges, so they never take or leave a message in anybody
else's queue. Waits are bounded and say what they
waited for, with the tail of every process' log; every process is stopped, even on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from kombu import Connection

from hailwhale import tasks
from hailwhale.buffer import Buffer
from hailwhale.config import load_settings
from hailwhale.embedded import RedisServer, free_port
from hailwhale.query import parse_query
from hailwhale.query import totals as query_totals
from hailwhale.store import Store, connect

pytestmark = pytest.mark.e2e

BROKER = tasks.settings.celery_broker_url
PYTHON = sys.executable
HAILWHALE = shutil.which("hailwhale", path=str(Path(PYTHON).parent)) or "hailwhale"
CELERY = [PYTHON, "-m", "celery", "-A", "hailwhale.tasks"]
# Gossip, mingle and heartbeats talk to other workers on the broker: not wanted here, and
# mingle alone costs a second at start-up.
WORKER_FLAGS = ["--loglevel=INFO", "--without-gossip", "--without-mingle",
                "--without-heartbeat"]
START_TIMEOUT = 20
COUNT_TIMEOUT = 30


# -- processes -----------------------------------------------------------------------------

class Process:
    """A child process in a session of its own (so it can be killed with its children),
    its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "w") as log:
            self.popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, **env}, cwd=workdir,
                                          start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (pid {self.popen.pid}, exit {self.popen.poll()}) ---\n" + \
            "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL to the process and every process it started."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (a prefork child whose parent was killed, say).
        self._signal_group(signal.SIGKILL)
        self.popen.wait(10)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass


class Processes:
    """Starts processes for a test and stops every one of them afterwards."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[Process] = []

    def start(self, name: str, args: list[str], env: dict[str, str],
              ready: str | None = None) -> Process:
        process = Process(name, args, env, self.workdir)
        self.started.append(process)
        if ready:
            wait_for(lambda: ready in process.log(), START_TIMEOUT,
                     f"{name} to print {ready!r}", self, watch=[process])
        return process

    def worker(self, queue: str, env: dict[str, str], name: str = "worker",
               pool: str = "prefork") -> Process:
        """A Celery worker on ``queue`` that has connected and is consuming: prefork (as
        in production) with one pool process, or solo (one process to kill)."""
        node = f"{name}-{uuid.uuid4().hex[:8]}@%h"
        args = [*CELERY, "worker", f"--pool={pool}", "--concurrency=1", "-n", node,
                *WORKER_FLAGS]
        return self.start(name, args, celery_env(queue, env), ready=" ready.")

    def hailwhale(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        return self.start(name, [HAILWHALE, *args], env, ready="listening on")

    def logs(self) -> str:
        return "\n".join(process.tail() for process in self.started)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


def celery_env(queue: str, env: dict[str, str]) -> dict[str, str]:
    return {"HAILWHALE_CELERY_QUEUE": queue, "CELERY_BROKER_URL": BROKER,
            "HAIL_BACKEND": "celery", **env}


def wait_for(predicate, timeout: float, what: str, processes: Processes,
             watch: list[Process] = ()):
    """Poll ``predicate`` until it is true; fail saying ``what`` was awaited, with the
    logs, after ``timeout`` seconds or as soon as a process in ``watch`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        dead = [p.name for p in watch if p.popen.poll() is not None]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(dead)} exited" if dead else f"{timeout}s passed"
            pytest.fail(f"{reason} while waiting for {what}\n{processes.logs()}",
                        pytrace=False)
        time.sleep(0.05)


def lines(process: Process, task_id: str, state: str) -> list[str]:
    """The worker's log lines about one task in one state (received, succeeded, retry)."""
    return [line for line in process.log().splitlines()
            if f"[{task_id}] {state}" in line]


def finished(process: Process, state: str = "succeeded") -> int:
    """How many count_events tasks ``process`` has logged in ``state``."""
    return sum(f"] {state}" in line for line in process.log().splitlines()
               if "hailwhale.tasks.count_events[" in line)


@pytest.fixture(scope="module")
def broker():
    """The machine's RabbitMQ, which these tests need (they never mock it)."""
    try:
        with Connection(BROKER, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"RabbitMQ is not reachable at {BROKER} ({exc}); the Celery tests need "
                    "a real broker (apt-get install rabbitmq-server)", pytrace=False)
    return BROKER


def new_queue() -> str:
    return f"hailwhale-test-{uuid.uuid4().hex[:12]}"


def delete_queues(broker: str, names: list[str]) -> None:
    """Delete our queues and the exchanges hailwhale.tasks names after them: the task
    exchange, remote control's, and monitoring events'."""
    with Connection(broker, connect_timeout=5) as connection:
        for name in names:
            channel = connection.channel()
            try:
                channel.queue_delete(name)
                for exchange in (name, f"{name}.pidbox", f"reply.{name}.pidbox",
                                 f"{name}.events"):
                    channel.exchange_delete(exchange)
            finally:
                channel.close()


@pytest.fixture
def queue(broker):
    name = new_queue()
    yield name
    delete_queues(broker, [name])


@pytest.fixture
def processes(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def shared(broker, redis_server, tmp_path_factory):
    """One worker on one queue, for the tests that do not kill it."""
    name = new_queue()
    started = Processes(tmp_path_factory.mktemp("celery-shared"))
    try:
        worker = started.worker(name, {"WHALE_REDIS_URL": redis_server.url})
        yield name, worker, started
    finally:
        started.stop_all()
        delete_queues(broker, [name])


# -- reading what was counted --------------------------------------------------------------

@pytest.fixture
def whale_store(real_client):
    """Whale's store in the harness redis (flushed), as the workers write it."""
    return Store(real_client, load_settings())


def counted(store: Store, pk: str, dimension=None) -> dict[tuple, dict]:
    """hits and dollars of ``dimension`` and its children, by path."""
    params = {"pk": pk, "metrics": "hits,dollars", "depth": "1", "threshold": "0"}
    if dimension is not None:
        params["dimensions"] = json.dumps(dimension)
    query = parse_query(params, store.settings, time.time())
    return {tuple(row["dimension"]): row["totals"]
            for row in query_totals(store, query)["totals"]}


def hits(store: Store, pk: str) -> int:
    return counted(store, pk)[()]["hits"]


def publish(queue: str, items: list, task_id: str | None = None) -> str:
    """Publish a count_events task straight to ``queue``, as Hail would (Hail refuses bad
    events, so this is how a bad one reaches a worker)."""
    task_id = task_id or str(uuid.uuid4())
    tasks.count_events.apply_async(args=(items,), task_id=task_id, queue=queue)
    return task_id


def events(count: int, pk: str, products: int = 5) -> list[dict]:
    return [{"dimensions": ["shop", f"p{i % products}"], "metrics": {"dollars": 1.5},
             "pk": pk} for i in range(count)]


# -- the tests -------------------------------------------------------------------------------

def test_hail_process_publishes_and_a_worker_counts_every_event_once(shared, whale_store):
    queue, worker, started = shared
    before = finished(worker)
    hail = started.hailwhale("hail", ["hail", "--port", str(port := free_port())],
                             celery_env(queue, {}))
    try:
        url = f"http://127.0.0.1:{port}"
        health = requests.get(f"{url}/health", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json() | {"waiting": 0, "warning": ""} == {
            "ok": True, "backend": "celery", "broker": "up", "queue": queue, "declared": True,
            "waiting": 0, "consumers": 1, "auth": "open", "warning": ""}
        session = requests.Session()
        sent = events(200, "e2e")
        for i, event in enumerate(sent[:100]):  # 100 single events, some as beacons
            params = {name: json.dumps(value) if name != "pk" else value
                      for name, value in event.items()}
            answer = session.get(f"{url}/count.gif" if i % 10 == 0 else f"{url}/count",
                                 params=params, timeout=10)
            assert answer.status_code == 200, answer.text
        answer = session.post(f"{url}/count", data=json.dumps(sent[100:160]), timeout=10)
        assert answer.json() == {"ok": True, "accepted": 60}, answer.text
        ndjson = "\n".join(json.dumps(event) for event in sent[160:])
        answer = session.post(f"{url}/count", data=ndjson, timeout=10)
        assert answer.json() == {"ok": True, "accepted": 40}, answer.text
    finally:
        hail.stop()
    # One task per request: 100 + 2. Once all of them are done, nothing else can arrive.
    wait_for(lambda: finished(worker) - before >= 102, COUNT_TIMEOUT,
             "the worker to finish the 102 tasks Hail published", started, watch=[worker])
    assert finished(worker) - before == 102
    totals = counted(whale_store, "e2e", ["shop"])
    assert totals[("shop",)] == {"hits": 200, "dollars": 300}
    assert {path: value["hits"] for path, value in totals.items()} == {
        ("shop",): 200, **{("shop", f"p{n}"): 40 for n in range(5)}}
    assert hits(whale_store, "e2e") == 200


def test_a_task_delivered_twice_is_counted_once(shared, whale_store):
    queue, worker, started = shared
    bad = {"dimensions": "shop", "metrics": {"x": "y"}, "pk": "twice"}
    items = [*events(10, "twice"), bad]
    task_id = publish(queue, items)
    publish(queue, items, task_id)  # the same message again: what a redelivery is
    wait_for(lambda: len(lines(worker, task_id, "succeeded")) == 2, COUNT_TIMEOUT,
             f"both deliveries of task {task_id}", started, watch=[worker])
    first, second = lines(worker, task_id, "succeeded")
    assert "'counted': 10" in first and "'duplicate': False" in first, first
    assert "'duplicate': True" in second, second
    assert counted(whale_store, "twice", ["shop"])[("shop",)] == {"hits": 10, "dollars": 15}
    # The rejected event is dead-lettered once, not once per delivery.
    dead = Buffer(whale_store.redis).dead_letters()
    assert [(json.loads(d["event"]), d["batch"]) for d in dead] == [(bad, task_id)]


def test_a_rejected_event_is_dead_lettered_with_its_reason_and_the_rest_counted(
        shared, whale_store):
    queue, worker, started = shared
    bad = {"dimensions": "shop", "metrics": {"x": "y"}, "pk": "dead"}
    good = events(2, "dead")
    task_id = publish(queue, [good[0], bad, good[1], "not an event"])
    wait_for(lambda: lines(worker, task_id, "succeeded"), COUNT_TIMEOUT,
             f"task {task_id}", started, watch=[worker])
    assert hits(whale_store, "dead") == 2
    dead = Buffer(whale_store.redis).dead_letters()
    assert [json.loads(d["event"]) for d in dead] == [bad, "not an event"]
    assert dead[0]["reason"] == 'metrics.x: a metric is a number or "is_unique" (got "y")'
    assert dead[1]["reason"].startswith("event: an event is a JSON object")
    assert {d["batch"] for d in dead} == {task_id}


def big_batch(pk: str, count: int = 60_000) -> list[dict]:
    """Enough events that counting them takes a worker a second or more, so a kill that
    follows "received" lands mid-task."""
    return [{"dimensions": {"big": ["shop", f"p{i % 50}"]}, "metrics": {"dollars": 1},
             "pk": pk, "uid": f"u{i % 1000}"} for i in range(count)]


def test_a_worker_killed_mid_task_loses_nothing_and_counts_nothing_twice(
        broker, queue, processes, redis_server, whale_store):
    items = big_batch("killed")
    env = {"WHALE_REDIS_URL": redis_server.url}
    first = processes.worker(queue, env, "worker-killed", pool="solo")
    task_id = publish(queue, items)
    wait_for(lambda: lines(first, task_id, "received"), COUNT_TIMEOUT,
             "the worker to receive the big task", processes, watch=[first])
    first.kill()
    # Whatever moment the kill landed, the count below must be exact; this says whether
    # the test saw a redelivery (the task had not finished when it was killed).
    finished_before_kill = bool(lines(first, task_id, "succeeded"))
    second = processes.worker(queue, env, "worker-after")
    wait_for(lambda: lines(second, task_id, "succeeded") or finished_before_kill,
             COUNT_TIMEOUT, "the new worker to count the redelivered task", processes,
             watch=[second])
    if not finished_before_kill:
        assert lines(second, task_id, "received"), "the task was not redelivered"
    assert hits(whale_store, "killed") == len(items)
    assert counted(whale_store, "killed", {"big": "shop"})[("big", "shop")]["dollars"] == \
        len(items)


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc; psutil is not a dependency)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_a_pool_process_killed_mid_task_gives_the_task_back(
        broker, queue, processes, redis_server, whale_store):
    # reject_on_worker_lost: when the pool process running the task dies, the worker gives
    # the message back to the queue (without it, the message is acknowledged as failed and
    # its events are lost), and its next pool process counts it.
    items = big_batch("lost")
    worker = processes.worker(queue, {"WHALE_REDIS_URL": redis_server.url}, "worker-prefork",
                              pool="prefork")
    task_id = publish(queue, items)
    wait_for(lambda: lines(worker, task_id, "received"), COUNT_TIMEOUT,
             "the worker to receive the big task", processes, watch=[worker])
    children = children_of(worker.popen.pid)
    assert len(children) == 1, f"expected one pool process, found {children}"
    finished_before_kill = bool(lines(worker, task_id, "succeeded"))
    os.kill(children[0], signal.SIGKILL)
    wait_for(lambda: lines(worker, task_id, "succeeded"), COUNT_TIMEOUT,
             "the task to be counted after its pool process was killed", processes,
             watch=[worker])
    if not finished_before_kill:
        assert "exited with 'signal 9 (SIGKILL)'" in worker.log()
    assert hits(whale_store, "lost") == len(items)


def test_a_task_waits_for_redis_and_counts_when_it_is_back(
        broker, queue, processes, tmp_path, settings):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    worker = processes.worker(queue, {"WHALE_REDIS_URL": url}, "worker-no-redis")
    task_id = publish(queue, events(5, "late"))
    wait_for(lambda: lines(worker, task_id, "retry"), COUNT_TIMEOUT,
             "the task to be retried while Redis is down", processes, watch=[worker])
    server = RedisServer(tmp_path / "late-redis", port, appendonly=False).start()
    try:
        wait_for(lambda: lines(worker, task_id, "succeeded"), COUNT_TIMEOUT,
                 "the task to be counted once Redis is back", processes, watch=[worker])
        client = connect(url)
        try:
            assert hits(Store(client, load_settings()), "late") == 5
        finally:
            client.close()
    finally:
        server.stop()


def test_a_task_redis_refuses_is_retried_until_it_is_counted(broker, queue, processes,
                                                              tmp_path):
    # Not a lost connection but an error reply (Redis past maxmemory): the task is retried
    # all the same, not acknowledged as failed with its events.
    server = RedisServer(tmp_path / "full-redis", appendonly=False,
                         extra=("--maxmemory", "1")).start()
    client = connect(server.url)
    try:
        worker = processes.worker(queue, {"WHALE_REDIS_URL": server.url}, "worker-full-redis")
        task_id = publish(queue, events(5, "full"))
        wait_for(lambda: lines(worker, task_id, "retry"), COUNT_TIMEOUT,
                 "the task to be retried while Redis refuses writes", processes,
                 watch=[worker])
        assert "OutOfMemoryError" in lines(worker, task_id, "retry")[0]
        client.config_set("maxmemory", 0)
        wait_for(lambda: lines(worker, task_id, "succeeded"), COUNT_TIMEOUT,
                 "the task to be counted once Redis takes writes again", processes,
                 watch=[worker])
        assert hits(Store(client, load_settings()), "full") == 5
    finally:
        client.close()
        server.stop()


def rabbitmqctl(*args: str) -> None:
    command = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin")
    if not command:
        pytest.skip("rabbitmqctl is not installed: it sets the queue policy this test needs")
    done = subprocess.run([command, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl {args[0]} failed (needs the broker's admin rights): "
                    f"{done.stderr.strip()}")


def test_hail_answers_503_when_rabbitmq_refuses_the_message(queue, processes):
    # A policy on our queue alone makes RabbitMQ refuse every message published to it. With
    # publisher confirms the refusal reaches Hail, which answers 503; without them the
    # publish would "succeed", Hail would answer 200, and the event would be gone.
    policy = f"{queue}-full"
    rabbitmqctl("set_policy", "--apply-to", "queues", policy, f"^{re.escape(queue)}$",
                json.dumps({"max-length": 0, "overflow": "reject-publish"}))
    try:
        port = free_port()
        processes.hailwhale("hail-refused", ["hail", "--port", str(port)],
                            celery_env(queue, {}))
        answer = requests.get(f"http://127.0.0.1:{port}/count", params={"dimension": "x"},
                              timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert "RabbitMQ refused the message" in answer.json()["error"]
    finally:
        rabbitmqctl("clear_policy", policy)


def test_count_events_counts_and_dead_letters_once_on_redis_cluster(redis_cluster,
                                                                    monkeypatch):
    # The task's own steps, run in-process (no broker): on a cluster the counters' batch
    # markers sit beside the counters, and the dead letters' marker beside the list.
    client = connect(redis_cluster)
    store = Store(client, load_settings())
    monkeypatch.setattr(tasks, "_store", store)
    bad = {"dimensions": "shop", "metrics": {"x": "y"}, "pk": "cluster"}
    items = [*events(20, "cluster"), bad]
    task_id = str(uuid.uuid4())
    try:
        answers = [tasks.count_events.apply(args=(items,), task_id=task_id).get()
                   for _ in range(2)]
        assert [a["duplicate"] for a in answers] == [False, True]
        assert counted(store, "cluster", ["shop"])[("shop",)] == {"hits": 20, "dollars": 30}
        dead = [d for d in Buffer(client).dead_letters(10_000) if d["batch"] == task_id]
        assert [json.loads(d["event"]) for d in dead] == [bad]
    finally:
        store.reset("cluster")
        client.close()


def test_hail_answers_503_with_retry_after_when_the_broker_is_down(processes):
    hail = processes.hailwhale("hail-no-broker", ["hail", "--port", str(port := free_port())],
                               {"HAIL_BACKEND": "celery", "HAILWHALE_CELERY_QUEUE": "unused",
                                "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"})
    url = f"http://127.0.0.1:{port}"
    for answer in (requests.get(f"{url}/count", params={"dimension": "x"}, timeout=30),
                   requests.post(f"{url}/count", data='[{"dimensions": "x"}]', timeout=30),
                   requests.get(f"{url}/health", timeout=30)):
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert "the Celery broker" in answer.json()["error"]
    # Bad input is still refused as such: events are checked before they are published.
    bad = requests.get(f"{url}/count", params={"metrics": '{"x": "y"}'}, timeout=30)
    assert bad.status_code == 400, bad.text
    assert hail.popen.poll() is None


def test_beat_drains_a_hail_buffer_into_whale(broker, queue, processes, redis_server,
                                              real_client, tmp_path):
    hail_redis = f"redis://127.0.0.1:{redis_server.port}/1"
    buffer = Buffer.from_url(hail_redis)
    buffer.redis.flushdb()
    whale_port = free_port()
    processes.hailwhale("whale", ["whale", "--port", str(whale_port)],
                        {"WHALE_REDIS_URL": redis_server.url})
    whale = f"http://127.0.0.1:{whale_port}"
    env = {"HAIL_REDIS_URL": hail_redis, "WHALE_URL": whale, "HAILWAIL_INTERVAL": "1",
           "WHALE_REDIS_URL": redis_server.url}
    worker = processes.worker(queue, env, "worker-beat")
    beat = processes.start("beat", [*CELERY, "beat", "--loglevel=INFO",
                                    "--schedule", str(tmp_path / "beat-schedule")],
                           celery_env(queue, env))

    def whale_hits() -> int:
        answer = requests.get(f"{whale}/totals", params={"pk": "beat"}, timeout=10).json()
        return answer["totals"][0]["totals"].get("hits", 0)

    now = time.time()
    buffer.push([{**event, "at": now, "_received": now} for event in events(50, "beat")])
    wait_for(lambda: whale_hits() == 50, COUNT_TIMEOUT, "beat's drain to move 50 events",
             processes, watch=[worker, beat])
    buffer.push([{**event, "at": now} for event in events(25, "beat")])
    wait_for(lambda: whale_hits() == 75, COUNT_TIMEOUT,
             "a later pass to move 25 more events", processes, watch=[worker, beat])
    stats = buffer.stats()
    assert (stats.waiting, stats.in_flight, stats.dead) == (0, 0, 0)
    assert "Sending due task hailwail (hailwhale.tasks.drain_buffer)" in beat.log()
    assert "'events': 50" in worker.log() and "'events': 25" in worker.log()


def test_a_task_failing_for_a_lasting_reason_is_dead_lettered_after_bounded_tries(
        redis_server, monkeypatch):
    # The task's own steps, in-process (Celery runs the retries eagerly): a failure that is
    # not Redis being unavailable (here a bug in counting) is tried MAX_UNEXPECTED_TRIES
    # times, then its events go to the dead letters instead of retrying forever.
    client = connect(f"redis://127.0.0.1:{redis_server.port}/7")
    client.flushdb()
    store = Store(client, load_settings())
    monkeypatch.setattr(tasks, "_store", store)
    tries = []

    def broken(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("a bug in counting")

    monkeypatch.setattr(tasks, "count_batch", broken)
    items = events(3, "doomed")
    task_id = str(uuid.uuid4())
    answer = tasks.count_events.apply(args=(items,), task_id=task_id).get()
    assert answer == {"batch": task_id, "counted": 0, "rejected": 1, "duplicate": False}
    assert len(tries) == tasks.MAX_UNEXPECTED_TRIES
    dead = [d for d in Buffer(client).dead_letters(100) if d["batch"] == task_id]
    assert len(dead) == 1 and json.loads(dead[0]["event"]) == items
    assert "a bug in counting" in dead[0]["reason"] and "5 tries" in dead[0]["reason"]
    client.close()
