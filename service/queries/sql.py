"""The bounded aggregation as one SQL statement per query, for SQLite and PostgreSQL.

The statement has three levels, all in the database:

1. *rows*: the events a metric reads (epoch range, days, event types, filters), each
   with its public cell index (day x dimension keys, computed by CASE over the declared
   values: a stored value that is not declared falls into "other"), its integer sampling
   weight (capped by the policy) and its clamped integer value;
2. *units*: one row per (epoch, user pseudonym, cell) — the privacy unit's contribution
   to one cell — with rows beyond C scaled down (totals x C / n, rounded down, computed
   so that it cannot overflow) and, when the query's cells leave a unit more than K of
   them, for the units that do reach more than K cells, a ROW_NUMBER over a keyed hash
   of (pseudonym, cell) that keeps K cells chosen without looking at any value;
3. *cells*: the sums per cell, one small row per non-empty cell.

Only standard SQL that every engine runs: CASE, integer arithmetic (& and % on BIGINT),
CAST, ROUND, COUNT/SUM/MAX, ROW_NUMBER, WITH and UNION ALL. Every literal is an integer,
a float or a policy-declared label (quoted); nothing from the request reaches the SQL
except through the plan's validated keys. The engines differ in one place, `Dialect`:
where the events are read from, and how integers divide (SQLite and PostgreSQL truncate
with `/`; DuckDB's `/` is float division and `//` truncates; Spark SQL's is `DIV`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from privacy.bounds import Weight
from privacy.events import EVENT_TYPE_CODES, OTHER, EventType
from privacy.metrics import Metric
from privacy.query import QueryPlan

__all__ = [
    "DUCKDB",
    "POSTGRES",
    "SPARK",
    "SQLITE",
    "Dialect",
    "Statement",
    "aggregate_sql",
    "cell_index_sql",
    "scaled_sql",
]

_SECONDS_PER_DAY = 86_400
_MOD = 2_147_483_647  # 2^31 - 1: products of two residues stay below 2^62
_MIX = 1_103_515_245


@dataclass(frozen=True)
class Dialect:
    """What differs between backends in the aggregation SQL."""

    name: str
    events: str  # the FROM clause that reads the events table
    div: str = "/"  # the operator of truncating integer division

    def idiv(self, a: str, b: str | int) -> str:
        """a / b on integers, truncated toward zero (a, b >= 0 here)."""
        return f"{a} {self.div} {b}"


# SQLite has been seen to pick a worse index for this shape of query: name the one that
# serves "epoch range + event types" explicitly.
SQLITE = Dialect("sqlite", "events INDEXED BY events_epoch_type")
POSTGRES = Dialect("postgresql", "events")
# DuckDB over the lake (service/lake/engine.py): `events` is a view of the snapshot's
# Parquet files and the hot rows not sealed yet.
DUCKDB = Dialect("duckdb", "events", div="//")
# Spark SQL over the same files (service/lake/spark.py): `/` is float division there too.
SPARK = Dialect("spark", "events", div="DIV")


@dataclass(frozen=True)
class Statement:
    """One aggregation statement: rows of (cell, *columns), one per non-empty cell."""

    sql: str
    columns: tuple[str, ...]


def _lit(value: str | int | float) -> str:
    """A SQL literal; labels are quoted (they match [A-Za-z0-9._-], quotes doubled anyway)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not SQL literals here")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def _unix_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _index_of(column: str, declared: tuple[str, ...], keys: tuple[str | int, ...]) -> str:
    """CASE mapping a stored label to its key's index; -1 for a key filtered out.

    `declared` are the policy's values; anything else (NULL, "other", a value declared
    once but not any more) is "other".
    """
    position = {k: i for i, k in enumerate(keys)}
    whens = " ".join(f"WHEN {_lit(v)} THEN {position.get(v, -1)}" for v in declared)
    other = position.get(OTHER, -1)
    return f"(CASE {column} {whens} ELSE {other} END)" if whens else f"({other})"


def _dimension_sql(
    dim: str, keys: tuple[str | int, ...], declared: Mapping[str, tuple[str, ...]]
) -> str:
    if dim == "position":
        whens = " ".join(f"WHEN {k} THEN {i}" for i, k in enumerate(keys))
        return f"(CASE position {whens} ELSE -1 END)"
    if dim == "event_type":
        whens = " ".join(
            f"WHEN {EVENT_TYPE_CODES[EventType(str(k))]} THEN {i}" for i, k in enumerate(keys)
        )
        return f"(CASE event_type {whens} ELSE -1 END)"
    return _index_of(dim, declared.get(dim, ()), keys)


