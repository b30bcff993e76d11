"""Graphite paths over HailWhale's tree: escapes, segments and globs. Pure, no Redis.

A Graphite path is dotted segments: the pk first, then the dimension names from the top level
down, last the metric. ``shop.web.home.hits`` is the metric ``hits`` of ``["web", "home"]`` in
pk ``shop``; ``shop.hits`` is ``hits`` of shop's overall root.

**Escapes.** A name is written as it is when it holds only letters (any script), digits,
``_``, ``-`` and ``:``; every other character (``.``, a glob character, a space, ``~``
itself...) is written ``~`` and the two hex digits of each of its UTF-8 bytes, as
percent-encoding does with ``%``: ``site.com`` is ``site~2Ecom``, ``a b`` is ``a~20b``. The
default pk ``""`` is the segment ``~`` alone: ``~.sales.dollars``. Why ``~`` and not ``%``:
Grafana posts ``/metrics/find``'s ``query`` as a form body without encoding it
(``data: `query=${query}```), so a ``%2E`` written in a path would reach the server already
decoded to a dot; ``~`` survives form decoding, and Grafana's query editor reads it as part
of a name (its lexer's identifier characters include ``~``).

**Globs** match one segment, in its written (escaped) form: ``*`` any run of characters,
``?`` one, ``[a-z]`` (``[!a]`` or ``[^a]`` negated) one of a class, ``{web,api}`` one of the
alternatives. Matching walks the pattern once per candidate with no backtracking beyond the
last ``*`` (O(pattern x name)), so no pattern can make it slow; brace alternatives are
bounded by MAX_ALTERNATIVES.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRequest

ESCAPE = "~"
DEFAULT_PK = "~"  # the segment of the default pk, ""
GLOB_CHARACTERS = frozenset("*?[]{}")
MAX_ALTERNATIVES = 1000  # per segment, after expanding its braces
_PLAIN_ASCII = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:")
_ESCAPED = re.compile(r"~([0-9A-Fa-f]{2})")
_STAR = ("*",)
_ONE = ("?",)


def _plain(char: str) -> bool:
    return char in _PLAIN_ASCII or (char > "\x7f" and char.isalpha())


def escape(name: str) -> str:
    """The written form of one name (a pk, a dimension name or a metric)."""
    if name == "":
        return DEFAULT_PK
    if all(map(_plain, name)):
        return name
    return "".join(char if _plain(char) else
                   "".join(f"~{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
                   for char in name)


def unescape(segment: str, param: str = "target") -> str:
    """The name a written segment stands for; a BadRequest naming ``param`` when it is not
    one (a ``~`` without two hex digits, bytes that are not UTF-8)."""
    if segment == DEFAULT_PK:
        return ""
    if ESCAPE not in segment:
        return segment
    parts = _ESCAPED.split(segment)  # text, hex, text, hex, ..., text
    if any(ESCAPE in text for text in parts[::2]):
        raise BadRequest(param, segment, f"{ESCAPE} starts an escape of two hex digits "
                         f"(~2E is a dot), or is the default pk alone")
    out = bytearray()
    for index, part in enumerate(parts):
        out += bytes([int(part, 16)]) if index % 2 else part.encode("utf-8", "surrogatepass")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(param, segment, "escaped bytes must be UTF-8") from None


def join(names) -> str:
    """The written path of names (pk, dimension names, metric)."""
    return ".".join(escape(name) for name in names)


def split(path: str, param: str = "target") -> list[str]:
    """The segments of a written path: split on dots outside braces (``{a.b,c}`` is refused:
    an alternative is part of one segment)."""
    segments, current, depth = [], [], 0
    for char in path:
        if char == "{":
            if depth:
                raise BadRequest(param, path, "braces cannot nest")
            depth = 1
        elif char == "}":
            if not depth:
                raise BadRequest(param, path, "a } closes no {")
            depth = 0
        elif char == "." and not depth:
            segments.append("".join(current))
            current = []
            continue
        elif char == "." and depth:
            raise BadRequest(param, path, "an alternative in braces lies within one segment")
        current.append(char)
    if depth:
        raise BadRequest(param, path, "a { is not closed")
    segments.append("".join(current))
    if any(segment == "" for segment in segments):
        raise BadRequest(param, path, "a path is dotted names, none of them empty")
    return segments


def is_glob(segment: str) -> bool:
    """Whether a segment is a pattern rather than one written name."""
    return not GLOB_CHARACTERS.isdisjoint(segment)


@dataclass(frozen=True)
class Glob:
    """One segment's pattern, compiled: its brace alternatives, each a list of tokens."""

    text: str
    alternatives: tuple[tuple, ...]

    def match(self, written: str) -> bool:
        """Whether the written (escaped) name ``written`` matches."""
        return any(_match(tokens, written) for tokens in self.alternatives)


