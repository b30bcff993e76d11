"""Dimension expansion: pure functions, no Redis.

An event's dimensions are one or more *branches*, each a path of names from the top level
down (``("sales", "eu", "p123")``). The event is counted into every prefix of every branch,
plus the overall root ``()``.
"""

from __future__ import annotations

from collections.abc import Iterable

Path = tuple[str, ...]
ROOT: Path = ()


def expand(branches: Iterable[Path]) -> list[Path]:
    """Every prefix of every branch, and the root, each once, shortest first.

    >>> expand([("sales", "eu", "p1"), ("sales", "us")])
    [(), ('sales',), ('sales', 'eu'), ('sales', 'us'), ('sales', 'eu', 'p1')]
    """
    seen: dict[Path, None] = {ROOT: None}
    for branch in branches:
        for end in range(1, len(branch) + 1):
            seen.setdefault(tuple(branch[:end]), None)
    return sorted(seen, key=len)


def parent_links(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """``(parent, child name)`` for every non-root path: what the children registry records."""
    return [(path[:-1], path[-1]) for path in paths if path]


def label(path: Path) -> str:
    """A human label for a dimension path: ``Overall`` for the root."""
    return " / ".join(path) if path else "Overall"
