"""Unit tests for hailwhale.formulas: the read-time formula parser and evaluator (no Redis)."""

from __future__ import annotations

import ast
import inspect
import math
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hailwhale import formulas
from hailwhale.errors import BadRequest
from hailwhale.formulas import MAX_LENGTH, parse

# -- parsing and evaluating ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, values, result",
    [
        ("hits", {"hits": 7}, 7),
        ("dollars/hits", {"dollars": 300, "hits": 4}, 75),
        ("(clicks+shares)/views", {"clicks": 3, "shares": 1, "views": 8}, 0.5),
        ("1+2*3", {}, 7),
        ("(1+2)*3", {}, 9),
        ("2*3-4/2", {}, 4),
        ("10-3-2", {}, 5),  # left associative
        ("8/4/2", {}, 1),  # left associative
        ("7/2", {}, 3.5),  # true division
        ("-2*3", {}, -6),
        ("--3", {}, 3),
        ("2*-3", {}, -6),
        ("+3", {}, 3),
        ("-(a+b)", {"a": 1, "b": 2}, -3),
        ("1.5*2", {}, 3.0),
        (".5+1.", {}, 1.5),
        ("  a  *  2 ", {"a": 21}, 42),
        ("a*100/b", {"a": 0.25, "b": 2}, 12.5),
        ("dollars", {"dollars": -2000}, -2000),
        ("missing+1", {}, 1),  # a missing name is 0
        ("x_1+_y", {"x_1": 1, "_y": 2}, 3),
    ],
)
def test_evaluate(text, values, result):
    assert parse(text).evaluate(values) == pytest.approx(result)


def test_integer_arithmetic_stays_integer():
    value = parse("a*b+c-1").evaluate({"a": 10**15, "b": 10**6, "c": 1})
    assert value == 10**21
    assert isinstance(value, int)


@pytest.mark.parametrize(
    "text, values",
    [
        ("dollars/hits", {"dollars": 300, "hits": 0}),
        ("dollars/hits", {"dollars": 300}),
        ("a/0", {"a": 5}),
        ("a/0.0", {"a": 5}),
        ("a/(b-b)", {"a": 1, "b": 3}),
        ("-a/0", {"a": 1}),
        ("0/0", {}),
    ],
)
def test_division_by_zero_is_zero(text, values):
    assert parse(text).evaluate(values) == 0


def test_division_by_zero_inside_a_larger_formula():
    assert parse("1 + a/b * 10").evaluate({"a": 3, "b": 0}) == 1


def test_names_and_text():
    f = parse("  (clicks+shares)/views + clicks ")
    assert f.names == frozenset({"clicks", "shares", "views"})
    assert f.text == "(clicks+shares)/views + clicks"
    assert parse("2*3").names == frozenset()


@pytest.mark.parametrize(
    "text, is_metric",
    [("hits", True), (" hits ", True), ("(hits)", True), ("dollars/hits", False),
     ("-hits", False), ("hits*1", False), ("3", False)],
)
def test_is_metric(text, is_metric):
    assert parse(text).is_metric is is_metric


def test_a_formula_is_reusable():
    f = parse("a/b")
    assert f.evaluate({"a": 1, "b": 4}) == 0.25
    assert f.evaluate({"a": 9, "b": 3}) == 3


def test_longest_formula_allowed():
    text = "a" * MAX_LENGTH
    assert parse(text).names == {text}


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a+", "ends too early"),
        ("(a", "ends too early"),
        ("a)", "unexpected ')'"),
        ("a b", "unexpected 'b' at position 3"),
        ("a + * b", "unexpected '*' at position 5"),
        ("a**2", "unexpected '*'"),
        ("a//b", "unexpected '/'"),
        ("()", "unexpected ')'"),
        ("a=1", "unexpected character '='"),
        ("a.b", "unexpected character '.'"),
        ("1.2.3", "unexpected '.3'"),
        ("a%b", "unexpected character '%'"),
        ("(a+b]", "unexpected character ']'"),
        ("(a+b c)", "expected ')' but found 'c'"),
        ("a^b", "unexpected character '^'"),
        ("hits,dollars", "unexpected character ','"),
        ("a" * (MAX_LENGTH + 1), "at most 200 characters"),
    ],
)
def test_bad_formulas(text, reason):
    with pytest.raises(BadRequest) as info:
        parse(text)
    error = info.value
    assert error.param == "metrics"
    assert reason in str(error)
    if text and len(text) <= 100:
        assert f'"{text}"' in str(error)  # quotes what was sent


@pytest.mark.parametrize("value", [None, 5, ["hits"]])
def test_non_string_formula_is_a_bad_request(value):
    with pytest.raises(BadRequest) as info:
        parse(value)
    assert info.value.param == "metrics"


