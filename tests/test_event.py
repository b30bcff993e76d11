"""Unit tests for hailwhale.event: parsing and validating one event's parameters (no Redis)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hailwhale.config import load_settings
from hailwhale.errors import BadRequest
from hailwhale.event import Event, parse_event

SETTINGS = load_settings(environ={})
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc).timestamp()
DAY = 86400


def parse(**raw) -> Event:
    return parse_event(raw, SETTINGS, NOW)


def bad(raw: dict, settings=SETTINGS) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_event(raw, settings, NOW)
    return info.value


def test_the_settings_these_tests_assume():
    assert [p.name for p in SETTINGS.periods] == ["15s:3h", "1h:7d", "1d:1y"]
    assert SETTINGS.max_depth == 8
    assert SETTINGS.max_branches == 16
    assert SETTINGS.future_skew == 300
    assert SETTINGS.timezone == "UTC"


# -- the minimal event -------------------------------------------------------------------------


def test_empty_event_counts_a_hit_at_the_root():
    event = parse()
    assert event.branches == ()
    assert event.metrics == {"hits": 1}
    assert event.uniques == ()
    assert event.uid is None
    assert event.pk == ""
    assert event.at == NOW


def test_raw_parameters_are_kept():
    raw = {"dimensions": "services", "_": "123"}
    assert parse_event(raw, SETTINGS, NOW).raw == raw


# -- dimensions --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dimensions", "dimension"])
def test_plain_string_is_one_level(name):
    assert parse(**{name: "services"}).branches == (("services",),)


@pytest.mark.parametrize(
    "value, branches",
    [
        ('["pageviews","site.com","site.com/main"]',
         (("pageviews", "site.com", "site.com/main"),)),
        ('{"sales": "p123"}', (("sales", "p123"),)),
        ('{"sales": {"eu": "p123"}}', (("sales", "eu", "p123"),)),
        ('{"sales": {"eu": "p1"}, "signups": "free"}',
         (("sales", "eu", "p1"), ("signups", "free"))),
        ('{"sales": {"eu": "p1", "us": "p2"}}', (("sales", "eu", "p1"), ("sales", "us", "p2"))),
        ('{"pages": ["site.com", "main"]}', (("pages", "site.com", "main"),)),
        ('"services"', (("services",),)),
        ('["users", 42]', (("users", "42"),)),
        ('{"year": 2026}', (("year", "2026"),)),
        (' ["a"] ', (("a",),)),
        ("a|b:c{d}*", (("a|b:c{d}*",),)),
        ("site.com/main?x=1", (("site.com/main?x=1",),)),
        ("null", (("null",),)),  # not JSON-looking: a plain name
        ("5", (("5",),)),
        ("[]", ()),
        ("{}", ()),
        ('""', ()),
        ("", ()),
    ],
)
def test_dimension_shapes(value, branches):
    assert parse(dimensions=value).branches == branches


def test_python_values_are_accepted_as_they_are():
    assert parse(dimensions=["a", "b"]).branches == (("a", "b"),)
    assert parse(dimensions={"a": {"b": "c"}, "d": "e"}).branches == (("a", "b", "c"), ("d", "e"))
    assert parse(dimensions=7).branches == (("7",),)
    assert parse(dimensions=b'["a", "b"]').branches == (("a", "b"),)


def test_names_keep_their_spaces_and_case():
    assert parse(dimensions='[" A ", "b c"]').branches == ((" A ", "b c"),)


def test_longest_name_allowed():
    name = "x" * SETTINGS.max_name_length
    assert parse(dimensions=name).branches == ((name,),)


def test_deepest_and_widest_allowed():
    deep = [f"l{i}" for i in range(SETTINGS.max_depth)]
    assert parse(dimensions=json.dumps(deep)).branches == (tuple(deep),)
    nested: object = "leaf"
    for i in range(SETTINGS.max_depth - 1):
        nested = {f"l{i}": nested}
    assert len(parse(dimensions=json.dumps(nested)).branches[0]) == SETTINGS.max_depth
    wide = {f"k{i}": "v" for i in range(SETTINGS.max_branches)}
    assert len(parse(dimensions=json.dumps(wide)).branches) == SETTINGS.max_branches


# -- metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["metrics", "metric"])
def test_metrics_and_alias(name):
    event = parse(**{name: '{"dollars": 200}'})
    assert event.metrics == {"dollars": 200, "hits": 1}


@pytest.mark.parametrize(
    "value, metrics",
    [
        ('{"dollars": -2000}', {"dollars": -2000, "hits": 1}),
        ('{"dollars": 19.99}', {"dollars": 19.99, "hits": 1}),
        ('{"dollars": -0.5, "items": 3}', {"dollars": -0.5, "items": 3, "hits": 1}),
        ('{"dollars": 1e12}', {"dollars": 1e12, "hits": 1}),
        ('{"hits": 5}', {"hits": 5}),
        ('{"hits": 0}', {"hits": 0}),
        ('{"hits": -1, "x_2": 0.1}', {"hits": -1, "x_2": 0.1}),
        ("{}", {"hits": 1}),
        ("", {"hits": 1}),
    ],
)
def test_metric_values(value, metrics):
    event = parse(metrics=value)
    assert event.metrics == metrics
    for name, number in metrics.items():
        assert type(event.metrics[name]) is type(number)


def test_metrics_as_a_python_dict():
    assert parse(metrics={"dollars": 5, "ratio": 0.25}).metrics == {
        "dollars": 5, "ratio": 0.25, "hits": 1
    }


def test_is_unique_counts_the_deepest_dimension_value():
    event = parse(dimensions='["users", "u42"]', metrics='{"visitors": "is_unique"}')
    assert event.uniques == ("visitors",)
    assert event.uid == "u42"
    assert event.metrics == {"hits": 1}


def test_is_unique_uses_the_longest_branch():
    event = parse(dimensions='{"a": "x", "b": {"c": "deep"}}', metrics='{"u": "is_unique"}')
    assert event.uid == "deep"


def test_is_unique_with_an_explicit_uid():
    event = parse(dimensions="page", metrics='{"visitors": "is_unique", "dollars": 3}',
                  uid="visitor-7")
    assert event.uid == "visitor-7"
    assert event.uniques == ("visitors",)
    assert event.metrics == {"dollars": 3, "hits": 1}


def test_uid_without_unique_metric_is_kept():
    assert parse(uid=12).uid == "12"
    assert parse(uid="").uid is None


def test_is_unique_needs_something_to_count():
    error = bad({"metrics": '{"visitors": "is_unique"}'})
    assert error.param == "uid"


# -- pk and at ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pk", "category"])
def test_pk_and_alias(name):
    assert parse(**{name: "shop"}).pk == "shop"


def test_pk_as_number():
    assert parse(pk=7).pk == "7"


@pytest.mark.parametrize(
    "value, at",
    [
        (NOW - 60, NOW - 60),
        (int(NOW) - 3600, NOW - 3600),
        (str(int(NOW) - 3600), NOW - 3600),
        ((NOW - 60) * 1000, NOW - 60),
        ("2026-03-20T11:00:00Z", NOW - 3600),
        ("2026-03-20T13:00:00+02:00", NOW - 3600),
        ("2026-03-20T11:00:00", NOW - 3600),  # no zone: TIMEZONE (UTC here)
        (NOW + 300, NOW + 300),  # exactly the allowed future skew
        (NOW - 300 * DAY, NOW - 300 * DAY),  # only the day period still keeps it
        ("", NOW),
        (None, NOW),
    ],
)
def test_at(value, at):
    assert parse(at=value).at == pytest.approx(at)


def test_at_in_the_configured_time_zone():
    berlin = load_settings(environ={"HAILWHALE_TIMEZONE": "Europe/Berlin"})
    event = parse_event({"at": "2026-03-20T13:00:00"}, berlin, NOW)  # CET, +1
    assert event.at == NOW


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, param",
    [
        ({"dimensions": '["a",'}, "dimensions"),
        ({"dimensions": '{"a": }'}, "dimensions"),
        ({"dimension": '["a"'}, "dimensions"),
        ({"dimensions": '"unterminated'}, "dimensions"),
        ({"metrics": '{"dollars": }'}, "metrics"),
        ({"metrics": "{dollars: 5}"}, "metrics"),
        ({"metric": '{"a": 1'}, "metrics"),
    ],
)
def test_malformed_json(raw, param):
    error = bad(raw)
    assert error.param == param
    assert "malformed JSON" in str(error)
    assert error.value == next(iter(raw.values()))


@pytest.mark.parametrize(
    "metrics",
    [
        '{"dollars": "abc"}',
        '{"dollars": "5"}',
        '{"dollars": "unique"}',
        '{"dollars": true}',
        '{"dollars": null}',
        '{"dollars": [1]}',
        '{"dollars": {"a": 1}}',
    ],
)
def test_metric_that_is_not_a_number(metrics):
    error = bad({"metrics": metrics})
    assert error.param == "metrics.dollars"
    assert "is_unique" in str(error)


@pytest.mark.parametrize(
    "metrics",
    ['{"dollars": NaN}', '{"dollars": Infinity}', '{"dollars": -Infinity}',
     {"dollars": float("nan")}, {"dollars": float("inf")}],
)
def test_metric_not_finite(metrics):
    error = bad({"metrics": metrics})
    assert error.param == "metrics.dollars"
    assert "finite" in str(error)


@pytest.mark.parametrize("metrics", ['{"dollars": 1e13}', '{"dollars": -1000000000001}'])
def test_metric_too_big(metrics):
    assert bad({"metrics": metrics}).param == "metrics.dollars"


@pytest.mark.parametrize(
    "metrics",
    ['{"1abc": 1}', '{"a-b": 1}', '{"": 1}', '{"a b": 1}', '{"é": 1}', '{"a.b": 1}',
     json.dumps({"x" * 65: 1})],
)
def test_bad_metric_names(metrics):
    assert bad({"metrics": metrics}).param == "metrics"


@pytest.mark.parametrize("metrics", ["[1, 2]", "dollars", '"dollars"', "5", 5])
def test_metrics_not_an_object(metrics):
    assert bad({"metrics": metrics}).param == "metrics"


def test_too_many_metrics():
    metrics = {f"m{i}": 1 for i in range(SETTINGS.max_metrics + 1)}
    assert bad({"metrics": json.dumps(metrics)}).param == "metrics"
    del metrics["m0"]
    assert len(parse(metrics=json.dumps(metrics)).metrics) == SETTINGS.max_metrics + 1  # + hits


@pytest.mark.parametrize(
    "dimensions",
    ['["a", ""]', '{"": "x"}', '{"a": ""}', "   ", '["a", "  "]', '{"a": {" ": "b"}}'],
)
def test_empty_dimension_name(dimensions):
    error = bad({"dimensions": dimensions})
    assert error.param == "dimensions"
    assert "empty" in str(error)


@pytest.mark.parametrize(
    "dimensions",
    ['[["a"]]', '{"a": null}', "[true]", "[1.5]", '[{"a": "b"}]', '{"a": []}', '{"a": {}}',
     '{"a": [["b"]]}', json.dumps(["x" * 201]), json.dumps({"x" * 201: "a"})],
)
def test_bad_dimension_values(dimensions):
    assert bad({"dimensions": dimensions}).param == "dimensions"


def test_list_deeper_than_max_depth():
    deep = [f"l{i}" for i in range(SETTINGS.max_depth + 1)]
    error = bad({"dimensions": json.dumps(deep)})
    assert error.param == "dimensions"
    assert "deeper than 8" in str(error)


def test_object_nesting_deeper_than_max_depth():
    nested: object = "leaf"
    for i in range(SETTINGS.max_depth):  # 8 keys and a leaf: 9 levels
        nested = {f"l{i}": nested}
    error = bad({"dimensions": json.dumps(nested)})
    assert error.param == "dimensions"
    assert "deeper than 8" in str(error)


def test_max_depth_follows_the_settings():
    shallow = load_settings(environ={"HAILWHALE_MAX_DEPTH": "2"})
    assert parse_event({"dimensions": '["a", "b"]'}, shallow, NOW).branches == (("a", "b"),)
    assert bad({"dimensions": '["a", "b", "c"]'}, shallow).param == "dimensions"
    assert bad({"dimensions": '{"a": {"b": "c"}}'}, shallow).param == "dimensions"


def test_more_branches_than_allowed():
    wide = {f"k{i}": "v" for i in range(SETTINGS.max_branches + 1)}
    error = bad({"dimensions": json.dumps(wide)})
    assert error.param == "dimensions"
    assert "branches" in str(error)
    nested_wide = {"top": {f"k{i}": "v" for i in range(SETTINGS.max_branches + 1)}}
    assert bad({"dimensions": json.dumps(nested_wide)}).param == "dimensions"


@pytest.mark.parametrize(
    "at",
    [NOW - 366 * DAY, NOW - 10 * 365 * DAY, 0, "1990-01-01T00:00:00Z"],
)
def test_at_older_than_every_retention(at):
    error = bad({"at": at})
    assert error.param == "at"
    assert "older" in str(error)


@pytest.mark.parametrize("at", [-1e9, -99999999999, "0001-01-01T00:00:00Z", -1])
def test_at_outside_the_calendar_is_refused(at):
    error = bad({"at": at})
    assert error.param == "at"
    assert "between 1970 and 9999" in str(error)


@pytest.mark.parametrize("at", [NOW + 301, NOW + 86400, "2027-01-01T00:00:00Z", 9e10])
def test_at_too_far_in_the_future(at):
    error = bad({"at": at})
    assert error.param == "at"
    assert "future" in str(error)


@pytest.mark.parametrize("at", ["yesterday", "nan", "inf", True, [1]])
def test_at_not_a_time(at):
    assert bad({"at": at}).param == "at"


@pytest.mark.parametrize(
    "raw, param",
    [
        ({"dimensions": "a", "foo": "1"}, "foo"),
        ({"dims": "a"}, "dims"),
        ({"Dimensions": "a"}, "Dimensions"),
        ({"value": "1", "zeta": "2"}, "value"),  # the first, alphabetically
    ],
)
def test_unknown_parameters(raw, param):
    error = bad(raw)
    assert error.param == param
    assert "unknown parameter" in str(error)


def test_underscore_parameters_are_ignored():
    event = parse(dimensions="a", _="1774000000", _cb="x", __proto__="y")
    assert event.branches == (("a",),)


@pytest.mark.parametrize(
    "raw, param",
    [
        ({"dimensions": "a", "dimension": "a"}, "dimensions"),
        ({"metrics": "{}", "metric": "{}"}, "metrics"),
        ({"pk": "a", "category": "b"}, "pk"),
    ],
)
def test_both_spellings_at_once(raw, param):
    error = bad(raw)
    assert error.param == param
    assert "not both" in str(error)


@pytest.mark.parametrize("pk", [{"a": 1}, ["a"], True, 1.5, "x" * 201])
def test_bad_pk(pk):
    assert bad({"pk": pk}).param == "pk"


@pytest.mark.parametrize("raw", [["dimensions", "a"], "dimensions=a", None])
def test_event_that_is_not_an_object(raw):
    assert bad(raw).param == "event"


def test_error_message_names_the_parameter_and_quotes_the_input():
    error = bad({"metrics": '{"dollars": "lots"}'})
    message = str(error)
    assert message.startswith("metrics.dollars: ")
    assert '"lots"' in message


# -- hypothesis: any well-formed nesting gives back its root-to-leaf paths ---------------------

names = st.text(alphabet="ab|:{}é ", min_size=1, max_size=3).filter(lambda s: s.strip())
trees = st.recursive(
    names,
    lambda children: st.one_of(
        st.dictionaries(names, children, min_size=1, max_size=3),
        st.lists(names, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


def leaf_paths(tree, prefix=()):
    if isinstance(tree, dict):
        return [p for key, child in tree.items() for p in leaf_paths(child, prefix + (key,))]
    if isinstance(tree, list):
        return [prefix + tuple(tree)]
    return [prefix + (tree,)]


@settings(max_examples=150, deadline=None)
@given(trees)
def test_nested_dimensions_give_their_leaf_paths(tree):
    expected = leaf_paths(tree)
    assume(max(len(p) for p in expected) <= SETTINGS.max_depth)
    assume(len(expected) <= SETTINGS.max_branches)
    event = parse(dimensions=json.dumps(tree))
    assert event.branches == tuple(dict.fromkeys(expected))
    if not isinstance(tree, str):  # a Python string that looks like JSON is read as JSON
        assert parse(dimensions=tree).branches == event.branches


# -- regressions found by review ------------------------------------------------------------


@pytest.mark.parametrize("levels", [9, 10, 50, 500])
def test_any_nesting_past_the_limit_is_refused(levels):
    document = "leaf"
    for level in range(levels):
        document = {f"l{level}": document}
    error = bad({"dimensions": json.dumps(document)})
    assert error.param == "dimensions"
    assert "deeper than 8" in str(error)


@pytest.mark.parametrize("name", ["hits\n", "a\nb", "dollars "])
def test_metric_names_are_matched_whole(name):
    assert bad({"metrics": {name: 1}}).param == "metrics"


def test_hits_cannot_be_a_unique_metric():
    error = bad({"dimensions": "a", "metrics": {"hits": "is_unique"}})
    assert error.param == "metrics.hits"


@pytest.mark.parametrize("raw, param", [
    ({"dimensions": "tab\there"}, "dimensions"),
    ({"dimensions": ["a", "unit\x1fsep"]}, "dimensions"),
    ({"dimensions": "a", "uid": "new\nline", "metrics": {"v": "is_unique"}}, "uid"),
    ({"pk": "nul\x00"}, "pk"),
])
def test_names_refuse_control_characters(raw, param):
    error = bad(raw)
    assert error.param == param
    assert "control characters" in str(error)
