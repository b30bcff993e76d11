"""The named errors of HailWhale.

Every error a user can cause carries the parameter it is about and quotes what was sent, so
the web apps can turn it into a 400 whose message says exactly what is wrong.
"""

from __future__ import annotations

import reprlib

# A bounded repr: a deeply nested value must not exhaust the stack while its error is built.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 120


class HailWhaleError(Exception):
    """Base class of every error HailWhale raises on purpose."""


class BadRequest(HailWhaleError):
    """Input that cannot be counted or answered: becomes an HTTP 400.

    ``param`` names the parameter, ``value`` is what was sent (quoted, shortened) and
    ``reason`` says what is wrong with it.
    """

    def __init__(self, param: str, value: object, reason: str):
        self.param = param
        self.value = value
        self.reason = reason
        super().__init__(f"{param}: {reason} (got {_quote(value)})")

    def prefixed(self, prefix: str) -> BadRequest:
        """The same error with a prefix such as ``event 3`` before the parameter name."""
        return BadRequest(f"{prefix}: {self.param}", self.value, self.reason)


class ConfigurationError(HailWhaleError):
    """A setting is missing, malformed or contradicts another one."""


class Unauthorized(HailWhaleError):
    """A request that needs a token and carries none: becomes an HTTP 401."""

    param = "token"


class Forbidden(HailWhaleError):
    """A token that is forged, expired, revoked, or does not cover the request: an HTTP 403."""

    param = "token"


class CounterOverflow(HailWhaleError):
    """A batch would push a counter past a 64-bit integer: nothing of it was applied."""


class StoreUnavailable(HailWhaleError):
    """The Redis behind a store cannot be reached; callers answer 503."""


def _quote(value: object, limit: int = 120) -> str:
    """``value`` as a short quoted string for an error message."""
    text = value if isinstance(value, str) else _REPR.repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return '"' + text.replace('"', '\\"') + '"'
