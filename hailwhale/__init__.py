"""HailWhale: real-time counting of rolled-up, multi-dimensional metrics.

The web apps live in ``whale`` (and ``hail``); this package is the core they share, with no
web framework in it.
"""

from .api import HailWhale
from .config import Settings, load_settings
from .errors import BadRequest, ConfigurationError, HailWhaleError, StoreUnavailable
from .store import Store

__all__ = [
    "HailWhale", "Settings", "load_settings", "Store",
    "BadRequest", "ConfigurationError", "HailWhaleError", "StoreUnavailable",
]
__version__ = "0.1.0"
