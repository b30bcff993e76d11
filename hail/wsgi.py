"""The Hail app for uWSGI (``module = hail.wsgi:application``), built from the settings."""

from hailwhale.config import load_settings
from hailwhale_web.plumbing import check_uwsgi_exposure

from .app import from_settings

_settings = load_settings()
check_uwsgi_exposure(_settings, "hail")
application = from_settings(_settings)
