"""Packaging: the metadata lives in pyproject.toml; this adds the browser libraries to the
build.

jQuery and flot come from the npm registry (package.json pins them, ``npm ci`` installs
them into node_modules/, never committed). Building the package copies the two files the
dashboard needs into the built ``whale/vendor/``, so a wheel, and a plain ``pip install .``,
carry them; ``npm ci`` is run first when node_modules does not hold them yet.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# The name Whale serves each under -> its file in node_modules (as whale/assets.py's VENDOR).
VENDOR = {
    "jquery.min.js": Path("jquery", "dist", "jquery.min.js"),
    "jquery.flot.js": Path("flot", "dist", "es5", "jquery.flot.js"),
}


class BuildWithBrowserLibraries(build_py):
    """build_py, then jQuery and flot copied from node_modules into the built whale/vendor/."""

    def run(self):
        super().run()
        modules = ROOT / "node_modules"
        if not all((modules / path).is_file() for path in VENDOR.values()):
            npm = shutil.which("npm")
            if npm is None:
                print("hailwhale: npm not found, so the package is built without jQuery and "
                      "flot: the dashboard will ask for them (install Node.js and npm, or "
                      "run `npm ci` before building)", file=sys.stderr)
                return
            subprocess.run([npm, "ci", "--omit=dev", "--no-fund", "--no-audit",
                            "--loglevel=error"], cwd=ROOT, check=True)
        target = Path(self.build_lib) / "whale" / "vendor"
        target.mkdir(parents=True, exist_ok=True)
        for name, path in VENDOR.items():
            shutil.copyfile(modules / path, target / name)


setup(cmdclass={"build_py": BuildWithBrowserLibraries})
