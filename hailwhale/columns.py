"""A batch as columns: its wire lines checked (``check``) and pre-aggregated (``fold``) with
vectorized polars expressions and group-bys, no per-event Python loop. Pure, no Redis.

Whale checks the shape of every wire line (hailwhale.wire) at once, which is enough for every
line it accepts to be countable: the limits of hailwhale.event (names, lengths, depths,
counts, magnitudes) and the retention rule at drain time, so no accepted event can fail in
the store. Lines in the first wire form (the JSON objects earlier Hails buffered) are checked
in full, one by one, and join the same columns.

The same two steps as hailwhale.aggregate, as group-bys: events are summed by what they are
counted into (pk, dimensions, each period's bucket, metric), and only those groups are
expanded into every prefix of their dimensions and summed again. Python runs once per
distinct event time (the bucket of each period) and once per distinct spelling of several
branches (their shared prefixes), never per event. The result is a Folded batch, which
Store.write applies from its columns; its ``batch()`` is the Batch hailwhale.aggregate folds
the same events into, and tests/test_aggregate.py checks both against per-event expansion.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import tzinfo

import polars as pl

from .aggregate import GAUGE, SUM, TIMING, UNIQUE, Folded, _expansion, fold_gauges, path_of
from .config import Settings
from .errors import BadRequest
from .event import _MAX_METRIC_NAME, GAUGE_DELTA, GAUGE_SET, MAX_SAMPLES, Event, parse_event
from .formulas import NAME
from .numbers import MAX_VALUE, NANO, split, to_nanos
from .periods import Period
from .sketch import Sketch, bin_field
from .wire import FIELDS, FIELDS_KINDS, RS, US, VERSION, VERSION_KINDS

_CONTROL = r"[\x00-\x1f\x7f]"
_METRIC = f"^(?:{NAME})$"

# The columns a checked batch has, one row per event.
SCHEMA = {"index": pl.UInt32, "pk": pl.String, "at": pl.Float64, "uid": pl.String,
          "branches": pl.List(pl.List(pl.String)), "names": pl.List(pl.String),
          "wholes": pl.List(pl.Int64), "fractions": pl.List(pl.Int64),
          "uniques": pl.List(pl.String),
          # Gauges and timings as the wire spells them (hailwhale.wire): "name=value",
          # "name+delta"; "name=sample,sample".
          "gauges": pl.List(pl.String), "timings": pl.List(pl.String)}
# A number as Python's repr spells a float (what Hail writes), or as an int.
_NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_GAUGE_ITEM = f"^(?:{NAME})[=+]{_NUMBER}$"
_TIMING_ITEM = f"^(?:{NAME})={_NUMBER}(?:,{_NUMBER})*$"


def frame(events: Sequence[Event], indexes: Sequence[int] | None = None) -> pl.DataFrame:
    """Checked events as a batch's columns (for events checked one by one: Whale's own
    ``/count``, the first wire form)."""
    parts = [[split(to_nanos(v)) for v in e.metrics.values()] for e in events]
    return pl.DataFrame({
        "index": list(indexes) if indexes is not None else list(range(len(events))),
        "pk": [e.pk for e in events], "at": [float(e.at) for e in events],
        "uid": [e.uid or "" for e in events],
        "branches": [[list(b) for b in e.branches] for e in events],
        "names": [list(e.metrics) for e in events],
        "wholes": [[w for w, _ in p] for p in parts],
        "fractions": [[f for _, f in p] for p in parts],
        "uniques": [list(e.uniques) for e in events],
        "gauges": [[f"{name}{op}{value!r}" for name, op, value in e.gauges] for e in events],
        "timings": [[f"{name}={','.join(map(repr, samples))}" for name, samples in e.timings]
                    for e in events]}, schema=SCHEMA)


def check(items: Sequence[str], settings: Settings, now: float) -> tuple[pl.DataFrame, list[dict]]:
    """A batch's lines as columns: ``(the accepted events, [{"index", "error"}] of the
    refused ones)``, indexes counting from 0 in ``items``."""
    old = [i for i, item in enumerate(items) if item.startswith("{")]
    rejected: list[dict] = []
    frames = []
    if old:
        events, kept = [], []
        for i in old:
            try:
                raw = json.loads(items[i])
            except (ValueError, RecursionError) as exc:
                rejected.append({"index": i, "error": f"not JSON: {exc}"})
                continue
            try:
                events.append(parse_event(raw, settings, now))
                kept.append(i)
            except BadRequest as exc:
                rejected.append({"index": i, "error": str(exc)})
        frames.append(frame(events, kept))
    if len(old) < len(items):
        accepted, refused = _check_lines(items, settings, now)
        frames.append(accepted)
        rejected += refused
    rejected.sort(key=lambda r: r["index"])
    accepted = pl.concat(frames) if len(frames) > 1 else frames[0]
    return accepted.sort("index"), rejected


def _check_lines(items: Sequence[str], settings: Settings, now: float
                 ) -> tuple[pl.DataFrame, list[dict]]:
    lines = pl.DataFrame({"line": list(items)}, schema={"line": pl.String}).with_row_index(
        "index").filter(~pl.col("line").str.starts_with("{"))
    parts = pl.col("line").str.split("\t")
    table = lines.with_columns(parts.alias("parts")).with_columns(
        [pl.col("parts").list.get(i, null_on_oob=True).alias(name)
         for i, name in enumerate(FIELDS_KINDS)])
    name_ok = (pl.element().str.len_chars().is_between(1, settings.max_name_length)
               & ~pl.element().str.contains(_CONTROL)
               & (pl.element().str.strip_chars().str.len_chars() > 0))
    metric_ok = (pl.element().str.contains(_METRIC)
                 & (pl.element().str.len_chars() <= _MAX_METRIC_NAME))
    table = table.with_columns(
        pl.col("received").cast(pl.Float64, strict=False),
        pl.col("at").cast(pl.Float64, strict=False),
        branches=pl.when(pl.col("branches") == "").then(pl.lit([], pl.List(pl.String)))
        .otherwise(pl.col("branches").str.split(RS)),
        names=pl.col("names").str.split(US),
        wholes=pl.col("wholes").str.split(US),
        fractions=pl.col("fractions").str.split(US),
        uniques=pl.when(pl.col("uniques") == "").then(pl.lit([], pl.List(pl.String)))
        .otherwise(pl.col("uniques").str.split(US)),
        gauges=_items("gauges"), timings=_items("timings"),
    ).with_columns(
        branches=pl.col("branches").list.eval(pl.element().str.split(US)),
        wholes=pl.col("wholes").list.eval(pl.element().cast(pl.Int64, strict=False)),
        fractions=pl.col("fractions").list.eval(pl.element().cast(pl.Int64, strict=False)),
    )
    longest = max(p.retention + p.interval for p in settings.periods)
    # Every rule, each with the reason given for a line it refuses (the first that fails).
    rules = [
        (pl.col("parts").list.len().is_in([len(FIELDS), len(FIELDS_KINDS)]),
         f"not a wire line of {len(FIELDS)} or {len(FIELDS_KINDS)} fields"),
        (((pl.col("version") == VERSION) & (pl.col("parts").list.len() == len(FIELDS)))
         | ((pl.col("version") == VERSION_KINDS)
            & (pl.col("parts").list.len() == len(FIELDS_KINDS))),
         f"not wire form {VERSION} or {VERSION_KINDS}"),
        (pl.col("received").is_not_null() & pl.col("at").is_not_null()
         & pl.col("at").is_finite(), "received and at are numbers"),
        ((pl.col("pk").str.len_chars() <= settings.max_name_length)
         & ~pl.col("pk").str.contains(_CONTROL), "pk: too long or holds control characters"),
        ((pl.col("uid").str.len_chars() <= settings.max_name_length)
         & ~pl.col("uid").str.contains(_CONTROL), "uid: too long or holds control characters"),
        (pl.col("branches").list.len() <= settings.max_branches, "dimensions: too many branches"),
        (pl.col("branches").list.eval(
            pl.element().list.len().is_between(1, settings.max_depth)).list.all(),
         "dimensions: a branch is empty or too deep"),
        (pl.col("branches").list.eval(pl.element().list.eval(name_ok).list.all()).list.all(),
         "dimensions: a name is empty, too long or holds control characters"),
        (pl.col("names").list.len().is_between(1, settings.max_metrics + 1)
         & (pl.col("names").list.len() == pl.col("wholes").list.len())
         & (pl.col("names").list.len() == pl.col("fractions").list.len()),
         "metrics: names and values do not match"),
        ((pl.col("names").list.eval(metric_ok).list.all())
         & (pl.col("uniques").list.eval(metric_ok).list.all())
         & (pl.col("names").list.n_unique() == pl.col("names").list.len()),
         "metrics: a name is not letters, digits and _"),
        (pl.col("wholes").list.eval(pl.element().is_not_null()
                                    & (pl.element().abs() <= MAX_VALUE)).list.all()
         & pl.col("fractions").list.eval(pl.element().is_between(0, NANO - 1)).list.all(),
         f"metrics: a value is not a number of at most {MAX_VALUE:.0e}"),
        ((pl.col("uniques").list.len() == 0) | (pl.col("uid") != ""),
         "uid: a unique metric needs a uid"),
        (pl.col("at") <= now + settings.future_skew,
         f"at: more than {settings.future_skew}s in the future"),
        (pl.col("at") > now - longest, "at: older than every period's retention"),
    ]
    if (table["version"] == VERSION_KINDS).any():
        rules[-2:-2] = _kind_rules()  # only for batches holding gauges or timings: they cost
    reason = pl.lit(None, pl.String)
    for rule, why in reversed(rules):
        reason = pl.when(rule.fill_null(False)).then(reason).otherwise(pl.lit(why))
    table = table.with_columns(reason=reason)
    # The exact retention rule (a bucket's end plus the retention, daily periods in the
    # configured zone) for the lines the quick bound above let through.
    ats = table.filter(pl.col("reason").is_null())["at"].unique().to_list()
    stale = [at for at in ats if not any(p.keeps(at, now, settings.tz) for p in settings.periods)]
    if stale:
        table = table.with_columns(reason=pl.when(pl.col("at").is_in(stale)
                                                  & pl.col("reason").is_null())
                                   .then(pl.lit("at: older than every period's retention"))
                                   .otherwise(pl.col("reason")))
    bad = table.filter(pl.col("reason").is_not_null())
    rejected = [{"index": index, "error": f"wire: {why}"}
                for index, why in zip(bad["index"], bad["reason"], strict=True)]
    accepted = table.filter(pl.col("reason").is_null()).with_columns(
        pl.col("pk").fill_null(""), pl.col("uid").fill_null("")).select(list(SCHEMA))
    return accepted.cast(SCHEMA), rejected


def _kind_rules() -> list[tuple[pl.Expr, str]]:
    """The rules of gauges and timings (wire form 3), each with its reason."""
    return [
        (pl.col("gauges").list.eval(pl.element().str.contains(_GAUGE_ITEM)).list.all()
         & pl.col("gauges").list.eval(_value(pl.element().str.extract(
             f"[=+]({_NUMBER})$", 1))).list.all(),
         f"metrics: a gauge is not name=number or name+number of at most {MAX_VALUE:.0e}"),
        (pl.col("timings").list.eval(pl.element().str.contains(_TIMING_ITEM)).list.all()
         & pl.col("timings").list.eval(
             pl.element().str.extract("=(.*)$", 1).str.split(",")
             .list.eval(_value(pl.element())).list.all()).list.all()
         & (pl.col("timings").list.eval(pl.element().str.count_matches(",") + 1).list.sum()
            <= MAX_SAMPLES),
         f"metrics: a timing is not name=number,... of at most {MAX_SAMPLES} numbers of at "
         f"most {MAX_VALUE:.0e}"),
        (pl.concat_list([pl.col("names"), pl.col("uniques"), _names("gauges"),
                         _names("timings")]).list.n_unique()
         == pl.col("names").list.len() + pl.col("uniques").list.len()
         + pl.col("gauges").list.len() + pl.col("timings").list.len(),
         "metrics: a name is given twice"),
        (pl.concat_list([_names("gauges"), _names("timings")]).list.eval(
            (pl.element().str.len_chars() <= _MAX_METRIC_NAME) & (pl.element() != "hits"))
         .list.all(), "metrics: a gauge or timing name is too long, or hits"),
    ]


def _items(column: str) -> pl.Expr:
    """A gauges or timings field as its list of items (absent in version 2: none)."""
    return (pl.when(pl.col(column).is_null() | (pl.col(column) == ""))
            .then(pl.lit([], pl.List(pl.String))).otherwise(pl.col(column).str.split(US)))


def _value(text: pl.Expr) -> pl.Expr:
    """Whether ``text`` spells a finite number of at most MAX_VALUE."""
    number = text.cast(pl.Float64, strict=False)
    return number.is_not_null() & number.is_finite() & (number.abs() <= MAX_VALUE)


def _names(column: str) -> pl.Expr:
    """The metric names of a gauges or timings column's items."""
    return pl.col(column).list.eval(pl.element().str.extract(f"^({NAME})", 1))


