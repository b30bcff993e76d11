"""Graphite render targets and times: a small parser, never ``eval``. Pure, no Redis.

A target is a path (``shop.web.*.hits``), a call (``sumSeries(shop.*.hits)``) with
positional then keyword arguments (``summarize(x, "1h", func="max")``), or a pipe
(``shop.*.hits|aliasByNode(1)``, Graphite 1.1's spelling of ``aliasByNode(shop.*.hits, 1)``).
Arguments are targets, numbers (``10``, ``-2.5``, ``1e3``), strings in single or double quotes
(kept as written between the quotes: ``"\\1 A"`` is backslash, 1, space, A, as Graphite
keeps it), ``true``/``false``, ``none`` and ``inf``. The grammar is Graphite's
(graphite-web ``render/grammar_unsafe.py``), less its ``template()`` and backslash escapes in
paths: HailWhale writes unusual characters as ``~`` escapes (hailwhale.graphite_paths).

Times (``from``, ``until``) follow Graphite's ``render/attime.py``: unix seconds, ``now``,
``-1h``, ``now-7d``, ``-5min``, ``-1mon`` (30 days), ``-1y`` (365 days), several units
together (``-1h30min``); a reference of ``HH:MM``, ``noon``, ``midnight``, ``teatime``,
``today``, ``yesterday``, ``tomorrow``, ``YYYYMMDD`` or ``MM/DD/YY[YY]`` in the configured
time zone, with or without an offset (``midnight-1d``, ``14:00_20260301``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from .errors import BadRequest
from .windows import check_range

MAX_TARGET_LENGTH = 20_000  # characters in one target
MAX_NESTING = 32  # calls within calls
_SYNTAX = "(),|='\""  # characters that end a word
_FUNCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Path:
    """A path expression (with globs, maybe): ``shop.*.hits``."""

    text: str


@dataclass(frozen=True)
class Value:
    """A literal argument: a number, a string, a boolean, None or infinity."""

    value: object
    text: str


@dataclass(frozen=True)
class Call:
    """A function call: its name, positional and keyword arguments."""

    name: str
    args: tuple
    kwargs: tuple[tuple[str, object], ...]


Node = Path | Value | Call


def parse_target(text: str, param: str = "target") -> Node:
    """The tree of one target; a BadRequest naming ``param`` when it does not parse."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(param, text, "a target cannot be empty")
    if len(text) > MAX_TARGET_LENGTH:
        raise BadRequest(param, text, f"a target is at most {MAX_TARGET_LENGTH} characters")
    parser = _Parser(text, param)
    node = parser.expression(0)
    parser.expect_end()
    if isinstance(node, Value):
        raise BadRequest(param, text, "a target is a path or a function call, not a literal")
    return node


def paths(node: Node) -> list[str]:
    """Every path expression in a tree, in order, each once."""
    found: dict[str, None] = {}
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Path):
            found.setdefault(item.text)
        elif isinstance(item, Call):
            stack.extend(reversed([*item.args, *(value for _, value in item.kwargs)]))
    return list(found)


