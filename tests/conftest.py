"""Shared fixtures: a real redis-server started by the harness on a free port, and the same
tests again on fakeredis for speed."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import webtest

from hailwhale.config import load_settings
from hailwhale.embedded import RedisServer, free_port
from hailwhale.store import Store, connect
from whale import create_app

# Every Hail the suite starts would listen for StatsD on 8125 by default; only the StatsD
# tests do, each on a free port of its own (tests/test_statsd.py).
os.environ.setdefault("HAILWHALE_STATSD_PORT", "0")


class Clock:
    """A clock the tests can move; starts at the real time, since Redis expires keys by it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not on PATH: install it (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(params=["redis", "fakeredis"])
def client(request, redis_server):
    """A clean Redis: the real server, then fakeredis."""
    if request.param == "redis":
        redis_client = connect(redis_server.url)
        redis_client.flushdb()
    else:
        redis_client = connect("memory://")
    yield redis_client
    redis_client.close()


@pytest.fixture
def real_client(redis_server):
    """The real redis-server only, for what fakeredis cannot show (encodings, memory)."""
    redis_client = connect(redis_server.url)
    redis_client.flushdb()
    yield redis_client
    redis_client.close()


@pytest.fixture
def settings():
    """The defaults of settings.py, untouched by this machine's environment."""
    return load_settings(environ={})


@pytest.fixture
def store(client, settings):
    return Store(client, settings)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(store, clock):
    """The Whale app, called in-process through WSGI."""
    return webtest.TestApp(create_app(store, clock=clock))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, redis_server):
    """A three-node Redis Cluster (no replicas) on free ports: ``redis+cluster://`` URL."""
    import subprocess

    servers = [
        RedisServer(tmp_path_factory.mktemp(f"cluster{n}"), free_port(cluster_bus=True),
                    appendonly=False,
                    extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
        .start()
        for n in range(3)
    ]
    subprocess.run(["redis-cli", "--cluster", "create",
                    *[f"127.0.0.1:{s.port}" for s in servers],
                    "--cluster-replicas", "0", "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    url = f"redis+cluster://127.0.0.1:{servers[0].port}/0"
    deadline = time.monotonic() + 30
    while True:  # the nodes agree on the slots a moment after create returns
        try:
            client = connect(url)
            if client.cluster_info()["cluster_state"] == "ok":
                client.close()
                break
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
    yield url
    for server in servers:
        server.stop()
