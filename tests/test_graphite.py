"""Unit tests of the Graphite API's pure parts (issue 11, part 3), no Redis: paths and their
escapes (hailwhale.graphite_paths), globs, the target parser and Graphite's times
(hailwhale.graphite_targets), the series functions (hailwhale.graphite_series), and the
choice of period and points (hailwhale.graphite.choose_window). The requests Grafana sends
are replayed in tests/test_graphite_app.py."""

from __future__ import annotations

import fnmatch
import json
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hailwhale.config import load_settings
from hailwhale.errors import BadRequest
from hailwhale.graphite import choose_window, consolidation
from hailwhale.graphite_paths import (
    DEFAULT_PK,
    compile_glob,
    escape,
    is_glob,
    join,
    split,
    unescape,
)
from hailwhale.graphite_series import (
    FUNCTIONS,
    REGEX_BUDGET,
    Context,
    Grid,
    Series,
    describe,
    evaluate,
)
from hailwhale.graphite_targets import (
    Call,
    Path,
    Value,
    parse_interval,
    parse_target,
    parse_time,
    paths,
)
from whale.graphite import _pairs

UTC = ZoneInfo("UTC")
NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


# -- escapes ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, written", [
    ("shop", "shop"), ("", DEFAULT_PK), ("site.com", "site~2Ecom"), ("a b", "a~20b"),
    ("é日本", "é日本"), ("latency:p99", "latency:p99"), ("x-y_z", "x-y_z"), ("~", "~7E"),
    ("c++", "c~2B~2B"), ("50%", "50~25"), ("*", "~2A"), ("{a,b}", "~7Ba~2Cb~7D"),
    ("\U0001f40b", "~F0~9F~90~8B"), ("#A", "~23A"), ("$var", "~24var"),
])
def test_names_are_written_plain_or_escaped(name, written):
    assert escape(name) == written
    assert unescape(written) == name


@given(NAMES)
def test_every_name_round_trips_and_is_one_safe_segment(name):
    written = escape(name)
    assert unescape(written) == name
    assert split(written) == [written]
    assert not is_glob(written)
    # Nothing Graphite's grammar, Grafana's templating or a form body would read: no dots,
    # globs, quotes, parentheses, spaces, %, +, &, =, #, $ (Grafana's #A and $var).
    assert not set(written) & set(".*?[]{}(),'\"\\ %+&=#$|;")


@given(st.lists(NAMES, min_size=2, max_size=6))
def test_a_path_survives_grafanas_unencoded_form_body(names):
    """Grafana posts /metrics/find as `query=${query}`, not encoded (datasource.ts,
    requestMetricFind): a written path must come out of form decoding as it went in."""
    path = join(names) + ".*"
    body = f"query={path}".encode()  # as the browser sends it: UTF-8
    assert _pairs(body.decode("latin-1"), "body") == [("query", path)]  # as WSGI reads it


@pytest.mark.parametrize("segment", ["~2", "a~zz", "~~", "a~"])
def test_a_bad_escape_is_refused(segment):
    with pytest.raises(BadRequest) as refused:
        unescape(segment)
    assert refused.value.param == "target"


def test_escaped_bytes_must_be_utf8():
    with pytest.raises(BadRequest, match="UTF-8"):
        unescape("~FF")


# -- segments and globs -----------------------------------------------------------------------
def test_split_keeps_braces_in_one_segment():
    assert split("shop.{web,api}.*.hits") == ["shop", "{web,api}", "*", "hits"]
    for bad in ("shop..hits", "shop.", ".hits", "a.{b", "a.b}", "a.{b.c}", "a.{{b}}"):
        with pytest.raises(BadRequest):
            split(bad)