def compile_glob(segment: str, param: str = "target") -> Glob:
    """A segment's pattern. Its literal characters are compared in their written form, so
    ``a!*`` (an unescaped ``!``) matches the name ``a!b``, written ``a~21b``."""
    alternatives = [""]
    rest = segment
    while rest:
        start = rest.find("{")
        if start < 0:
            alternatives = [a + rest for a in alternatives]
            break
        end = rest.find("}", start)
        if end < 0:
            raise BadRequest(param, segment, "a { is not closed")
        choices = rest[start + 1:end].split(",")
        if len(alternatives) * len(choices) > MAX_ALTERNATIVES:
            raise BadRequest(param, segment, f"braces expand to more than {MAX_ALTERNATIVES} "
                             "alternatives")
        alternatives = [a + rest[:start] + c for a in alternatives for c in choices]
        rest = rest[end + 1:]
    if any("}" in a for a in alternatives):
        raise BadRequest(param, segment, "a } closes no {")
    return Glob(segment, tuple(dict.fromkeys(_tokens(a, segment, param) for a in alternatives)))


def _tokens(pattern: str, segment: str, param: str) -> tuple:
    """``*``, ``?``, a character class ``("[", negated, ranges)``, or one literal character
    (a name's unplain characters turned into their escapes first)."""
    tokens: list = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            if not tokens or tokens[-1] != _STAR:  # ** is *
                tokens.append(_STAR)
        elif char == "?":
            tokens.append(_ONE)
        elif char == "[":
            end = pattern.find("]", index + 2)
            if end < 0:
                raise BadRequest(param, segment, "a [ is not closed")
            body = pattern[index + 1:end]
            negated = body[:1] in ("!", "^")
            tokens.append(("[", negated, _ranges(body[1:] if negated else body)))
            index = end
        elif char == ESCAPE and _ESCAPED.match(pattern, index):
            tokens.extend(ESCAPE + pattern[index + 1:index + 3].upper())
            index += 2
        elif char == ESCAPE and pattern == ESCAPE:
            tokens.append(ESCAPE)  # the default pk
        elif char == ESCAPE:
            raise BadRequest(param, segment, f"{ESCAPE} starts an escape of two hex digits")
        else:
            tokens.extend(escape(char))
        index += 1
    return tuple(tokens)


def _ranges(body: str) -> tuple[tuple[str, str], ...]:
    ranges, index = [], 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            ranges.append((body[index], body[index + 2]))
            index += 3
        else:
            ranges.append((body[index], body[index]))
            index += 1
    return tuple(ranges)


def _one(token, char: str) -> bool:
    if token == _ONE:
        return True
    if isinstance(token, str):
        return token == char
    inside = any(low <= char <= high for low, high in token[2])
    return inside != token[1]


def _match(tokens: tuple, text: str) -> bool:
    """Wildcard matching with one saved ``*``: on a mismatch, the last ``*`` takes one more
    character and matching resumes after it. Linear in the text per ``*``, never
    exponential."""
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(tokens) and tokens[p] != _STAR and _one(tokens[p], text[t]):
            t, p = t + 1, p + 1
        elif p < len(tokens) and tokens[p] == _STAR:
            star, mark, p = p, t, p + 1
        elif star >= 0:
            mark += 1
            t, p = mark, star + 1
        else:
            return False
    while p < len(tokens) and tokens[p] == _STAR:
        p += 1
    return p == len(tokens)
