"""Whale: the counting and query service (a Bottle app)."""

from .app import create_app

__all__ = ["create_app"]
