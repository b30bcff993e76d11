"""Whale: the counting and query service (a Bottle app)."""


def __getattr__(name: str):
    # Imported on first use: Hail nodes import whale.web, and must not load Whale's app (its
    # store, queries and polars) with it.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'whale' has no attribute {name!r}")


__all__ = ["create_app"]