@pytest.mark.parametrize("pattern, matches, misses", [
    ("*", ["web", "~", "a~2Eb"], []),
    ("w*", ["web", "w"], ["api"]),
    ("*b", ["web", "b"], ["bw"]),
    ("w?b", ["web"], ["wb", "weeb"]),
    ("[a-c]*", ["api", "b", "cat"], ["web"]),
    ("[!a]*", ["web"], ["api"]),
    ("[^a]*", ["web"], ["api"]),
    ("{web,api}", ["web", "api"], ["www", "webapi"]),
    ("{w,a}*{b,i}", ["web", "api"], ["wx"]),
    ("site~2e*", ["site~2Ecom"], ["site"]),  # escapes match in any case
    ("a!*", ["a~21b"], ["ab"]),  # a literal character is compared as written
    ("~", ["~"], ["a"]),
])
def test_globs(pattern, matches, misses):
    glob = compile_glob(pattern)
    assert all(glob.match(text) for text in matches)
    assert not any(glob.match(text) for text in misses)


@given(st.text("ab*?", max_size=8), st.text("ab", max_size=10))
def test_glob_matching_agrees_with_fnmatch(pattern, text):
    if not pattern:
        return
    assert compile_glob(pattern).match(text) == fnmatch.fnmatchcase(text, pattern)


def test_a_pathological_glob_is_linear_not_exponential():
    # With backtracking over each *, this would take about 5000^6 steps.
    assert not compile_glob("*a*a*a*a*a*b").match("a" * 5000)
    assert compile_glob("*a*a*a*a*a*").match("a" * 5000)


def test_brace_alternatives_are_bounded():
    with pytest.raises(BadRequest, match="alternatives"):
        compile_glob("{" + ",".join("abcdefghij") + "}" * 1 + "{" + ",".join("0123456789") +
                     "}{" + ",".join("0123456789") + "}{a,b}")
    for bad in ("[ab", "a~", "x}"):
        with pytest.raises(BadRequest):
            compile_glob(bad)


# -- targets ----------------------------------------------------------------------------------
def test_grafanas_wrapped_target_parses():
    """What datasource.ts query() sends for each panel query since it wraps targets to
    carry the refId: aliasSub(<target>, "(^.*$)", "\\1 A")."""
    tree = parse_target('aliasSub(sumSeries(shop.{web,api}.*.hits), "(^.*$)", "\\1 A")')
    assert tree == Call("aliasSub", (
        Call("sumSeries", (Path("shop.{web,api}.*.hits"),), ()),
        Value("(^.*$)", "(^.*$)"), Value("\\1 A", "\\1 A")), ())


@pytest.mark.parametrize("text, tree", [
    ("shop.web.hits", Path("shop.web.hits")),
    ("constantLine(100)", Call("constantLine", (Value(100, "100"),), ())),
    ("scale(x.y, -2.5)", Call("scale", (Path("x.y"), Value(-2.5, "-2.5")), ())),
    ("scale(x.y,1e3)", Call("scale", (Path("x.y"), Value(1000.0, "1e3")), ())),
    ("summarize(x.y, '1h', func='max', alignToFrom=true)", Call(
        "summarize", (Path("x.y"), Value("1h", "1h")),
        (("func", Value("max", "max")), ("alignToFrom", Value(True, "true"))))),
    ("x.*.y|aliasByNode(1)", Call("aliasByNode", (Path("x.*.y"), Value(1, "1")), ())),
    ("x.y | scale(2) | alias('z')", Call("alias", (
        Call("scale", (Path("x.y"), Value(2, "2")), ()), Value("z", "z")), ())),
    ('alias(x.y, "say \\"hi\\"")', Call("alias", (Path("x.y"), Value('say \\"hi\\"',
                                                                    'say \\"hi\\"')), ())),
    ("sumSeries()", Call("sumSeries", (), ())),
    ("f(none, inf, false)", Call("f", (Value(None, "none"), Value(math.inf, "inf"),
                                       Value(False, "false")), ())),
])
def test_targets_parse(text, tree):
    assert parse_target(text) == tree


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("sumSeries(", "ends too early"), ("sumSeries(a.b", "ends too early"),
    ("a.b)", "unexpected"), ("f(a.b,)", "unexpected"), ("f(x=1, a.b)", "positional"),
    ("1.5", "not a literal"), ('"text"', "not a literal"), ("a.b(c)", "not a function name"),
    ("f(a.b c.d)", "expected ','"), ("alias(a.b, 'x)", "not closed"), ("a\\.b", "backslash"),
    ("x|y", "pipe"), ("f(" * 40 + "a.b" + ")" * 40, "nest deeper"),
    ("x" * 20_001, "at most"),
])
def test_bad_targets_are_400s_naming_target(text, reason):
    with pytest.raises(BadRequest, match=reason) as refused:
        parse_target(text)
    assert refused.value.param == "target"


