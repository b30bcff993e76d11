"""Room for writes beside heavy queries: a heavy query runs only in one of a few slots.

A worker building a large answer is busy for seconds; with every worker of a node doing so,
counting (``GET /count``, hailwail's ``POST /batch``) waits for them all. A query whose cost
(series x buckets read) passes ``HEAVY_CELLS`` must first hold one of ``slots`` slots shared
by every worker of the node, so the other workers stay free for writes and light queries.
A heavy query finding every slot taken is refused at once with :class:`Busy` (a 503 with
Retry-After): the client tries again later. It does not wait for a slot, because a waiting
query holds its worker as surely as a running one (measured: with four heavy queries at once
and a 5 s wait, GET /count waited up to 1.8 s; refused at once, none waited).

A slot is an exclusive ``flock`` on one of ``slots`` files named by the node (the uWSGI
master's pid, or the process's under the development server), in a directory only this
user can use (``hailwhale-<uid>`` in the temp directory, refused if it is anyone else's or
a symlink, since another local user could otherwise hold the slots). The kernel releases a
lock when its holder closes it or dies, so a killed worker (harakiri, kill -9) never leaves
a slot taken; the files of nodes whose process is gone are removed when a node starts.
Locks on separate opens of a file exclude each other also between threads of one process
(the development server's).
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import tempfile
from pathlib import Path

from .errors import ConfigurationError, StoreUnavailable

HEAVY_CELLS = 100_000  # a query reading fewer series x buckets runs at once, slot or not


class Busy(StoreUnavailable):
    """Every slot for heavy queries is taken: answered 503, to be retried."""


class Slots:
    """``count`` slots shared by the processes that build it with the same ``key``."""

    def __init__(self, count: int, key: str, directory: str | None = None):
        self.count = count
        self.key = key
        self.directory = private_directory(directory)
        _forget_gone(self.directory)

    def acquire(self) -> int:
        """The file descriptor of a slot now held; Busy when every slot is taken (it does
        not wait: see above)."""
        for index in range(self.count):
            fd = os.open(self.directory / f"slot-{self.key}-{index}",
                         os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        raise Busy(f"busy: {self.count} heavy queries are running (QUERY_SLOTS); "
                   "try again in a few seconds, or narrow the query")

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the only descriptor of that open releases its lock


def private_directory(parent: str | None = None) -> Path:
    """``hailwhale-<uid>`` in ``parent`` (the temp directory by default), where a node's
    processes share files (these slots, telemetry's metric files): made with mode 0700, or
    checked to be this user's own and no symlink (ConfigurationError otherwise)."""
    directory = Path(parent or tempfile.gettempdir()) / f"hailwhale-{os.getuid()}"
    _private(directory)
    return directory


def _private(directory: Path) -> None:
    """Make ``directory`` (mode 0700), or check that it is this user's own and no symlink."""
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigurationError(f"{directory} is not a private directory of this user: "
                                 "remove it, or set TMPDIR to another place")


_SLOT = re.compile(r"slot-(?:uwsgi|pid)-(\d+)-\d+")


def _forget_gone(directory: Path) -> None:
    """Remove the slot files of nodes whose process (master, or single process) is gone."""
    for path in directory.iterdir():
        found = _SLOT.fullmatch(path.name)
        if found and not alive(int(found.group(1))):
            path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (whoever owns it)."""
    try:
        os.kill(pid, 0)  # no signal: only whether it exists (PermissionError: it does)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


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