def test_error_names_the_given_parameter():
    with pytest.raises(BadRequest) as info:
        parse("a+", param="sort")
    assert info.value.param == "sort"
    assert info.value.value == "a+"
    assert str(info.value).startswith('sort: formula does not parse')


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "hits.__class__",
        "lambda: 1",
        "[x for x in hits]",
        "a if b else c",
        "hits[0]",
        "'hits'",
        "exec('1')",
        "a; b",
        "a\nb",
    ],
)
def test_python_is_not_a_formula(text):
    with pytest.raises(BadRequest):
        parse(text)


def test_module_never_calls_eval_exec_or_compile():
    tree = ast.parse(inspect.getsource(formulas))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not called & {"eval", "exec", "compile", "__import__"}


# -- hypothesis: random expression trees against a reference evaluator ------------------------

NAMES = ["a", "b", "c"]
leaves = st.one_of(
    st.integers(min_value=0, max_value=9).map(lambda n: ("num", n)),
    st.sampled_from(NAMES).map(lambda n: ("name", n)),
)


def _extend(children):
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), children, children),
        st.tuples(st.just("neg"), children),
    )


trees = st.recursive(leaves, _extend, max_leaves=10)
values_st = st.fixed_dictionaries(
    {
        n: st.one_of(
            st.integers(min_value=-5, max_value=5),
            st.floats(min_value=-5, max_value=5, allow_nan=False, allow_infinity=False),
        )
        for n in NAMES
    }
)


def render(node) -> str:
    kind = node[0]
    if kind == "num":
        return str(node[1])
    if kind == "name":
        return node[1]
    if kind == "neg":
        return f"-({render(node[1])})"
    return f"({render(node[1])} {kind} {render(node[2])})"


def reference(node, values):
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        return values[node[1]]
    if kind == "neg":
        return -reference(node[1], values)
    left, right = reference(node[1], values), reference(node[2], values)
    if kind == "+":
        return left + right
    if kind == "-":
        return left - right
    if kind == "*":
        return left * right
    return 0 if right == 0 else left / right


def names_of(node) -> set[str]:
    if node[0] == "name":
        return {node[1]}
    if node[0] == "num":
        return set()
    return set().union(*(names_of(child) for child in node[1:]))


@settings(max_examples=300, deadline=None)
@given(trees, values_st)
def test_parenthesised_trees_evaluate_like_the_reference(tree, values):
    text = render(tree)
    assume(len(text) <= MAX_LENGTH)
    formula = parse(text)
    assert formula.names == names_of(tree)
    expected = finite_or_none(reference, tree, values)
    if expected is None:  # a value a float cannot hold is None (JSON null), never inf or NaN
        assert formula.evaluate(values) is None
    else:
        assert formula.evaluate(values) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def finite_or_none(function, *args):
    """``function(*args)``, or None where it overflows or is not finite (README, /plotpoints)."""
    try:
        result = function(*args)
    except OverflowError:
        return None
    if isinstance(result, float) and not math.isfinite(result):
        return None
    if isinstance(result, int) and abs(result) > sys.float_info.max:
        return None
    return result


operands = st.integers(min_value=1, max_value=9)
chains = st.tuples(
    operands,
    st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), operands), max_size=8),
)


def reference_with_precedence(first, rest):
    """``*`` and ``/`` bind tighter than ``+`` and ``-``; all are left associative."""
    terms, signs = [first], []
    for op, number in rest:
        if op == "*":
            terms[-1] = terms[-1] * number
        elif op == "/":
            terms[-1] = terms[-1] / number
        else:
            signs.append(op)
            terms.append(number)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == "+" else total - term
    return total


@settings(max_examples=200, deadline=None)
@given(chains, st.booleans())
def test_unparenthesised_chains_follow_precedence(chain, spaced):
    first, rest = chain
    sep = " " if spaced else ""
    text = str(first) + "".join(f"{sep}{op}{sep}{n}" for op, n in rest)
    result = parse(text).evaluate({})
    assert result == pytest.approx(reference_with_precedence(first, rest), rel=1e-12)


_numbers = st.one_of(st.integers(min_value=-(2**1100), max_value=2**1100),
                     st.floats(allow_nan=False, width=64))


@given(text=st.sampled_from(["hits", "dollars", "dollars/hits", "-hits", "(a+b)/c", "a*2",
                             "missing", "hits - dollars"]),
       columns=st.dictionaries(st.sampled_from(["hits", "dollars", "a", "b", "c"]),
                               st.lists(_numbers, min_size=5, max_size=5), max_size=5))
def test_evaluating_each_bucket_at_once_is_evaluating_each_bucket(text, columns):
    """The plot's fast path (a stored metric read straight from its column) answers what
    evaluate answers bucket by bucket, overflows and missing names included."""
    formula = formulas.parse(text)
    one_by_one = [formula.evaluate({name: values[i] for name, values in columns.items()})
                  for i in range(5)]
    assert formula.evaluate_each(columns, 5) == one_by_one
