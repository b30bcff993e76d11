"""``hailwhale bench``: it runs as a real process, reports every figure, and leaves nothing.

Only the shape of the answer is checked, never a figure against its target: a wall time in
an assertion is a flaky test. Every process the bench starts (redis-servers, uWSGI masters
and workers, wrk, hailwail) inherits a marker variable, so the test can find any left behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hailwhale_bench.bench import FIGURES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="the bench finds uWSGI workers through /proc"),
]

HAILWHALE = Path(sys.executable).parent / "hailwhale"
TIMEOUT = 120  # --quick takes about 30 s on the 2-core reference machine
MARK = "HW_BENCH_TEST_MARK"  # not HAILWHALE_*: the bench keeps those from its children


@pytest.fixture(autouse=True)
def tools():
    for name in ("wrk", "redis-server"):
        if not shutil.which(name):
            pytest.fail(f"{name} is not on PATH: install it (apt-get install {name}); "
                        "./run-tests does")


def marked(mark: str) -> list[str]:
    """The live processes carrying ``mark`` in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"{MARK}={mark}".encode() in environ.split(b"\0") and \
                stat.rsplit(")", 1)[1].split()[0] != "Z":
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry}: {command}")
    return found


def left_behind(mark: str) -> list[str]:
    deadline = time.monotonic() + 10
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def bench(mark: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, MARK: mark}
    return subprocess.Popen([str(HAILWHALE), "bench", *args], env=env, text=True,
                            start_new_session=True, **kwargs)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def test_quick_bench_reports_every_figure_and_leaves_nothing_running():
    mark = uuid.uuid4().hex
    process = bench(mark, "--quick", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
        pytest.fail(f"hailwhale bench --quick took over {TIMEOUT}s:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    assert left_behind(mark) == []

    result = json.loads(out)
    for name in FIGURES:
        assert is_number(result[name]) and result[name] > 0, (name, result[name])
    assert set(result["targets"]) <= set(FIGURES)
    assert all(isinstance(met, bool) for met in result["met"].values())

    scaling = result["scaling"]
    assert scaling["factor"] == 2
    for name in FIGURES[1:]:  # ingest_ratio is not scaled: one event per request
        assert is_number(scaling["figures"][name]) and scaling["figures"][name] > 0, name
    assert scaling["cost_ratio"] and all(is_number(v) and v > 0
                                         for v in scaling["cost_ratio"].values())
    assert set(scaling["flat"]) == set(scaling["cost_ratio"])

    machine = result["machine"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert is_number(machine["memory_gib"])
    for name in ("cpu", "redis", "python", "uwsgi", "wrk"):
        assert isinstance(machine[name], str) and machine[name], name

    details = result["details"]
    assert details["drain"]["events"] == result["sizes"]["events"]
    assert is_number(details["writes"]["client_calls_per_event"])
    assert details["writes"]["client_calls_per_event"] < \
        details["drain"]["store_commands_per_event"]
    assert details["drain"]["written_cells"] > 0 and details["drain"]["whale_cpu_seconds"] > 0
    assert details["memory"]["counters"] > 0
    statsd = details["statsd"]  # Hail's listener and the StatsD daemon, the same ladder
    for ladder in (statsd["hail"], statsd["daemon"]):
        assert [step["rate"] for step in ladder] == [25_000, 50_000, 100_000, 200_000]
        assert all(0 < step["sent"] and 0 <= step["counted"] <= step["sent"]
                   for step in ladder), ladder


def test_ctrl_c_stops_every_process_the_bench_started():
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group, mid-bench."""
    mark = uuid.uuid4().hex
    process = bench(mark, "--quick", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lines = []
        for line in process.stderr:  # wait until the servers run and wrk drives them
            lines.append(line)
            if "ingest_batch" in line:
                break
        else:
            pytest.fail("the bench ended before ingest_batch:\n" + "".join(lines))
        time.sleep(0.5)
        assert marked(mark), "nothing running to stop"
        os.killpg(process.pid, signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(60) == 130, "".join(lines) + rest
        assert "interrupted" in rest
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert left_behind(mark) == []
