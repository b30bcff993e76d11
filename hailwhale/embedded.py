"""The embedded default store of ``hailwhale demo``: a private redis-server, else fakeredis."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port(cluster_bus: bool = False, pair: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now; with ``cluster_bus``,
    one whose Redis Cluster bus port (the port + 10000) is free too; with ``pair``, one
    whose next port is free too (``hailwhale demo --port P`` also listens on P + 1)."""
    offsets = (10000,) * cluster_bus + (1,) * pair
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if all(_free(port + offset) for offset in offsets):
            return port


def _free(port: int) -> bool:
    if port > 65535:
        return False
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class RedisServer:
    """A ``redis-server`` child process on a free port, stopped at exit."""

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True,
                 extra: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra = extra
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.data_dir), "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        atexit.register(self.stop)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def embedded_store_url(data_dir: Path) -> tuple[str, str]:
    """``(url, one line saying what it is)`` for the demo's store."""
    if shutil.which("redis-server"):
        server = RedisServer(data_dir).start()
        return server.url, (f"store: embedded redis-server on 127.0.0.1:{server.port}, "
                            f"data kept in {data_dir}")
    return "memory://", ("store: in-process fakeredis (no redis-server on PATH); "
                         "data is lost when the demo stops")
