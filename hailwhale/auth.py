"""Signed tokens: who may write, who may read, who may administer. Pure, no Redis, no web.

A token is a JSON Web Token signed with the ``SECRET`` setting (HMAC-SHA256, by PyJWT: no
crypto of our own). Its claims say what it can do and where:

    can    "write" (count events), "read" (query) or "admin" (everything, and POST /batch)
    pks    the pks it covers; "*" is every pk
    dims   optional: the dimension path it is confined to (a write token for a public page,
           ["pageviews"], can only count below pageviews; a read token only read there)
    exp    optional: when it stops working (unix seconds)
    jti    its id, which REVOKED_TOKENS names to revoke this token alone

With no secret configured the service is open (the demo, local use): every request may do
everything, and the apps say so on start and in ``/health``.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jwt

from .dimensions import Path
from .errors import ConfigurationError, Forbidden, Unauthorized

ABILITIES = ("write", "read", "admin")
ANY_PK = "*"
ALGORITHM = "HS256"
MIN_SECRET = 32  # characters: HMAC-SHA256 wants a key of at least its output's 256 bits
MAX_TOKEN = 4096  # characters; a longer "token" is refused before any decoding
_DURATION = re.compile(r"^(\d+)([smhdwy])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


@dataclass(frozen=True)
class Grant:
    """What one verified token allows."""

    can: str
    pks: frozenset[str]
    dims: Path = ()
    expires: float | None = None
    id: str = ""

    def covers_pk(self, pk: str) -> bool:
        """Whether the token's pks include ``pk``."""
        return ANY_PK in self.pks or pk in self.pks

    def covers_path(self, path: Path) -> bool:
        """Whether ``path`` is the token's dimension prefix or lies below it."""
        return tuple(path[: len(self.dims)]) == self.dims

    def visible_pks(self, pks: Iterable[str]) -> list[str]:
        """The pks of ``pks`` this token may see."""
        return [pk for pk in pks if self.covers_pk(pk)]


# The grant of an open service: everything, everywhere.
OPEN = Grant("admin", frozenset({ANY_PK}))


def parse_duration(text: str) -> int | None:
    """``30d``, ``12h``, ``90m``, ``1y``... as seconds; ``never`` as None."""
    if text == "never":
        return None
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) < 1:
        raise ConfigurationError(f"--expires: a duration such as 30d, 12h, 1y or never "
                                 f"(got {text!r})")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def check_secret(secret: str) -> str:
    """A secret long enough to sign with."""
    if len(secret) < MIN_SECRET:
        raise ConfigurationError(
            f"SECRET must be at least {MIN_SECRET} characters; make one with: python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))'")
    return secret


def issue(secret: str, can: str, pks: Sequence[str], dims: Path = (),
          expires_in: int | None = None, now: float | None = None) -> str:
    """A signed token that ``can`` do its thing for ``pks`` (below ``dims``), for
    ``expires_in`` seconds (None: until revoked)."""
    if can not in ABILITIES:
        raise ConfigurationError(f"--can must be one of {', '.join(ABILITIES)} (got {can!r})")
    if not pks:
        raise ConfigurationError("a token names at least one pk (--pk, or '*' for every pk)")
    now = time.time() if now is None else now
    claims: dict = {"can": can, "pks": list(dict.fromkeys(pks)), "iat": int(now),
                    "jti": secrets.token_urlsafe(9)}
    if dims:
        claims["dims"] = list(dims)
    if expires_in is not None:
        claims["exp"] = int(now) + expires_in
    return jwt.encode(claims, check_secret(secret), algorithm=ALGORITHM)


def token_id(token: str) -> str:
    """The id (``jti``) of a token, read without verifying it: what to put in
    REVOKED_TOKENS to revoke it."""
    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("jti", ""))
    except jwt.PyJWTError as exc:
        raise ConfigurationError(f"not a HailWhale token: {exc}") from None