def cell_index_sql(
    plan: QueryPlan, declared: Mapping[str, tuple[str, ...]], dialect: Dialect | None = None
) -> tuple[str, list[str]]:
    """The cell index of a row (day-major, then dimensions) and the WHERE terms it needs.

    The index matches the order of `plan.cells`. Rows whose key is filtered out get -1 in
    some dimension and are excluded by the returned conditions.
    """
    div = (dialect or SQLITE).idiv
    terms: list[str] = []
    where: list[str] = []
    stride = 1
    filtered = dict(plan.filters)
    for dim, keys in reversed(plan.dimensions):
        expr = _dimension_sql(dim, keys, declared)
        # An unfiltered context dimension maps every label somewhere ("other" at worst).
        if dim in filtered or dim in ("position", "event_type"):
            where.append(f"{expr} >= 0")
        terms.append(f"{expr} * {stride}" if stride != 1 else expr)
        stride *= len(keys)
    if plan.days:
        terms.append(f"({div('ts', _SECONDS_PER_DAY)} - {_unix_day(plan.days[0])}) * {stride}")
    grouped = dict(plan.dimensions)
    for dim, keys in plan.filters:
        if dim not in grouped:
            where.append(f"{_dimension_sql(dim, keys, declared)} >= 0")
    return (" + ".join(reversed(terms)) or "0"), where


def _weight_sql(weight: Weight) -> str:
    """The integer weight of a row: round(unit / inclusion probability), capped by policy."""
    if not weight.sampled:
        return "CAST(1 AS BIGINT)"
    raw = f"CAST(ROUND({float(weight.unit)!r} / inclusion_prob) AS BIGINT)"
    return f"(CASE WHEN {raw} > {weight.max} THEN {weight.max} ELSE {raw} END)"


def _value_sql(metric: Metric) -> str:
    """The clamped integer value of a row (metric.value units)."""
    scale = metric.value
    if scale is None:
        raise AssertionError(f"{metric.name} has no value: this is a bug")
    raw = (
        scale.column
        if scale.factor == 1
        else f"CAST(ROUND({scale.column} * {scale.factor}) AS BIGINT)"
    )
    return (
        f"(CASE WHEN {raw} < {scale.low} THEN {scale.low} "
        f"WHEN {raw} > {scale.high} THEN {scale.high} ELSE {raw} END)"
    )


def _bin_sql(metric: Metric, value: str) -> str:
    scale = metric.value
    if scale is None:
        raise AssertionError(f"{metric.name} has no value: this is a bug")
    inner = scale.edges[1:-1]
    whens = " ".join(f"WHEN {value} < {edge} THEN {j}" for j, edge in enumerate(inner))
    return f"(CASE {whens} ELSE {len(inner)} END)"


def _code(t: EventType) -> int:
    return EVENT_TYPE_CODES[t]


@dataclass(frozen=True)
class _Measure:
    """What one component counts per row: a condition and an integer amount."""

    name: str
    condition: str  # SQL: the row counts for this component
    amount: str  # SQL: its weighted integer contribution


