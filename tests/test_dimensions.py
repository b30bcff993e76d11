"""Unit tests for hailwhale.dimensions: expansion of branches into counted paths (no Redis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hailwhale.dimensions import ROOT, expand, label, parent_links


def test_expand_docstring_example():
    assert expand([("sales", "eu", "p1"), ("sales", "us")]) == [
        (),
        ("sales",),
        ("sales", "eu"),
        ("sales", "us"),
        ("sales", "eu", "p1"),
    ]


def test_expand_no_branches_is_just_the_root():
    assert expand([]) == [ROOT]
    assert ROOT == ()


def test_expand_one_level():
    assert expand([("services",)]) == [(), ("services",)]


def test_expand_hierarchy():
    branch = ("pageviews", "site.com", "site.com/main")
    assert expand([branch]) == [
        (),
        ("pageviews",),
        ("pageviews", "site.com"),
        ("pageviews", "site.com", "site.com/main"),
    ]


def test_expand_counts_shared_prefixes_once():
    paths = expand([("a", "b"), ("a", "b"), ("a", "c"), ("a",)])
    assert paths == [(), ("a",), ("a", "b"), ("a", "c")]


def test_expand_keeps_names_that_look_alike_apart():
    # Same names at different places are different paths.
    paths = expand([("a", "b"), ("b", "a")])
    assert set(paths) == {(), ("a",), ("b",), ("a", "b"), ("b", "a")}


def test_expand_accepts_any_iterable_of_sequences():
    paths = expand(iter([["x", "y"]]))
    assert paths == [(), ("x",), ("x", "y")]
    assert all(isinstance(p, tuple) for p in paths)


def test_parent_links():
    paths = expand([("sales", "eu", "p1"), ("signups",)])
    assert parent_links(paths) == [
        ((), "sales"),
        ((), "signups"),
        (("sales",), "eu"),
        (("sales", "eu"), "p1"),
    ]
    assert parent_links([()]) == []


def test_label():
    assert label(()) == "Overall"
    assert label(("sales",)) == "sales"
    assert label(("sales", "eu", "p123")) == "sales / eu / p123"


names = st.sampled_from(["a", "b", "c", "a b", "|", ""])
branches_st = st.lists(st.lists(names, min_size=0, max_size=5).map(tuple), max_size=6)


@settings(max_examples=200)
@given(branches_st)
def test_expand_is_exactly_the_prefix_closure(branches):
    paths = expand(branches)
    expected = {()} | {b[:end] for b in branches for end in range(1, len(b) + 1)}
    assert () in paths
    assert len(paths) == len(set(paths))  # no duplicates
    assert set(paths) == expected  # every prefix of every branch, nothing else
    for path in paths:  # closed under taking prefixes
        for end in range(len(path)):
            assert path[:end] in paths
    lengths = [len(p) for p in paths]
    assert lengths == sorted(lengths)  # shortest first


@settings(max_examples=100)
@given(branches_st)
def test_parent_links_name_every_non_root_path_once(branches):
    paths = expand(branches)
    links = parent_links(paths)
    assert len(links) == len(paths) - 1
    assert {parent + (child,) for parent, child in links} == set(paths) - {()}
    for parent, _child in links:
        assert parent in paths