class _Parser:
    def __init__(self, text: str, param: str):
        self.text, self.param, self.index = text, param, 0
        self.tokens = self._tokenize()

    def fail(self, reason: str, position: int | None = None):
        where = f" at position {position + 1}" if position is not None else ""
        raise BadRequest(self.param, self.text, f"target does not parse: {reason}{where}")

    def _tokenize(self) -> list[tuple[str, str, int]]:
        """("word" | "string" | a syntax character, text, position)."""
        text, tokens, i = self.text, [], 0
        while i < len(text):
            char = text[i]
            if char.isspace():
                i += 1
            elif char in "'\"":
                end = i + 1
                while end < len(text) and text[end] != char:
                    end += 2 if text[end] == "\\" else 1
                if end >= len(text):
                    self.fail("a string is not closed", i)
                tokens.append(("string", text[i + 1:end], i))
                i = end + 1
            elif char in _SYNTAX:
                tokens.append((char, char, i))
                i += 1
            else:
                start, depth = i, 0
                while i < len(text):
                    char = text[i]
                    if char == "{":
                        depth += 1
                    elif char == "}":
                        depth -= 1
                    elif char == "\\":
                        self.fail("backslash escapes are not used in HailWhale paths: write "
                                  "~ and two hex digits (~2E for a dot)", i)
                    elif char.isspace() or (char in _SYNTAX and not (char == "," and depth > 0)):
                        break
                    i += 1
                tokens.append(("word", text[start:i], start))
        return tokens

    def peek(self, offset: int = 0) -> tuple[str, str, int] | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            self.fail("it ends too early")
        self.index += 1
        return token  # type: ignore[return-value]

    def expect(self, kind: str) -> None:
        token = self.take()
        if token[0] != kind:
            self.fail(f"expected {kind!r} but found {token[1]!r}", token[2])

    def expect_end(self) -> None:
        token = self.peek()
        if token is not None:
            self.fail(f"unexpected {token[1]!r}", token[2])

    def expression(self, depth: int) -> Node:
        if depth > MAX_NESTING:
            self.fail(f"calls nest deeper than {MAX_NESTING} levels")
        node = self.primary(depth)
        while (token := self.peek()) and token[0] == "|":
            self.take()
            call = self.primary(depth)
            if not isinstance(call, Call):
                self.fail("a pipe | is followed by a function call", token[2])
            node = Call(call.name, (node, *call.args), call.kwargs)
        return node

    def primary(self, depth: int) -> Node:
        kind, text, position = self.take()
        if kind == "string":
            return Value(text, text)
        if kind != "word":
            self.fail(f"unexpected {text!r}", position)
        following = self.peek()
        if following and following[0] == "(":
            if not _FUNCNAME.fullmatch(text):
                self.fail(f"{text!r} is not a function name", position)
            self.take()
            return self.call(text, depth)
        return _word(text)

    def call(self, name: str, depth: int) -> Call:
        args: list = []
        kwargs: list[tuple[str, object]] = []
        if self.peek() and self.peek()[0] == ")":
            self.take()
            return Call(name, (), ())
        while True:
            token, following = self.peek(), self.peek(1)
            if token and following and token[0] == "word" and following[0] == "=":
                if not _FUNCNAME.fullmatch(token[1]):
                    self.fail(f"{token[1]!r} is not an argument name", token[2])
                self.take(), self.take()
                kwargs.append((token[1], self.expression(depth + 1)))
            elif kwargs:
                self.fail("positional arguments come before keyword arguments",
                          token[2] if token else None)
            else:
                args.append(self.expression(depth + 1))
            closing = self.take()
            if closing[0] == ")":
                return Call(name, tuple(args), tuple(kwargs))
            if closing[0] != ",":
                self.fail(f"expected ',' or ')' but found {closing[1]!r}", closing[2])


def _word(text: str) -> Node:
    lowered = text.lower()
    if _NUMBER.fullmatch(text):
        number = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(number, float) and not math.isfinite(number):
            return Value(math.inf if number > 0 else -math.inf, text)
        return Value(number, text)
    if lowered in ("true", "false"):
        return Value(lowered == "true", text)
    if lowered == "none":
        return Value(None, text)
    if lowered == "inf":
        return Value(math.inf, text)
    return Path(text)


# -- times --------------------------------------------------------------------------------
_UNITS = (("s", 1), ("min", 60), ("h", 3600), ("d", 86400), ("w", 7 * 86400),
          ("mon", 30 * 86400), ("y", 365 * 86400))
_OFFSET_PART = re.compile(r"(\d+)([a-z]+)")
_LONGEST_OFFSET = 10**12  # seconds: past any calendar, so a huge number is a clear 400


def parse_interval(text: str, param: str = "target") -> int:
    """Seconds in a Graphite interval such as ``1h``, ``10min``, ``1d``, ``2w``, ``1mon``
    (30 days), ``1y`` (365 days), or several (``1h30min``); ``m`` alone is minutes, as in
    HailWhale's own durations (Graphite refuses it)."""
    seconds = _offset(str(text).strip().lower().replace(" ", ""), param, text)
    if seconds <= 0:
        raise BadRequest(param, text, "an interval must be positive, such as 1h or 10min")
    return seconds


