"""Room for writes beside heavy queries: a heavy query runs only in one of a few slots.

A worker building a large answer is busy for seconds; with every worker of a node doing so,
counting (``GET /count``, hailwail's ``POST /batch``) waits for them all. A query whose cost
(series x buckets read) passes ``HEAVY_CELLS`` must first hold one of ``slots`` slots shared
by every worker of the node, so the other workers stay free for writes and light queries.
A heavy query finding every slot taken is refused at once with :class:`Busy` (a 503 with
Retry-After): the client tries again later. It does not wait for a slot, because a waiting
query holds its worker as surely as a running one (measured: with four heavy queries at once
and a 5 s wait, GET /count waited up to 1.8 s; refused at once, none waited).

A slot is an exclusive ``flock`` on one of ``slots`` files in a directory of the node's own
(named by the uWSGI master's pid, or the process's under the development server). The
kernel releases it when its holder closes it or dies, so a killed worker (harakiri, kill -9)
never leaves a slot taken. Locks on separate opens of a file exclude each other also between
threads of one process (the development server's).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

from .errors import StoreUnavailable

HEAVY_CELLS = 100_000  # a query reading fewer series x buckets runs at once, slot or not
WAIT = 0.0  # seconds a heavy query waits for a slot (see above)
_POLL = 0.05


class Busy(StoreUnavailable):
    """Every slot for heavy queries is taken: answered 503, to be retried."""


class Slots:
    """``count`` slots shared by the processes that build it with the same ``key``."""

    def __init__(self, count: int, key: str, directory: str | None = None):
        self.count = count
        self.directory = Path(directory or tempfile.gettempdir()) / f"hailwhale-slots-{key}"

    def acquire(self, wait: float = WAIT) -> int:
        """The file descriptor of a slot now held, waiting up to ``wait`` seconds for one."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:
            for index in range(self.count):
                fd = os.open(self.directory / str(index), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    os.close(fd)
            if time.monotonic() >= deadline:
                raise Busy(f"busy: {self.count} heavy queries are running (QUERY_SLOTS); "
                           "try again in a few seconds, or narrow the query")
            time.sleep(_POLL)

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the only descriptor of that open releases its lock


class Budget:
    """What one query may read: cells past HEAVY_CELLS take a slot, held until ``close``."""

    def __init__(self, slots: Slots | None):
        self.slots = slots
        self.spent = 0
        self._fd: int | None = None

    def spend(self, cells: int) -> None:
        """Count ``cells`` about to be read; past HEAVY_CELLS in all, hold a slot first."""
        self.spent += cells
        if self._fd is None and self.slots is not None and self.spent > HEAVY_CELLS:
            self._fd = self.slots.acquire()

    def close(self) -> None:
        if self._fd is not None:
            Slots.release(self._fd)
            self._fd = None

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