def _measures(plan: QueryPlan) -> tuple[list[_Measure], list[int], list[str]]:
    """Per-component row expressions, the event type codes read, and extra WHERE terms."""
    metric = plan.metric
    parts = {p.name: p for p in plan.parts}
    settings = plan.settings
    kind = metric.kind
    where: list[str] = []
    if metric.positional:
        where.append(f"position BETWEEN 1 AND {len(plan.propensity_units)}")
    if kind == "count":
        keys = dict(plan.filters).get("event_type") or dict(plan.dimensions).get("event_type")
        types = [t for t in EventType if keys is None or t.value in keys]
        codes = [_code(t) for t in types if t in metric.event_types]
        return [_Measure("count", "1 = 1", _weight_sql(parts["count"].weight))], codes, where
    if kind == "distinct":
        return [_Measure("users", "1 = 1", "1")], [_code(t) for t in metric.event_types], where
    if kind == "rate":
        top, bottom = metric.event_types
        condition = {
            EventType.TASK_COMPLETION: "outcome = 'success'",
            EventType.REFORMULATION: (
                f"similarity >= {_lit(float(settings['reformulation_similarity_threshold']))}"
            ),
            EventType.COPY_PASTE: f"span_length >= {int(settings['long_copy_min_span'])}",
            EventType.FEEDBACK: "thumbs = 'up'",
        }.get(top, "1 = 1")
        amount = _weight_sql(parts["numerator"].weight)
        if metric.name == "click_through_rate_debiased":
            whens = " ".join(
                f"WHEN {i} THEN {u}" for i, u in enumerate(plan.propensity_units, start=1)
            )
            amount = f"{amount} * (CASE position {whens} END)"
        return (
            [
                _Measure("numerator", f"event_type = {_code(top)} AND {condition}", amount),
                _Measure(
                    "denominator",
                    f"event_type = {_code(bottom)}",
                    _weight_sql(parts["denominator"].weight),
                ),
            ],
            [_code(top), _code(bottom)],
            where,
        )
    assert metric.value is not None
    where.append(f"{metric.value.column} IS NOT NULL")
    codes = [_code(t) for t in metric.event_types]
    if kind == "mean":
        weight = _weight_sql(parts["count"].weight)
        return (
            [
                _Measure("sum", "1 = 1", f"{weight} * {_value_sql(metric)}"),
                _Measure("count", "1 = 1", weight),
            ],
            codes,
            where,
        )
    if kind == "sum":
        weight = _weight_sql(parts["sum"].weight)
        return [_Measure("sum", "1 = 1", f"{weight} * {_value_sql(metric)}")], codes, where
    # median: one measure per bin of the public histogram, read from the binned rows
    # (see aggregate_sql: the bin is computed once per row, in a GROUP BY below).
    return (
        [_Measure(f"b{j}", f"bin = {j}", "w") for j in range(metric.value.bins)],
        codes,
        where,
    )


def aggregate_sql(
    plan: QueryPlan, declared: Mapping[str, tuple[str, ...]], dialect: Dialect
) -> Statement:
    """The bounded per-cell aggregates of `plan` as one statement.

    Returns rows (cell, *columns): `columns` name, in order, the integer sums of each
    component (for a median, b0..bB-1: the histogram bins of the cell). `declared` holds
    the policy's labels per context dimension.
    """
    metric = plan.metric
    measures, codes, extra_where = _measures(plan)
    cell, cell_where = cell_index_sql(plan, declared, dialect)
    start = _unix_day(plan.request.start) * _SECONDS_PER_DAY
    end = (_unix_day(plan.request.end) + 1) * _SECONDS_PER_DAY
    where = [
        f"epoch BETWEEN {plan.epochs[0]} AND {plan.epochs[-1]}",
        f"event_type IN ({', '.join(map(str, sorted(set(codes))))})",
        f"ts >= {start} AND ts < {end}",
        "user_ps IS NOT NULL",
        *extra_where,
        *cell_where,
    ]
    names = [m.name for m in measures]
    source = f"FROM {dialect.events} WHERE {' AND '.join(where)}"
    if metric.kind == "median":
        return _histogram_sql(plan, cell, source, names, dialect)
    # Level 1: rows, with the cell index and each measure's amount (NULL where it does
    # not count).
    amounts = ", ".join(
        f"CASE WHEN {m.condition} THEN {m.amount} END AS a_{m.name}" for m in measures
    )
    sessions = metric.name == "abandonment_rate"
    unit = "epoch, user_ps, session_ps" if sessions else "epoch, user_ps"
    rows = f"SELECT {unit}, {cell} AS cell, {amounts} {source}"
    if sessions:
        # An epoch-session counts once per cell, with its largest row weight.
        largest = ", ".join(f"MAX(a_{n}) AS a_{n}" for n in names)
        rows = (
            f"SELECT epoch, user_ps, cell, {largest} FROM ({rows}) AS r "
            "WHERE session_ps IS NOT NULL GROUP BY epoch, user_ps, session_ps, cell"
        )
    # Level 2: one row per (unit, cell), rows beyond C scaled down to C.
    c = plan.rows_per_group
    if metric.kind == "distinct":
        bounded = "1 AS v_users"
        names = ["users"]
    else:
        # A mean's sum and count share the cell's row count: C bounds the rows of a cell
        # (a sum's rows are all counted: every row has a value).
        shared = metric.kind in ("mean", "sum")
        bounded = ", ".join(
            scaled_sql(
                f"CAST(COALESCE(SUM(a_{x}), 0) AS BIGINT)",
                "COUNT(*)" if shared else f"COUNT(a_{x})",
                c,
                dialect,
            )
            + f" AS v_{x}"
            for x in names
        )
    return _per_cell(plan, bounded, rows, names)


