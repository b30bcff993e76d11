"""Starting and stopping real processes for the end-to-end tests (not a test module)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HAILWHALE = shutil.which("hailwhale", path=str(Path(sys.executable).parent)) or "hailwhale"


def start(args: list[str], env: dict | None = None,
          ready: str = "listening on") -> tuple[subprocess.Popen, list[str]]:
    """A ``hailwhale`` process and the lines it printed up to the first holding ``ready``."""
    process = subprocess.Popen([HAILWHALE, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if ready in line:
            return process, lines
    process.kill()
    raise AssertionError(f"hailwhale {args} did not start: {lines}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL when it has not exited 10 s later."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
