"""The machinery ``hailwhale bench`` runs on: uWSGI and wrk processes, what Redis counts
(INFO commandstats, MONITOR), Zipf weights, percentiles and the machine's description.

Every process the bench starts is stopped by it, whatever happens (failure, Ctrl-C, SIGTERM).
uWSGI runs in a session of its own (its master and workers are stopped as a process group)
and, on Linux, is told to die with the bench, so not even a SIGKILL of the bench leaves one
holding a port. Linux only, like the setup it measures (uWSGI workers are found in /proc).
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from hailwhale.errors import HailWhaleError

BIN = Path(sys.executable).parent
# Variables that would change what the processes under test do: uWSGI takes any UWSGI_* as an
# option, and the machine's HailWhale settings must not leak into the bench.
FOREIGN = ("UWSGI_", "HAILWHALE_", "WHALE_", "HAIL_", "CELERY_")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class BenchError(HailWhaleError):
    """The bench could not run or measure something: one line saying what."""


def tool(name: str) -> str:
    """The path of a program the bench runs: beside this Python first (the virtualenv's
    ``uwsgi`` and ``hailwail``), then on PATH."""
    beside = BIN / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        hint = {"wrk": "apt-get install wrk", "uwsgi": "pip install -e '.[uwsgi]'",
                "redis-server": "apt-get install redis-server"}.get(name, "install it")
        raise BenchError(f"{name} is not installed ({hint})")
    return found


def clean_environ(**variables: str) -> dict[str, str]:
    """This process's environment without HailWhale's and uWSGI's variables, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(FOREIGN)}
    return {**env, **variables}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    """SIGTERM this child when the bench dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def spawn(command: list[str], **kwargs) -> subprocess.Popen:
    """A child in a session of its own (a Ctrl-C reaches the bench, which stops the child),
    told to die with the bench."""
    linux = sys.platform.startswith("linux")
    return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent if linux else None, **kwargs)


def process_group(pgid: int) -> dict[int, tuple[int, str]]:
    """The live processes of a process group: pid -> (parent pid, command line), from
    /proc."""
    members = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members[int(entry)] = (int(ppid),
                                   cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
    return members


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) the live processes of a process group have used, from
    /proc (a worker that exited meanwhile takes its time with it: compare only over spans
    in which none did)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_group(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def stop_group(process: subprocess.Popen | None) -> None:
    """Stop a child started by ``spawn`` and everything in its process group: SIGTERM, then
    SIGKILL to the whole group if anything is left."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while process_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_group(process.pid):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


