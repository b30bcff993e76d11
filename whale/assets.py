"""Where Whale finds the files it serves to browsers.

``static/`` (the jQuery plugin and the dashboard) is the project's own; jQuery and flot come
from the npm registry at install time (``npm ci``, see package.json) into ``node_modules/``,
never committed. A built package carries copies of them in ``whale/vendor/`` (setup.py puts
them there); otherwise both are looked for beside the packages (a checkout, ``pip install -e
.``) and where a regular install puts data files; ``HAILWHALE_NODE_MODULES`` names another
node_modules folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOTS = (Path(__file__).resolve().parent.parent, Path(sys.prefix) / "share" / "hailwhale")

# The browser libraries: the name Whale serves them under -> their file in node_modules.
VENDOR = {
    "jquery.min.js": Path("jquery", "dist", "jquery.min.js"),
    "jquery.flot.js": Path("flot", "dist", "es5", "jquery.flot.js"),
}
INSTALL_HINT = "run `npm ci` in the HailWhale checkout (see README) to install jQuery and flot"


def static_dir() -> Path:
    """The folder of the plugin and the dashboard."""
    return next((root / "static" for root in _ROOTS if (root / "static").is_dir()),
                _ROOTS[0] / "static")


def node_modules() -> Path:
    """The node_modules folder holding jQuery and flot."""
    if os.environ.get("HAILWHALE_NODE_MODULES"):
        return Path(os.environ["HAILWHALE_NODE_MODULES"])
    return next((root / "node_modules" for root in _ROOTS if (root / "node_modules").is_dir()),
                _ROOTS[0] / "node_modules")


# Where a built package (a wheel, a plain `pip install .`) carries them: setup.py copies them
# there from node_modules at build time.
_PACKAGED = Path(__file__).resolve().parent / "vendor"


def vendor_file(name: str) -> Path | None:
    """The installed file of one browser library, or None when it is not installed: the
    copy a built package carries, else node_modules'."""
    relative = VENDOR.get(name)
    if relative is None:
        return None
    for path in (_PACKAGED / name, node_modules() / relative):
        if path.is_file():
            return path
    return None


def missing_vendor() -> list[str]:
    """The browser libraries that are not installed (the dashboard needs them all)."""
    return [name for name in VENDOR if vendor_file(name) is None]
