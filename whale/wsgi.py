"""The Whale app for uWSGI (``module = whale.wsgi:application``), built from the settings."""

from hailwhale.config import load_settings
from hailwhale.store import Store
from hailwhale_web.plumbing import check_uwsgi_exposure

from .app import create_app

_settings = load_settings()
check_uwsgi_exposure(_settings, "whale")
application = create_app(Store.from_settings(_settings), _settings)
