"""The code is ruff clean (part of the suite, so CI keeps it so)."""

import subprocess
import sys
from pathlib import Path


def test_ruff_is_clean():
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "ruff", "check", str(root)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# Each package and the packages it may import (besides itself and outside libraries): the
# core, then the HTTP plumbing, then the apps (Hail never needs Whale), then the commands.
LAYERS = {
    "hailwhale": set(),
    "hailwhale_web": {"hailwhale"},
    "whale": {"hailwhale", "hailwhale_web"},
    "hail": {"hailwhale", "hailwhale_web"},
    "hailwhale_cli": {"hailwhale", "hailwhale_web", "whale", "hail", "hailwhale_bench"},
}
WEB_FRAMEWORKS = {"bottle"}


def _imports(path: Path) -> set[str]:
    """The top-level names of every absolute import in ``path``, lazy ones included."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imports_point_one_way():
    root = Path(__file__).resolve().parent.parent
    wrong = []
    for package, allowed in LAYERS.items():
        forbidden = (set(LAYERS) | {"hailwhale_bench"}) - allowed - {package}
        if package == "hailwhale":
            forbidden |= WEB_FRAMEWORKS
        for path in sorted((root / package).rglob("*.py")):
            wrong += [f"{path.relative_to(root)} imports {name}"
                      for name in sorted(_imports(path) & forbidden)]
    assert not wrong, wrong
