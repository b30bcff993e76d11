"""The code is ruff clean (part of the suite, so CI keeps it so)."""

import subprocess
import sys
from pathlib import Path


def test_ruff_is_clean():
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(root)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