def _kinds_of(events: pl.DataFrame) -> list[tuple[str, str, str]]:
    """(pk, metric name, kind) of every metric the events count, each once."""
    found = []
    for column, kind in (("names", SUM), ("uniques", UNIQUE), ("gauges", GAUGE),
                         ("timings", TIMING)):
        if kind in (GAUGE, TIMING) and not events[column].list.len().sum():
            continue  # most batches have none
        named = events.select("pk", _names(column) if kind in (GAUGE, TIMING)
                              else pl.col(column))
        found += [(pk, name, kind) for pk, name in named.explode(column).drop_nulls()
                  .unique(maintain_order=True).iter_rows()]
    return found


def metric_names(events: pl.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """pk -> [(metric name, its kind: SUM, UNIQUE, GAUGE, TIMING)] of every metric the
    events count, each pair once (for the metric-name guard, Store.admit_metrics)."""
    names: dict[str, list[tuple[str, str]]] = {}
    for pk, name, kind in _kinds_of(events):
        names.setdefault(pk, []).append((name, kind))
    return names


def without(events: pl.DataFrame, refused: Mapping[str, Collection[str]]
            ) -> tuple[pl.DataFrame, list[tuple[int, str, str, str]]]:
    """``events`` without those naming a metric refused for their pk (``refused``: pk ->
    names, any kind, or ``name:kind``, that kind only; Store.admit_metrics): ``(the rest,
    [(index, pk, the first such name, its key in refused)])``."""
    plain = [pl.col("names"), pl.col("uniques"), _names("gauges"), _names("timings")]
    kinds = (SUM, UNIQUE, GAUGE, TIMING)
    every = pl.concat_list([*plain, *(names.list.eval(pl.element() + f":{kind}")
                                      for names, kind in zip(plain, kinds, strict=True))])
    over = pl.lit(False)
    for pk, names in refused.items():
        listed = pl.lit(sorted(names), pl.List(pl.String))
        over = over | ((pl.col("pk") == pk) & (every.list.set_intersection(listed).list.len()
                                               > 0))
    marked = events.with_columns(over=over, every=every)
    capped = []
    for index, pk, named in marked.filter(pl.col("over")).select("index", "pk",
                                                                  "every").iter_rows():
        key = next(n for n in named if n in refused[pk])
        capped.append((index, pk, key.split(":")[0], key))
    return marked.filter(~pl.col("over")).drop("over", "every"), capped


_KEY = ["pk", "dims", "period", "ordinal"]


def _buckets(ats: list[float], periods: tuple[Period, ...], tz: tzinfo,
             now: float) -> pl.DataFrame:
    """(at, period index, ordinal) for every period that still keeps each distinct time."""
    rows: dict[str, list] = {"at": [], "period": [], "ordinal": []}
    for at in ats:
        for index, period in enumerate(periods):
            if period.keeps(at, now, tz):
                rows["at"].append(at)
                rows["period"].append(index)
                rows["ordinal"].append(period.ordinal(at, tz))
    return pl.DataFrame(rows, schema={"at": pl.Float64, "period": pl.Int32,
                                      "ordinal": pl.Int64})


def _prefixes(dims: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For each distinct dimensions spelling: every path it is counted into, and every
    (parent, child) link. One branch (the usual case) by list expressions; several, whose
    shared prefixes count once, by hailwhale.aggregate's expansion, once per spelling."""
    frame = pl.DataFrame({"dims": dims.unique()})
    several = frame.filter(pl.col("dims").str.contains(RS, literal=True))["dims"].to_list()
    names = (frame.filter(~pl.col("dims").str.contains(RS, literal=True))
             .with_columns(names=pl.when(pl.col("dims") == "")
                           .then(pl.lit([], pl.List(pl.String)))
                           .otherwise(pl.col("dims").str.split(US))))
    depths = names.with_columns(depth=pl.int_ranges(0, pl.col("names").list.len() + 1)) \
        .explode("depth")
    paths = depths.select("dims", path=pl.col("names").list.head(pl.col("depth"))
                          .list.join(US))
    links = depths.filter(pl.col("depth") > 0).select(
        "dims", parent=pl.col("names").list.head(pl.col("depth") - 1).list.join(US),
        child=pl.col("names").list.get(pl.col("depth") - 1))
    if several:
        rows: dict[str, list] = {"dims": [], "path": []}
        linked: dict[str, list] = {"dims": [], "parent": [], "child": []}
        for spelled in several:
            expanded, parents = _expansion(tuple(tuple(b.split(US))
                                                 for b in spelled.split(RS)))
            rows["dims"] += [spelled] * len(expanded)
            rows["path"] += [US.join(path) for path in expanded]
            linked["dims"] += [spelled] * len(parents)
            linked["parent"] += [US.join(parent) for parent, _ in parents]
            linked["child"] += [child for _, child in parents]
        paths = pl.concat([paths, pl.DataFrame(rows, schema=paths.schema)])
        links = pl.concat([links, pl.DataFrame(linked, schema=links.schema)])
    return paths, links


def fold(events: pl.DataFrame, periods: tuple[Period, ...] | list[Period], tz: tzinfo,
         now: float) -> Folded:
    """Every event of ``events`` (columns as SCHEMA) folded into one batch."""
    periods = tuple(periods)
    table = events.select(
        "index", "pk", "at", "uid", "names", "wholes", "fractions", "uniques", "gauges",
        "timings", dims=pl.col("branches").list.eval(pl.element().list.join(US)).list.join(RS))
    buckets = _buckets(table["at"].unique().to_list(), periods, tz, now)
    paths, links = _prefixes(table["dims"])

    # Sums in int64 (polars does not widen): whole units at most MAX_VALUE (1e12) an event,
    # and a batch is at most MAX_BODY (16 MiB) of lines of 18 bytes or more, so a sum stays
    # under 1e18; billionths under 1e9 an event, far below.
    sums = (table.select("pk", "dims", "at", "names", "wholes", "fractions")
            .explode(["names", "wholes", "fractions"])
            .join(buckets, on="at")
            .group_by([*_KEY, "names"]).agg(pl.col("wholes").sum(), pl.col("fractions").sum())
            .join(paths, on="dims")
            .group_by(["pk", "path", "period", "ordinal", "names"])
            .agg(pl.col("wholes").sum(), pl.col("fractions").sum()))
    members = (table.filter(pl.col("uniques").list.len() > 0)
               .select("pk", "dims", "at", "uid", "uniques")
               .explode("uniques").join(buckets, on="at")
               .group_by([*_KEY, "uniques"]).agg(pl.col("uid").unique())
               .join(paths, on="dims").explode("uid")
               .group_by(["pk", "path", "period", "ordinal", "uniques"])
               .agg(pl.col("uid").unique()))
    seen = (table.group_by(["pk", "dims"]).agg(pl.col("at").max())
            .join(links, on="dims").group_by(["pk", "parent", "child"]).agg(pl.col("at").max()))

    children: dict = {}
    for pk, parent, child, at in seen.iter_rows():
        children.setdefault((pk, path_of(parent)), {})[child] = at

    kinds: dict[str, dict[str, str]] = {}
    for pk, name, kind in _kinds_of(table):
        kinds.setdefault(pk, {})[name] = kind
    return Folded(periods, sums, members, children, kinds, table.height,
                  _sketches(table, buckets, paths),
                  _gauges(table, buckets))


def _sketches(table: pl.DataFrame, buckets: pl.DataFrame, paths: pl.DataFrame) -> dict:
    """The timings of ``table`` as sketches per cell (hailwhale.sketch): samples binned
    and summed by what they are counted into, then by every prefix, as the sums are. The
    bin, value and exact billionths of each distinct sample are worked out once, in Python."""
    timed = table.filter(pl.col("timings").list.len() > 0)
    if not timed.height:
        return {}
    samples = (timed.select("pk", "dims", "at", "timings").explode("timings")
               .select("pk", "dims", "at", name=pl.col("timings").str.extract("^([^=]*)=", 1),
                       sample=pl.col("timings").str.extract("=(.*)$", 1).str.split(","))
               .explode("sample"))
    distinct = samples["sample"].unique().to_list()
    values = [float(text) for text in distinct]
    nanos = [split(to_nanos(value)) for value in values]
    known = pl.DataFrame({"sample": distinct, "value": values,
                          "bin": [bin_field(value) for value in values],
                          "whole": [whole for whole, _ in nanos],
                          "fraction": [fraction for _, fraction in nanos]},
                         schema={"sample": pl.String, "value": pl.Float64, "bin": pl.String,
                                 "whole": pl.Int64, "fraction": pl.Int64})
    binned = samples.join(known, on="sample").join(buckets, on="at")
    cell = ["pk", "path", "period", "ordinal", "name"]
    counts = (binned.group_by([*_KEY, "name", "bin"]).agg(count=pl.len())
              .join(paths, on="dims").group_by([*cell, "bin"]).agg(pl.col("count").sum()))
    totals = (binned.group_by([*_KEY, "name"])
              .agg(pl.col("whole").sum(), pl.col("fraction").sum(), low=pl.col("value").min(),
                   high=pl.col("value").max())
              .join(paths, on="dims").group_by(cell)
              .agg(pl.col("whole").sum(), pl.col("fraction").sum(), pl.col("low").min(),
                   pl.col("high").max()))
    sketches: dict = {}
    for pk, path, period, ordinal, name, whole, fraction, low, high in totals.iter_rows():
        sketches.setdefault((pk, path_of(path), period, ordinal), {})[name] = Sketch(
            {}, whole * NANO + fraction, low, high)
    for pk, path, period, ordinal, name, bin_, count in counts.iter_rows():
        sketches[(pk, path_of(path), period, ordinal)][name].bins[bin_] = count
    return sketches


def _gauges(table: pl.DataFrame, buckets: pl.DataFrame) -> dict:
    """The gauges of ``table`` (hailwhale.aggregate.fold_gauges, in Python: few events
    carry gauges, and their order matters), into the ``buckets`` of their times."""
    gauged = table.filter(pl.col("gauges").list.len() > 0)
    if not gauged.height:
        return {}
    rows = []
    for index, pk, at, dims, items in gauged.select("index", "pk", "at", "dims",
                                                    "gauges").iter_rows():
        branches = tuple(tuple(b.split(US)) for b in dims.split(RS)) if dims else ()
        changes = []
        for item in items:
            at_op = next(i for i, c in enumerate(item) if c in "=+")
            changes.append((item[:at_op], GAUGE_SET if item[at_op] == "=" else GAUGE_DELTA,
                            float(item[at_op + 1:])))
        rows.append((at, index, pk, branches, tuple(changes)))
    live: dict[float, list[tuple[int, int]]] = {}
    for at, period, ordinal in buckets.iter_rows():
        live.setdefault(at, []).append((period, ordinal))
    return fold_gauges(rows, lambda at: live.get(at, ()))