def _offset(text: str, param: str, value) -> int:
    sign = 1
    if text and text[0] in "+-":
        sign, text = (1 if text[0] == "+" else -1), text[1:]
    if not text:
        raise BadRequest(param, value, "an offset is a number and a unit, such as -1h")
    total, position = 0, 0
    while position < len(text):
        match = _OFFSET_PART.match(text, position)
        if not match:
            raise BadRequest(param, value, "an offset is numbers and units, such as -1h or "
                             "-1h30min (s, min, h, d, w, mon, y)")
        total += int(match.group(1)) * _unit(match.group(2), param, value)
        if total > _LONGEST_OFFSET:
            raise BadRequest(param, value, "an offset too large for any calendar")
        position = match.end()
    return sign * total


def _unit(unit: str, param: str, value) -> int:
    if unit == "m":
        return 60
    for prefix, seconds in _UNITS:  # by prefix, as Graphite's getUnitString: "minutes", "mon"
        if unit.startswith(prefix):
            return seconds
    raise BadRequest(param, value, f"unknown unit {unit!r} (s, min, h, d, w, mon, y)")


def parse_time(value: str, now: float, tz: tzinfo, param: str) -> float:
    """Unix seconds of a Graphite time (see the module's docstring): numbers past 1e11 are
    milliseconds, as everywhere in HailWhale."""
    text = str(value).strip().lower().replace("_", "").replace(",", "").replace(" ", "")
    if not text:
        raise BadRequest(param, value, "a time is unix seconds, now, or an offset such as -1h")
    if text.isdigit() and not _yyyymmdd(text):
        seconds = int(text) if len(text) < 20 else math.inf
        return check_range(seconds / 1000 if seconds > 1e11 else seconds, param, value)
    for sign in "+-":
        if sign in text:
            reference, _, offset = text.partition(sign)
            offset = sign + offset
            break
    else:
        reference, offset = text, ""
    moment = _reference(reference, now, tz, param, value)
    shift = _offset(offset, param, value) if offset else 0
    return check_range(moment + shift, param, value)


def _yyyymmdd(text: str) -> bool:
    return len(text) == 8 and int(text[:4]) > 1900 and int(text[4:6]) < 13 and \
        int(text[6:]) < 32


def _reference(ref: str, now: float, tz: tzinfo, param: str, value) -> float:
    if ref in ("", "now"):
        return now
    local = datetime.fromtimestamp(now, tz)
    hour = minute = 0
    colon = ref.find(":")
    try:
        if 0 < colon < 3:
            hour, minute = int(ref[:colon]), int(ref[colon + 1:colon + 3])
            ref = ref[colon + 3:]
            if ref[:2] in ("am", "pm"):
                hour = (hour + 12) % 24 if ref[:2] == "pm" else hour
                ref = ref[2:]
        for word, at in (("noon", 12), ("midnight", 0), ("teatime", 16)):
            if ref.startswith(word):
                hour, minute, ref = at, 0, ref[len(word):]
        day = local.date()
        if ref in ("yesterday", "today", "tomorrow"):
            day += timedelta(days={"yesterday": -1, "today": 0, "tomorrow": 1}[ref])
        elif ref.count("/") == 2:
            month, dom, year = (int(part) for part in ref.split("/"))
            year += 1900 if year < 1900 else 0
            year += 100 if year < 1970 else 0
            day = datetime(year, month, dom).date()
        elif len(ref) == 8 and ref.isdigit():
            day = datetime(int(ref[:4]), int(ref[4:6]), int(ref[6:])).date()
        elif ref:
            raise BadRequest(param, value, "unknown time reference: use unix seconds, now, "
                             "-1h, HH:MM_YYYYMMDD, YYYYMMDD, midnight, today, yesterday...")
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp()
    except ValueError:
        raise BadRequest(param, value, "not a date or time of day") from None
