"""The Hail app for uWSGI (``module = hail.wsgi:application``), built from the settings."""

from hailwhale.config import load_settings

from .app import from_settings

application = from_settings(load_settings())
