"""Unit tests for hailwhale.keys: the Redis key schema, as pure strings (no Redis)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from hypothesis import given, settings
from hypothesis import strategies as st

from hailwhale import keys
from hailwhale.event import _CONTROL as CONTROL
from hailwhale.periods import Period

P15 = Period(15, 10800)
P1H = Period(3600, 604800)
P1H_SHORT = Period(3600, 86400)
P1D = Period(86400, 365 * 86400)


# -- the schema, spelled out --------------------------------------------------------------------


def test_cells_key():
    key = keys.cells("shop", ("sales", "eu"), "dollars", P15, 3)
    assert key == "hw:{shop|sales|eu}:s:dollars:15r10800:3"


def test_a_series_is_a_field_of_its_parents_hash():
    assert keys.location(("sales", "eu")) == (("sales",), "eu")
    assert keys.location(("sales",)) == ((), "sales")
    assert keys.location(()) == ((), keys.ROOT_FIELD)
    assert keys.fields("eu") == ("eu", "eu" + keys.FRACTION)
    assert keys.ROOT_FIELD.isprintable() is False and keys.FRACTION.isprintable() is False


def test_unique_key():
    key = keys.unique("shop", ("users",), "visitors", P1D, 20500)
    assert key == "hw:{shop|users}:u:visitors:86400r31536000:20500"


def test_children_and_metrics_keys():
    assert keys.children("shop", ("sales",)) == "hw:{shop|sales}:children"
    assert keys.children("shop", ()) == "hw:{shop}:children"
    assert keys.metrics("shop") == "hw:{shop}:metrics"
    assert keys.metrics("") == "hw:{%}:metrics"  # never an empty hash tag
    assert keys.PKS == "hw:{%pks}"


def test_series_tag():
    assert keys.series_tag("", ()) == "{%}"
    assert keys.series_tag("", ("a",)) == "{%|a}"
    assert keys.series_tag("pk", ()) == "{pk}"
    # An empty name (refused by event parsing) still cannot collide with the root.
    assert keys.series_tag("pk", ("",)) == "{pk|}"
    assert keys.series_tag("pk", ("a",)) == "{pk|a}"
    assert keys.series_tag("pk", ("a", "b")) == "{pk|a|b}"


def test_user_parts_are_percent_encoded():
    key = keys.cells("a|b", ("c:d", "{e}"), "m*", P15, 0)
    assert key == "hw:{a%7Cb|c%3Ad|%7Be%7D}:s:m%2A:15r10800:0"
    assert keys.series_tag("100%", ()) == "{100%25}"
    assert keys.series_tag("é /?[]", ()) == "{%C3%A9%20%2F%3F%5B%5D}"


def test_separators_in_names_do_not_merge_series():
    assert keys.series_tag("a|b", ()) != keys.series_tag("a", ("b",))
    assert keys.series_tag("a", ("b|c",)) != keys.series_tag("a", ("b", "c"))
    assert keys.series_tag("a}", ()) != keys.series_tag("a", ("}",))
    assert keys.cells("a", (), "m:1", P15, 0) != keys.cells("a", (), "m", P15, 0)


def test_periods_of_one_interval_have_different_keys():
    one = keys.cells("", ("a",), "hits", P1H, 0)
    assert one != keys.cells("", ("a",), "hits", P1H_SHORT, 0)


def test_first_layout_counter_keys_are_parsed():
    assert keys.parse_v1_counter("hw:{a%7Cb|c%3Ad|%7Be%7D}:c:m%2A:15r10800:-2") == \
        ("a|b", ("c:d", "{e}"), "m*", "15r10800", -2)
    assert keys.parse_v1_counter("hw:{%}:c:hits:15r10800:0") == ("", (), "hits", "15r10800", 0)
    for other in ("hw:{%}:s:hits:15r10800:0", "hw:{%}:u:v:15r10800:3", "hw:{%pks}",
                  "hw:{%}:c:hits:15r10800", "hw:{%}:c:hits:15r10800:x", "other:{a}:c:m:p:1"):
        assert keys.parse_v1_counter(other) is None, other
    assert fnmatchcase("hw:{a|b}:c:m:15r10800:0", keys.V1_COUNTERS)
    assert not fnmatchcase("hw:{a|b}:s:c:15r10800:0", keys.V1_COUNTERS)


def test_migration_markers_sit_in_the_slot_they_are_written_with():
    near = keys.cells("shop", ("a",), "hits", P15, 7)
    marker = keys.migrated("hw:{shop|a|b}:c:hits:15r10800:0", near)
    assert hash_tag(marker) == hash_tag(near) == "{shop|a}"
    assert marker != keys.migrated("hw:{shop|a|c}:c:hits:15r10800:0", near)


def test_pk_pattern_example():
    assert keys.pk_pattern("shop") == "hw:{shop[}|]*"
    assert fnmatchcase("hw:{shop}:metrics", keys.pk_pattern("shop"))
    assert fnmatchcase("hw:{shop|a}:children", keys.pk_pattern("shop"))
    assert not fnmatchcase(keys.PKS, keys.pk_pattern("shop"))
    assert not fnmatchcase(keys.metrics("shop2"), keys.pk_pattern("shop"))
    assert not fnmatchcase(keys.metrics("sho"), keys.pk_pattern("shop"))


def test_pk_pattern_escapes_glob_characters():
    pattern = keys.pk_pattern("*")
    assert not fnmatchcase(keys.metrics("anything"), pattern)
    assert fnmatchcase(keys.metrics("*"), pattern)
    assert not fnmatchcase(keys.metrics("a"), keys.pk_pattern("?"))
    assert not fnmatchcase(keys.metrics("a"), keys.pk_pattern("[a]"))


# -- hypothesis: injectivity, hash tags, SCAN patterns ----------------------------------------

# Few characters, so that hypothesis tries lots of near collisions, with every separator.
tricky = st.text(alphabet="ab|:{}*?%[]\\ é", max_size=4)
any_text = st.one_of(tricky, st.text(max_size=6))
# Empty names are refused by hailwhale.event, but the keys stay apart even for them.
dim_name = st.one_of(tricky, st.text(max_size=6))
paths = st.lists(dim_name, max_size=3).map(tuple)
periods = st.sampled_from([P15, P1H, P1H_SHORT, P1D])
chunks = st.integers(min_value=-2, max_value=130)
cells = st.tuples(any_text, paths, any_text, periods, chunks)


def series_keys(pk, path, metric, period, chunk):
    """Every key of one series, with what it is."""
    out = {
        keys.cells(pk, path, metric, period, chunk): ("cells", pk, path, metric, period, chunk),
        keys.unique(pk, path, metric, period, chunk): ("unique", pk, path, metric, period, chunk),
        keys.children(pk, path): ("children", pk, path),
    }
    if not path:
        out[keys.metrics(pk)] = ("metrics", pk)
    return out


def hash_tag(key: str) -> str:
    return key[key.index("{"): key.index("}") + 1]


@settings(max_examples=150, deadline=None)
@given(st.lists(cells, min_size=2, max_size=12, unique=True))
def test_distinct_cells_give_distinct_keys(cell_list):
    owner: dict[str, tuple] = {}
    for cell in cell_list:
        for key, what in series_keys(*cell).items():
            assert owner.setdefault(key, what) == what, f"{key!r} is shared"
    assert keys.PKS not in owner


@settings(max_examples=150, deadline=None)
@given(cells, cells)
def test_two_cells_share_a_counter_key_only_when_equal(one, other):
    if one != other:
        assert keys.cells(*one) != keys.cells(*other)
        assert keys.unique(*one) != keys.unique(*other)
    if one[:2] != other[:2]:
        assert keys.series_tag(*one[:2]) != keys.series_tag(*other[:2])


@settings(max_examples=150, deadline=None)
@given(cells)
def test_every_key_of_a_series_has_one_shared_hash_tag(cell):
    pk, path = cell[0], cell[1]
    tag = keys.series_tag(pk, path)
    for key in series_keys(*cell):
        assert key.count("{") == 1
        assert key.count("}") == 1
        assert key.index("{") < key.index("}")
        assert hash_tag(key) == tag
        assert key.startswith("hw:{")


@settings(max_examples=150, deadline=None)
@given(cells, cells)
def test_pk_pattern_matches_exactly_the_keys_of_its_pk(one, other):
    pattern = keys.pk_pattern(one[0])
    # Only the final "[}|]*" has glob characters: nothing in the pk can widen the match.
    assert pattern.endswith("[}|]*")
    assert not any(ch in pattern[: -len("[}|]*")] for ch in "*?[]\\")
    for key in series_keys(*one):
        assert fnmatchcase(key, pattern)
    for key in series_keys(*other):
        assert fnmatchcase(key, pattern) == (other[0] == one[0])
    assert not fnmatchcase(keys.PKS, pattern)


@settings(max_examples=150, deadline=None)
@given(cells, cells)
def test_two_series_never_share_a_counter_field(one, other):
    """Where a series' bucket is stored, (its parent's hash, its field), is its own."""
    (pk, path, metric, period, ordinal), (pk2, path2, metric2, period2, ordinal2) = one, other
    if any(not name or CONTROL.search(name) for name in path + path2):
        return  # refused by hailwhale.event: empty names, control characters
    here = [(keys.cells(pk, keys.location(path)[0], metric, period, ordinal), field)
            for field in keys.fields(keys.location(path)[1])]
    there = [(keys.cells(pk2, keys.location(path2)[0], metric2, period2, ordinal2), field)
             for field in keys.fields(keys.location(path2)[1])]
    if one != other:
        assert not set(here) & set(there)


@settings(max_examples=100, deadline=None)
@given(cells)
def test_stems_built_as_columns_are_the_stems(cell):
    import polars as pl

    pk, path, metric, period, ordinal = cell
    frame = pl.DataFrame({"tag": [keys.series_tag(pk, path)], "part": [keys.part(metric)],
                          "code": [period.code]})
    for kind, stem in ((keys.CELLS, keys.cells_stem), (keys.UNIQUES, keys.unique_stem)):
        built = frame.select(keys.stems(kind, pl.col("tag"), pl.col("part"), pl.col("code")))
        assert built.item() == stem(pk, path, metric, period)
    assert keys.cells_stem(pk, path, metric, period) + str(ordinal) == \
        keys.cells(pk, path, metric, period, ordinal)
    assert keys.unique_stem(pk, path, metric, period) + str(ordinal) == \
        keys.unique(pk, path, metric, period, ordinal)