@given(st.text(max_size=60))
def test_parsing_any_text_is_a_tree_or_a_bad_request(text):
    try:
        parse_target(text)
    except BadRequest:
        pass


def test_paths_of_a_tree():
    tree = parse_target("divideSeries(sumSeries(a.b, c.*), a.b)|alias('x')")
    assert paths(tree) == ["a.b", "c.*"]


# -- times ------------------------------------------------------------------------------------
NOW = datetime(2026, 11, 22, 10, 30, 15, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text, expected", [
    ("now", NOW), ("-1h", NOW - 3600), ("now-7d", NOW - 7 * 86400), ("-5min", NOW - 300),
    ("-5m", NOW - 300), ("-1mon", NOW - 30 * 86400), ("-1y", NOW - 365 * 86400),
    ("-1h30min", NOW - 5400), ("-2weeks", NOW - 14 * 86400), ("+1d", NOW + 86400),
    ("1795000000", 1795000000), ("1795000000000", 1795000000),
    ("midnight", datetime(2026, 11, 22, tzinfo=UTC).timestamp()),
    ("yesterday", datetime(2026, 11, 21, tzinfo=UTC).timestamp()),
    ("noon+1d", datetime(2026, 11, 23, 12, tzinfo=UTC).timestamp()),
    ("14:00_20260301", datetime(2026, 3, 1, 14, tzinfo=UTC).timestamp()),
    ("20260301", datetime(2026, 3, 1, tzinfo=UTC).timestamp()),
    ("03/01/2026", datetime(2026, 3, 1, tzinfo=UTC).timestamp()),
    ("9:05pm_20260301", datetime(2026, 3, 1, 21, 5, tzinfo=UTC).timestamp()),
])
def test_graphite_times(text, expected):
    assert parse_time(text, NOW, UTC, "from") == pytest.approx(expected)


def test_references_follow_the_time_zone():
    paris = ZoneInfo("Europe/Paris")
    assert parse_time("midnight", NOW, paris, "from") == \
        datetime(2026, 11, 22, tzinfo=paris).timestamp()


@pytest.mark.parametrize("text", ["", "later", "-1", "-1parsec", "25:00_20260101",
                                  "monday", "-" + "9" * 30 + "y", "9" * 5000, "1e9", "20260230"])
def test_bad_times_are_400s_naming_the_parameter(text):
    with pytest.raises(BadRequest) as refused:
        parse_time(text, NOW, UTC, "until")
    assert refused.value.param == "until"


@pytest.mark.parametrize("text, seconds", [
    ("1h", 3600), ("10min", 600), ("10m", 600), ("1d", 86400), ("2w", 14 * 86400),
    ("1mon", 30 * 86400), ("1y", 365 * 86400), ("30s", 30), ("1hour", 3600),
    ("1h30min", 5400)])
def test_intervals(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "-1h", "h", "1ms", "1 parsec"])
def test_bad_intervals(text):
    with pytest.raises(BadRequest):
        parse_interval(text)


# -- functions --------------------------------------------------------------------------------
GRID = Grid((0, 60, 120, 180), 60)