class Verifier:
    """Checks tokens against one secret and a revocation list.

    Verified grants are remembered (a beacon's token is the same on every request, and
    checking a signature costs more than the rest of a Hail request); the cache holds at
    most ``cache_size`` tokens of at most MAX_TOKEN characters each, so it stays bounded
    whatever clients send. Expiry and revocation are checked on every use."""

    def __init__(self, secret: str, revoked: Iterable[str] = (), cache_size: int = 1024,
                 clock=time.time):
        self._secret = check_secret(secret)
        self._revoked = frozenset(revoked)
        self._cache: OrderedDict[str, Grant] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    def verify(self, token: str | None) -> Grant:
        """The grant of ``token``: Unauthorized when there is none, Forbidden when it is
        forged, malformed, expired or revoked."""
        if not token:
            raise Unauthorized("this HailWhale requires a token: send it as "
                               "'Authorization: Bearer <token>' or the token parameter")
        grant = self._cache.get(token)
        if grant is None:
            grant = self._decode(token)
            self._cache[token] = grant
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if grant.id in self._revoked:
            raise Forbidden(f"token {grant.id} has been revoked")
        if grant.expires is not None and grant.expires <= self._clock():
            raise Forbidden("the token has expired")
        return grant

    def _decode(self, token: str) -> Grant:
        if len(token) > MAX_TOKEN:
            raise Forbidden(f"not a valid token: longer than {MAX_TOKEN} characters")
        try:
            # Expiry is checked by verify() on every use, not only when first decoded; the
            # issue time is not checked (a clock a little ahead on the issuing machine
            # would make fresh tokens "not yet valid" elsewhere).
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                options={"verify_exp": False, "verify_iat": False,
                                         "require": ["can", "pks"]})
        except jwt.PyJWTError as exc:
            raise Forbidden(f"not a valid token: {exc}") from None
        can, pks, dims = claims.get("can"), claims.get("pks"), claims.get("dims", [])
        expires = claims.get("exp")
        if (can not in ABILITIES or not _strings(pks) or not _strings(dims, empty=True)
                or not (expires is None or isinstance(expires, (int, float)))):
            raise Forbidden("not a valid token: malformed claims")
        return Grant(can, frozenset(pks), tuple(dims), expires, str(claims.get("jti", "")))


def _strings(value, empty: bool = False) -> bool:
    return isinstance(value, list) and (empty or bool(value)) and \
        all(isinstance(v, str) for v in value)


def require(grant: Grant, can: str, pk: str | None = None,
            paths: Iterable[Path] = ()) -> None:
    """Forbidden unless ``grant`` may ``can`` (write or read) in ``pk``, at every one of
    ``paths``; an admin grant may do everything."""
    if grant.can == "admin":
        return
    if grant.can != can:
        raise Forbidden(f"a {grant.can} token cannot {can}" +
                        ("; POST /batch needs an admin token" if can == "admin" else ""))
    if pk is not None and not grant.covers_pk(pk):
        raise Forbidden(f"the token does not cover pk {pk!r}")
    for path in paths:
        if not grant.covers_path(path):
            where = f"{list(path)}" if path else "the overall root"
            raise Forbidden(f"the token covers only dimensions below {list(grant.dims)}, "
                            f"not {where}")


def require_overview(grant: Grant) -> None:
    """Forbidden unless ``grant`` may see the service as a whole (``GET /prometheus``: no
    pk's counted data, but the traffic of every pk together): an admin token, or a read
    token for every pk (``--pk '*'``). Never a write token: those are public, in pages."""
    if grant.can == "admin" or (grant.can == "read" and ANY_PK in grant.pks):
        return
    raise Forbidden("GET /prometheus needs an admin token or a read token for every pk "
                    "(hailwhale token --can read --pk '*')")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server reachable from this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" and "0.0.0.0"-like names mean every interface


class ServiceToken:
    """The admin token a service sends to Whale (hailwail's ``POST /batch``, Celery's drain
    task): the ``TOKEN`` setting when given, else, with a SECRET, a short-lived one made and
    renewed here; with neither, none (an open Whale)."""

    LIFETIME = 3600  # seconds a self-made token works; renewed at half of it

    def __init__(self, secret: str | None, token: str | None = None, clock=time.time):
        self._secret, self._fixed, self._clock = secret, token, clock
        self._made: tuple[float, str] | None = None

    def __call__(self) -> str | None:
        if self._fixed or not self._secret:
            return self._fixed
        now = self._clock()
        if self._made is None or now - self._made[0] > self.LIFETIME / 2:
            self._made = now, issue(self._secret, "admin", [ANY_PK], (), self.LIFETIME, now)
        return self._made[1]