@dataclass
class Uwsgi:
    """One uWSGI master and its workers, started from ``ini`` (``path:section``) with
    ``extra`` options after it (the last value of an option wins)."""

    ini: str
    port: int
    env: dict[str, str]
    log: Path
    extra: tuple[str, ...] = ()
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Uwsgi:
        with open(self.log, "wb") as log:
            self.process = spawn([tool("uwsgi"), "--ini", self.ini, *self.extra], env=self.env,
                                 stdout=log, stderr=subprocess.STDOUT, cwd=self.log.parent)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, path: str, workers: int) -> None:
        """Wait until ``path`` answers 200 and ``workers`` processes have loaded the app."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"uwsgi --ini {self.ini} exited with "
                                 f"{self.process.returncode}:\n{self.output()[-2000:]}")
            loaded = len(re.findall(r"WSGI app 0 .* ready ", self.output()))
            if loaded >= workers:
                try:
                    if requests.get(self.url + path, timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                raise BenchError(f"uwsgi --ini {self.ini} did not answer {path} within "
                                 f"{START_TIMEOUT:.0f}s:\n{self.output()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_group(self.process)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run reports."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def wrk(url: str, seconds: float, connections: int, script: Path | None = None) -> WrkResult:
    """Drive ``url`` with wrk (one thread, the other core is the server's) for ``seconds``."""
    command = [tool("wrk"), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "30s"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True,
                          timeout=seconds + 60)
    out = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if done.returncode != 0 or not total or int(total.group(1)) == 0:
        raise BenchError(f"wrk {url} failed: {(out + done.stderr).strip()[-500:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    names = ("connect", "read", "write", "timeout")
    return WrkResult(int(total.group(1)), float(total.group(2)) * _UNITS[total.group(3)],
                     int(non_2xx.group(1)) if non_2xx else 0,
                     dict(zip(names, map(int, errors.groups()), strict=True)) if errors
                     else dict.fromkeys(names, 0))


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """``(calls, microseconds)`` per command since Redis started (INFO commandstats),
    commands run by Lua scripts included (their time is also inside the script's)."""
    return {name.removeprefix("cmdstat_"): (int(stats["calls"]), int(stats["usec"]))
            for name, stats in client.info("commandstats").items()}


def calls_between(before: dict, after: dict) -> dict[str, int]:
    """Commands run between two ``commandstats`` snapshots, the bench's own INFO left out."""
    delta = {name: calls - before.get(name, (0, 0))[0] for name, (calls, _) in after.items()
             if not name.startswith("info")}
    return {name: calls for name, calls in sorted(delta.items()) if calls}


def seconds_between(before: dict, after: dict, names: tuple[str, ...]) -> float:
    """Seconds Redis spent running the commands ``names`` between two snapshots."""
    return sum(after.get(name, (0, 0))[1] - before.get(name, (0, 0))[1] for name in names) / 1e6


class Monitor:
    """Counts what a Redis runs while it watches (MONITOR): commands sent by clients, and
    commands run inside Lua scripts (which MONITOR marks ``[db lua]``), by name.

    MONITOR slows Redis down, so it only ever watches an untimed sample."""

    END = "hailwhale-bench-monitor-end"

    def __init__(self, port: int):
        self.port = port
        self.client_calls: dict[str, int] = {}
        self.script_calls: dict[str, int] = {}
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self._sock.sendall(b"MONITOR\r\n")
        self._rest = b""
        if self._line() != b"+OK":
            raise BenchError("Redis refused MONITOR")
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _line(self) -> bytes:
        while b"\r\n" not in self._rest:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise BenchError("MONITOR connection closed")
            self._rest += chunk
        line, self._rest = self._rest.split(b"\r\n", 1)
        return line

    def _read(self) -> None:
        try:
            while True:
                line = self._line()
                # +1700000000.123456 [0 127.0.0.1:5000] "evalsha" "..." ...
                head, _, command = line.partition(b"] ")
                source = head.rsplit(b" ", 1)[-1]
                name = command.split(b'"', 2)[1].decode().lower() if command else "?"
                if name == "echo" and self.END.encode() in command:
                    break
                calls = self.script_calls if source == b"lua" else self.client_calls
                calls[name] = calls.get(name, 0) + 1
        except (OSError, BenchError, IndexError):
            pass
        finally:
            self._ended.set()

    def close(self) -> None:
        """Stop watching once every command sent before this call has been counted."""
        client = redis.Redis(port=self.port)
        try:
            client.echo(self.END)
        finally:
            client.close()
        self._ended.wait(60)
        self._sock.close()


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with ``share`` of them at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def machine(client: redis.Redis) -> dict:
    """What the figures were measured on."""
    cpu, memory = "unknown", 0
    try:
        cpu = next((line.split(":", 1)[1].strip()
                    for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "unknown")
        memory = next(int(line.split()[1]) * 1024
                      for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        pass
    wrk_version = _first_line([tool("wrk"), "--version"])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "redis": client.info("server")["redis_version"],
        "python": platform.python_version(),
        "uwsgi": "uWSGI " + _first_line([tool("uwsgi"), "--version"]),
        "wrk": wrk_version.split(" [")[0].removeprefix("wrk "),
    }


def zipf(size: int) -> list[float]:
    """Cumulative Zipf (s=1) weights over ``size`` ranks."""
    total, cumulative = 0.0, []
    for rank in range(size):
        total += 1 / (rank + 1)
        cumulative.append(total)
    return cumulative


def chunks(items, size: int):
    """``items`` in lists of ``size`` (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