def _histogram_sql(
    plan: QueryPlan, cell: str, source: str, names: list[str], dialect: Dialect
) -> Statement:
    """A median's histogram: rows binned once, then bounded per (unit, cell).

    The bin of a row is computed once, as a GROUP BY key; the bins of a cell then share
    the cell's row count, so C bounds the rows of a cell, not of a bin.
    """
    metric = plan.metric
    weight = _weight_sql(plan.parts[0].weight)
    binned = (
        f"SELECT epoch, user_ps, {cell} AS cell, {_bin_sql(metric, _value_sql(metric))} AS bin, "
        f"COUNT(*) AS n, CAST(SUM({weight}) AS BIGINT) AS w {source} "
        "GROUP BY epoch, user_ps, cell, bin"
    )
    n = "CAST(SUM(n) AS BIGINT)"
    bounded = ", ".join(
        scaled_sql(
            f"CAST(SUM(CASE WHEN bin = {j} THEN w ELSE 0 END) AS BIGINT)",
            n,
            plan.rows_per_group,
            dialect,
        )
        + f" AS v_{x}"
        for j, x in enumerate(names)
    )
    return _per_cell(plan, bounded, binned, names)


def _per_cell(plan: QueryPlan, bounded: str, rows: str, names: list[str]) -> Statement:
    """Levels 2 and 3: per (unit, cell) bounded totals, K cells kept, then sums per cell."""
    units = (
        f"SELECT epoch, user_ps, cell, {bounded} FROM ({rows}) AS s GROUP BY epoch, user_ps, cell"
    )
    sums = ", ".join(f"CAST(SUM(v_{x}) AS BIGINT)" for x in names)
    if not plan.truncate_groups:
        return Statement(f"SELECT cell, {sums} FROM ({units}) AS u GROUP BY cell", tuple(names))
    # The K cut. Only units with more than K cells lose any, so the keyed ranking (a
    # window: a sort per unit) runs over those units alone; which units they are is
    # decided by their count of cells, and which cells they keep by a keyed order of the
    # pseudonym and the cell index, never by a value.
    k = plan.groups_per_unit
    values = ", ".join(f"u.v_{x}" for x in names)
    x = f"(((u.user_ps & {_MOD}) + CAST(u.cell AS BIGINT) * {_MIX}) % {_MOD})"
    rank = (
        f"ROW_NUMBER() OVER (PARTITION BY u.epoch, u.user_ps ORDER BY ({x} * {x}) % {_MOD}, "
        "u.cell) AS rk"
    )
    same = "h.epoch = u.epoch AND h.user_ps = u.user_ps"
    sql = (
        f"WITH u AS ({units}), "
        f"h AS (SELECT epoch, user_ps FROM u GROUP BY epoch, user_ps HAVING COUNT(*) > {k}), "
        f"kept AS (SELECT u.cell, {values} FROM u WHERE NOT EXISTS (SELECT 1 FROM h WHERE {same}) "
        f"UNION ALL SELECT cell, {', '.join(f'v_{x}' for x in names)} FROM "
        f"(SELECT u.cell, {values}, {rank} FROM u JOIN h ON {same}) AS r WHERE rk <= {k}) "
        f"SELECT cell, {sums} FROM kept GROUP BY cell"
    )
    return Statement(sql, tuple(names))


def scaled_sql(total: str, n: str, c: int, dialect: Dialect | None = None) -> str:
    """A unit's total in a cell, as if it had at most C rows: floor(total x C / n) when n > C.

    Written as (total / n) x C + (total % n) x C / n, which is the same floor for the
    non-negative totals here but never multiplies the unbounded total: total x C could
    leave BIGINT (PostgreSQL refuses, SQLite turns it into a float) on data alone.
    """
    div = (dialect or SQLITE).idiv
    return (
        f"(CASE WHEN {n} > {c} THEN ({div(total, n)}) * {c} + {div(f'({total} % {n}) * {c}', n)} "
        f"ELSE {total} END)"
    )