def series(name: str, values, times=(0, 60, 120, 180), path: str | None = None) -> Series:
    return Series(name, path or name, tuple(times), tuple(values), 60)


DATA = {
    "shop.web.hits": [series("shop.web.hits", [1, 2, 3, 4])],
    "shop.*.hits": [series("shop.api.hits", [1, 0, 2, 0], path="shop.*.hits"),
                    series("shop.web.hits", [1, 2, 3, 4], path="shop.*.hits")],
    "shop.dollars": [series("shop.dollars", [10, 0, 9, None])],
    "shop.hits": [series("shop.hits", [2, 0, 3, 1])],
    "none.x": [],
}


def run(text: str, context: Context | None = None) -> list[Series]:
    return evaluate(parse_target(text), DATA.__getitem__, context or Context(GRID))


def values(text: str) -> list[tuple]:
    return [(s.name, list(s.values)) for s in run(text)]


def test_sum_series_names_the_path_expressions_as_graphite_does():
    assert values("sumSeries(shop.*.hits)") == [("sumSeries(shop.*.hits)", [2, 2, 5, 4])]
    assert values("sum(shop.*.hits, shop.web.hits)") == [
        ("sumSeries(shop.*.hits,shop.web.hits)", [3, 4, 8, 8])]
    assert values("sumSeries(none.x)") == []


def test_combining_series_skips_nulls():
    assert values("sumSeries(shop.dollars, shop.hits)")[0][1] == [12, 0, 12, 1]
    assert values("averageSeries(shop.*.hits)")[0][1] == [1, 1, 2.5, 2]
    assert values("maxSeries(shop.*.hits)")[0][1] == [1, 2, 3, 4]
    assert values("minSeries(shop.*.hits)")[0][1] == [1, 0, 2, 0]


def test_divide_series_is_hailwhales_ratio_zero_where_the_divisor_is():
    assert values("divideSeries(shop.dollars, shop.hits)") == [
        ("divideSeries(shop.dollars,shop.hits)", [5, 0, 3, None])]
    assert values("divideSeries(shop.dollars, none.x)") == [
        ("divideSeries(shop.dollars,MISSING)", [None] * 4)]
    with pytest.raises(BadRequest, match="exactly one series"):
        run("divideSeries(shop.hits, shop.*.hits)")


def test_scale_offset_and_aliases():
    assert values("scale(shop.web.hits, 10)") == [("scale(shop.web.hits,10)", [10, 20, 30, 40])]
    assert values("offset(shop.web.hits, -1)") == [("offset(shop.web.hits,-1)", [0, 1, 2, 3])]
    assert [s.name for s in run("alias(shop.*.hits, 'Hits')")] == ["Hits", "Hits"]
    assert [s.name for s in run("aliasByNode(shop.*.hits, 1)")] == ["api", "web"]
    assert [s.name for s in run("aliasByNode(shop.*.hits, 0, -1)")] == ["shop.hits"] * 2
    assert [s.name for s in run("aliasByNode(scale(shop.web.hits, 2), 1)")] == ["web"]
    assert [s.name for s in run("aliasByNode(sumSeries(shop.*.hits), 1)")] == ["*"]
    assert [s.name for s in run("aliasByMetric(shop.*.hits)")] == ["hits", "hits"]
    with pytest.raises(BadRequest, match="has 3 nodes"):
        run("aliasByNode(shop.web.hits, 3)")


def test_alias_sub_takes_grafanas_ref_id_wrapper():
    found = run('aliasSub(shop.*.hits, "(^.*$)", "\\1 B")')
    assert [s.name for s in found] == ["shop.api.hits B", "shop.web.hits B"]
    assert [s.name for s in run('aliasSub(shop.*.hits, "^shop\\.(\\w+)\\..*", "\\1")')] == \
        ["api", "web"]


