"""A plain `pip install .` (a built wheel, no checkout beside it) serves a working dashboard:
the wheel carries jQuery and flot, copied from npm's node_modules at build time, and not
node_modules itself (issue 11, part 5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from hailwhale.embedded import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
VENDOR = {"jquery.min.js": ROOT / "node_modules" / "jquery" / "dist" / "jquery.min.js",
          "jquery.flot.js": ROOT / "node_modules" / "flot" / "dist" / "es5" / "jquery.flot.js"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools leaves build/ beside setup.py, and a build/ of an
    # earlier run (stale files included) would go into the next wheel.
    source = tmp_path_factory.mktemp("source") / "hailwhale"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "test-artifacts", "__pycache__",
        ".*_cache", ".hypothesis"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--disable-pip-version-check", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("hailwhale-*.whl")
    return built


def test_the_wheel_carries_the_browser_libraries_and_no_node_modules(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"whale/vendor/jquery.min.js", "whale/vendor/jquery.flot.js"} <= set(names)
    assert not [name for name in names if "node_modules" in name]
    assert "hailwhale-0.1.0.data/data/share/hailwhale/static/embed.js" in names
    with zipfile.ZipFile(wheel) as archive:
        for name, source in VENDOR.items():
            assert archive.read(f"whale/vendor/{name}") == source.read_bytes(), name


def test_a_plain_install_serves_the_dashboard_with_its_libraries(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                           "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    port = free_port()
    # Run from an empty folder with a clean environment: nothing of the checkout is found.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WHALE_REDIS_URL": "memory://"}
    whale = subprocess.Popen([str(venv / "bin" / "hailwhale"), "whale", "--port", str(port)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/health", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and whale.poll() is None, \
                    whale.stdout.read() if whale.poll() is not None else "no answer"
                time.sleep(0.2)
        page = requests.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert requests.get(f"{url}/static/jquery.hailwhale.js", timeout=10).status_code == 200
        embed = requests.get(f"{url}/embed.js", timeout=10)  # one tag, a live graph
        assert embed.status_code == 200 and "HailWhaleEmbed" in embed.text
        assert embed.content == (ROOT / "static" / "embed.js").read_bytes()
        for name, source in VENDOR.items():
            answer = requests.get(f"{url}/static/vendor/{name}", timeout=10)
            assert answer.status_code == 200, (name, answer.text[:200])
            assert answer.content == source.read_bytes(), name
    finally:
        whale.terminate()
        whale.wait(10)
