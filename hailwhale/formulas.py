"""Read-time formulas over metrics, such as ``dollars/hits`` or ``(clicks+shares)/views``.

A small recursive-descent parser, never ``eval``: names, numbers, ``+ - * /``, unary minus and
parentheses. Dividing by zero gives 0, so a bucket with no hits has an average of 0 on a graph.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import BadRequest

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A name in a formula may ask for one statistic of a gauge or timing: ``latency:p99``.
STAT = r"[a-z][a-z0-9]*"
_TOKEN = re.compile(rf"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<name>{NAME}(?::{STAT})?)"
                    rf"|(?P<op>[-+*/()]))")
MAX_LENGTH = 200
_FLOAT_MAX = int(sys.float_info.max)

Number = int | float
_OPS: dict[str, Callable[[Number, Number], Number]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else 0,
}


def split_ref(ref: str) -> tuple[str, str | None]:
    """A formula's name as ``(the stored metric, the statistic asked, or None)``:
    ``latency:p99`` is ``("latency", "p99")``."""
    name, _, stat = ref.partition(":")
    return name, stat or None


@dataclass(frozen=True)
class Formula:
    """A parsed formula; ``names`` are the stored metrics it reads."""

    text: str
    names: frozenset[str]
    _tree: tuple

    @property
    def is_metric(self) -> bool:
        """Whether the formula is one stored metric and nothing else."""
        return self._tree[0] == "name"

    def evaluate(self, values: Mapping[str, Number]) -> Number:
        """The formula's value with ``values`` for its names (a missing name is 0).

        A result a float cannot hold (an overflow, or beyond float's range, which JSON readers
        take as Infinity) is None, JSON null: flot draws it as a gap. Never NaN or Infinity.
        """
        try:
            return _shown(_evaluate(self._tree, values))
        except OverflowError:
            return None


    def evaluate_each(self, columns: Mapping[str, Sequence[Number]], length: int) -> list:
        """The formula's value at each of ``length`` positions, ``columns`` holding each
        name's values (a missing name is 0 throughout): ``evaluate`` at every position, a
        stored metric read straight from its column (a plot of 240 buckets spent most of its
        Python building a dictionary per bucket)."""
        if self.is_metric:
            column = columns.get(self._tree[1])
            if column is None:
                return [0] * length
            return [_shown(value) for value in column]
        return [self.evaluate({name: values[i] for name, values in columns.items()})
                for i in range(length)]

    def division(self) -> tuple[Formula, Formula] | None:
        """``(numerator, denominator)`` when the formula's last operation is a division
        whose denominator reads a metric (``dollars/visitors``, ``(a+b)/(c*2)``); None for
        anything else (``dollars``, ``dollars/100``, ``dollars/hits*100``)."""
        if self._tree[0] != "/":
            return None
        top, bottom = (Formula(_text(node), frozenset(_names(node)), node)
                       for node in self._tree[1:])
        return (top, bottom) if bottom.names else None


def _text(node: tuple, inner: bool = False) -> str:
    """A parsed formula written out again, an operation inside another in parentheses."""
    kind = node[0]
    if kind in ("num", "name"):
        return str(node[1])
    if kind == "neg":
        return "-" + _text(node[1], True)
    text = _text(node[1], True) + kind + _text(node[2], True)
    return f"({text})" if inner else text


def _names(node: tuple) -> set[str]:
    if node[0] == "name":
        return {node[1]}
    return set().union(*(_names(child) for child in node[1:] if isinstance(child, tuple)))


def _shown(result: Number) -> Number | None:
    """``result`` as JSON can carry it: None for what a float cannot hold."""
    if isinstance(result, float) and not math.isfinite(result):
        return None
    if isinstance(result, int) and abs(result) > _FLOAT_MAX:
        return None
    return result


def _evaluate(node: tuple, values: Mapping[str, Number]) -> Number:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        return values.get(node[1], 0)
    # None (a gauge before its first value, a percentile of an empty bucket) makes the
    # formula None: a gap on a graph, not a made-up 0.
    if kind == "neg":
        value = _evaluate(node[1], values)
        return None if value is None else -value
    left, right = _evaluate(node[1], values), _evaluate(node[2], values)
    if left is None or right is None:
        return None
    return _OPS[kind](left, right)


def parse(text: str, param: str = "metrics") -> Formula:
    """Parse ``text``; a formula that does not parse is a BadRequest naming ``param``."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(param, text, "a metric or formula cannot be empty")
    if len(text) > MAX_LENGTH:
        raise BadRequest(param, text, f"a formula is at most {MAX_LENGTH} characters")
    parser = _Parser(text, param)
    tree = parser.expression()
    parser.expect_end()
    return Formula(text.strip(), frozenset(parser.names), tree)


class _Parser:
    def __init__(self, text: str, param: str):
        self.text = text
        self.param = param
        self.tokens: list[tuple[str, str, int]] = []
        self.names: set[str] = set()
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                if not text[position:].strip():
                    break
                self.fail(f"unexpected character {text[position:].strip()[0]!r}", position)
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind), match.start(kind)))  # type: ignore[arg-type]
            position = match.end()
        self.index = 0

    def fail(self, reason: str, position: int | None = None):
        where = f" at position {position + 1}" if position is not None else ""
        raise BadRequest(self.param, self.text, f"formula does not parse: {reason}{where}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            self.fail("it ends too early")
        self.index += 1
        return token  # type: ignore[return-value]

    def expect_end(self) -> None:
        token = self.peek()
        if token is not None:
            self.fail(f"unexpected {token[1]!r}", token[2])

    def expression(self) -> tuple:
        node = self.term()
        while (token := self.peek()) and token[1] in "+-" and token[0] == "op":
            self.take()
            node = (token[1], node, self.term())
        return node

    def term(self) -> tuple:
        node = self.factor()
        while (token := self.peek()) and token[1] in "*/" and token[0] == "op":
            self.take()
            node = (token[1], node, self.factor())
        return node

    def factor(self) -> tuple:
        kind, value, position = self.take()
        if kind == "num":
            number = float(value) if "." in value else int(value)
            return ("num", number)
        if kind == "name":
            self.names.add(value)
            return ("name", value)
        if value == "-":
            return ("neg", self.factor())
        if value == "+":
            return self.factor()
        if value == "(":
            node = self.expression()
            closing = self.take()
            if closing[1] != ")":
                self.fail(f"expected ')' but found {closing[1]!r}", closing[2])
            return node
        self.fail(f"unexpected {value!r}", position)
        raise AssertionError("unreachable")