@pytest.mark.parametrize("pattern, reason", [
    ("(a+)+", "repeated group"), ("(a|aa)*", "repeated group"), ("(x){2,}", "repeated group"),
    ("(a)\\1", "backreferences"), ("(?P<x>a)(?P=x)", "backreferences"),
    ("[", "not a regular expression"), ("a" * 201, "at most"),
])
def test_alias_sub_refuses_patterns_that_can_be_slow_or_are_not_patterns(pattern, reason):
    with pytest.raises(BadRequest, match=reason):
        run(f'aliasSub(shop.web.hits, "{pattern}", "x")')


def test_alias_sub_work_is_budgeted_per_request():
    long = series("a" * 4000, [1, 2, 3, 4])
    context = Context(GRID)
    tree = parse_target('aliasSub(x.y, "a*a*a*b", "x")')  # n^4 on a long name
    with pytest.raises(BadRequest, match="too long"):
        evaluate(tree, lambda _: [long], context)
    assert context.regex_spent > REGEX_BUDGET
    # Grafana's own wrapper is linear: a thousand long names pass.
    many = [series("a" * 2000 + str(n), [1, 2, 3, 4]) for n in range(1000)]
    wrapped = parse_target('aliasSub(x.y, "(^.*$)", "\\1 A")')
    assert len(evaluate(wrapped, lambda _: many, Context(GRID))) == 1000


def test_summarize_groups_points_into_intervals():
    hourly = Series("x", "x", tuple(range(0, 7200, 900)), (1, 2, 3, 4, 5, 6, 7, 8), 900)
    fetch = {"x.y": [hourly]}.__getitem__

    def summarized(text):
        return [(s.name, list(s.times), list(s.values), s.step)
                for s in evaluate(parse_target(text), fetch, Context(GRID))]

    assert summarized("summarize(x.y, '1h')") == [
        ('summarize(x, "1h", "sum")', [0, 3600], [10, 26], 3600)]
    assert summarized("summarize(x.y, '1h', 'max')")[0][2] == [4, 8]
    assert summarized("summarize(x.y, '1h', 'avg')")[0][2] == [2.5, 6.5]
    assert summarized("summarize(x.y, '1h', 'last')")[0][2] == [4, 8]
    assert summarized("summarize(x.y, '1h', 'min')")[0][2] == [1, 5]
    assert list(summarized("summarize(x.y, '30min', 'sum', true)")[0][1:3]) == [
        [0, 1800, 3600, 5400], [3, 7, 11, 15]]
    with pytest.raises(BadRequest, match="one of"):
        summarized("summarize(x.y, '1h', 'mode')")


def test_constant_line_draws_on_the_grid():
    assert values("constantLine(100)") == [("100", [100, 100, 100, 100])]
    assert run("constantLine(1.5)")[0].times == GRID.times


@pytest.mark.parametrize("text, reason", [
    ("nosuch(shop.hits)", "unknown function"), ("scale(shop.hits)", "needs its argument"),
    ("scale(shop.hits, 2, 3)", "at most 2"), ("scale(shop.hits, 'x')", "must be a number"),
    ("scale(3, 2)", "series list"), ("scale(shop.hits, shop.hits)", "not a series list"),
    ("aliasByNode(shop.hits, 1.5)", "whole number"), ("sumSeries()", "at least one"),
    ("scale(shop.hits, factor=2, factor=3)", "twice"), ("alias(shop.hits, nope='x')",
                                                        "no keyword"),
    ("summarize(shop.hits, '1h', alignToFrom='yes')", "true or false"),
    ("__import__('os')", "unknown function"),
])
def test_bad_calls_are_400s(text, reason):
    with pytest.raises(BadRequest, match=reason) as refused:
        run(text)
    assert refused.value.param == "target"


