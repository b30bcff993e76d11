"""Hail: the collector tier (a Bottle app) that buffers events for hailwail to move."""

from .app import create_app

__all__ = ["create_app"]