def test_values_a_float_cannot_hold_are_null():
    big = [series("x", [10**400, 1e308, -1e308, 2])]
    found = evaluate(parse_target("scale(x.y, 1e10)"), lambda _: big, Context(GRID))
    assert [value for value, _ in found[0].datapoints()] == [None, None, None, 2e10]
    json.dumps(found[0].datapoints(), allow_nan=False)


def test_functions_are_described_as_graphites_function_index():
    described = describe()
    assert set(described) == set(FUNCTIONS)
    assert {"sumSeries", "divideSeries", "scale", "alias", "aliasByNode", "summarize",
            "constantLine", "aliasSub"} <= set(described)
    json.dumps(described, allow_nan=False)  # Graphite 1.1.7's "default": Infinity is not
    summarize = described["summarize"]
    assert summarize["group"] == "Transform"
    assert [p["name"] for p in summarize["params"]] == ["seriesList", "intervalString", "func",
                                                        "alignToFrom"]
    assert summarize["params"][2]["default"] == "sum"
    assert described["sumSeries"]["params"][0] == {"name": "seriesLists", "type": "seriesList",
                                                   "required": True, "multiple": True}


# -- periods and points -------------------------------------------------------------------
SETTINGS = load_settings(environ={})  # 15s:3h, 1h:7d, 1d:1y


@pytest.mark.parametrize("back, period", [
    (3600, "15s:3h"), (3 * 3600 - 60, "15s:3h"), (6 * 3600, "1h:7d"), (7 * 86400 - 3600,
                                                                        "1h:7d"),
    (30 * 86400, "1d:1y"), (3 * 365 * 86400, "1d:1y"),
])
def test_the_finest_period_that_keeps_from(back, period):
    window = choose_window(SETTINGS, NOW - back, NOW, NOW, None)
    assert window.period.name == period
    assert len(window.times) == len(window.ordinals)


def test_a_window_older_than_every_retention_starts_where_the_longest_does():
    window = choose_window(SETTINGS, 0, NOW, NOW, None)
    assert window.period.name == "1d:1y"
    assert NOW - 366 * 86400 <= window.since


def test_a_period_with_too_many_buckets_gives_way_to_a_coarser_one():
    tight = load_settings(environ={"HAILWHALE_MAX_BUCKETS": "100"})
    assert choose_window(tight, NOW - 3600, NOW, NOW, None).period.name == "1h:7d"
    with pytest.raises(BadRequest) as refused:
        choose_window(tight, NOW - 200 * 86400, NOW, NOW, None)
    assert refused.value.param == "from"


def test_max_data_points_sums_adjacent_buckets_aligned_so_points_stay_put():
    window = choose_window(SETTINGS, NOW - 3600, NOW, NOW, 100)  # 241 buckets of 15 s
    assert len(window.groups) <= 100
    assert window.step == 45
    assert sum(size for _, size in window.groups) == len(window.ordinals)
    assert all(time % 45 == 0 for time in window.times)  # multiples of 3 buckets
    later = choose_window(SETTINGS, NOW - 3600 + 15, NOW + 15, NOW + 15, 100)
    assert set(window.times[2:]) <= set(later.times)
    counts = list(range(len(window.ordinals)))
    consolidated = window.consolidate(counts)
    assert sum(consolidated) == sum(counts)
    assert len(choose_window(SETTINGS, NOW - 3600, NOW, NOW, 1).groups) == 1


def test_consolidation_follows_the_metric_kind():
    assert consolidation("sum", None) == consolidation("unique", None) == "sum"
    assert consolidation("gauge", "last") == consolidation("gauge", None) == "last"
    assert consolidation("timing", "count") == "sum"
    assert consolidation("timing", "max") == "max"
    assert consolidation("timing", "p99") == consolidation("timing", None) == "average"
    window = choose_window(SETTINGS, NOW - 3600, NOW, NOW, 100)
    gauge = [None] * len(window.ordinals)
    gauge[4] = 7
    assert window.consolidate(gauge, "last")[1] == 7
    assert window.consolidate(gauge, "last")[0] is None
